#!/usr/bin/env bash
# The CPU training step of the default model: ours, PyTorch eager and torch.compile, measured back to
# back in one run on the same machine; prints every JSON line and the ratios. Use PyTorch from PyPI
# (a venv), not Debian's old build:
#   python3 -m venv /opt/torch-venv && /opt/torch-venv/bin/pip install torch numpy
# Usage: PYTHON=/opt/torch-venv/bin/python bench/cpu_side_by_side.sh [build-dir] [threads] [batches...]
# The whole run (10 epochs, with evaluation): bench/cpu_run_side_by_side.sh.
set -euo pipefail
build=${1:-build}
threads=${2:-$(nproc)}
shift 2 2>/dev/null || shift $#
batches=("$@")
((${#batches[@]})) || batches=(128 1024)
python=${PYTHON:-/opt/torch-venv/bin/python}
here=$(cd "$(dirname "$0")" && pwd)
"$python" -c 'import torch, sys; print(f"PyTorch {torch.__version__} ({torch.__file__})", file=sys.stderr)'
for batch in "${batches[@]}"; do
  ours=$(OMP_NUM_THREADS=$threads "$build/bench/vae_bench" --benchmark_filter="BM_TrainStep/batch:$batch/cuda:0/" \
         --benchmark_min_time=3 --benchmark_format=json | "$python" -c '
import json, sys
b = json.load(sys.stdin)["benchmarks"][0]
ms = b["real_time"] if b["time_unit"] == "ms" else b["real_time"] / 1e6
print(json.dumps({"impl": "vae-cpu", "device": "cpu", "batch": '"$batch"', "ms_per_step": ms, "samples_per_s": '"$batch"' / (ms / 1000)}))')
  echo "$ours"
  for mode in eager compile; do
    torch=$("$python" "$here/pytorch_reference.py" step --batch "$batch" --threads "$threads" --mode "$mode" --repeats 200 2>/dev/null)
    echo "$torch"
    "$python" -c "import json,sys; a=json.loads(sys.argv[1]); b=json.loads(sys.argv[2]); print(f'batch {a[\"batch\"]}: {b[\"impl\"]} / vae-cpu step time = {b[\"ms_per_step\"]/a[\"ms_per_step\"]:.2f}x')" "$ours" "$torch"
  done
done
