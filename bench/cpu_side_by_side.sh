#!/usr/bin/env bash
# The CPU training step of the default model, ours and PyTorch eager (Debian's python3-torch),
# measured back to back in one run on the same machine; prints both JSON lines and their ratio.
# Usage: bench/cpu_side_by_side.sh [build-dir] [threads]
set -euo pipefail
build=${1:-build}
threads=${2:-$(nproc)}
here=$(cd "$(dirname "$0")" && pwd)
for batch in 128 1024; do
  ours=$(OMP_NUM_THREADS=$threads "$build/bench/vae_bench" --benchmark_filter="BM_TrainStep/batch:$batch/cuda:0/" \
         --benchmark_min_time=3 --benchmark_format=json | /usr/bin/python3 -c '
import json, sys
b = json.load(sys.stdin)["benchmarks"][0]
ms = b["real_time"] if b["time_unit"] == "ms" else b["real_time"] / 1e6
print(json.dumps({"impl": "vae-cpu", "device": "cpu", "batch": '"$batch"', "ms_per_step": ms, "samples_per_s": '"$batch"' / (ms / 1000)}))')
  torch=$(/usr/bin/python3 "$here/pytorch_reference.py" step --batch "$batch" --threads "$threads")
  echo "$ours"
  echo "$torch"
  /usr/bin/python3 -c "import json,sys; a=json.loads(sys.argv[1]); b=json.loads(sys.argv[2]); print(f'batch {a[\"batch\"]}: pytorch-eager / vae-cpu step time = {b[\"ms_per_step\"]/a[\"ms_per_step\"]:.2f}x')" "$ours" "$torch"
done
