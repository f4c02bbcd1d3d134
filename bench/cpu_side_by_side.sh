#!/usr/bin/env bash
# The CPU training step of the default model: ours, PyTorch eager and torch.compile, measured back to
# back in one run on the same machine; prints every JSON line and the ratios. Use PyTorch from PyPI
# (a venv), not Debian's old build:
#   python3 -m venv /opt/torch-venv && /opt/torch-venv/bin/pip install torch numpy
# Usage: PYTHON=/opt/torch-venv/bin/python [ROUNDS=3] [MODEL=mlp|conv|gated|hvae] bench/cpu_side_by_side.sh [build-dir] [threads] [batches...]
# MODEL=gated and hvae: the hierarchy's comparison (one level of 80 and configs/hvae.json, gated 300-300).
# REPEATS sets PyTorch's timed steps (default 200). MODEL=conv compares configs/conv.json's model (BM_ConvTrainStep) instead of the default MLP.
# A small shared VM drifts by 20% within minutes, so each round measures the three back to back
# (medians of repeated steps) and the script prints every round's ratios and their median.
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
rounds=${ROUNDS:-3}
model=${MODEL:-mlp}
bench=BM_TrainStep
[ "$model" = conv ] && bench=BM_ConvTrainStep
[ "$model" = gated ] && bench=BM_GatedTrainStep
[ "$model" = hvae ] && bench=BM_HvaeTrainStep
results=$(mktemp)
trap 'rm -f "$results"' EXIT
for round in $(seq "$rounds"); do
  for batch in "${batches[@]}"; do
    ours=$(OMP_NUM_THREADS=$threads "$build/bench/vae_bench" --benchmark_filter="$bench/batch:$batch/cuda:0/" \
           --benchmark_min_time=1 --benchmark_repetitions=5 --benchmark_format=json | "$python" -c '
import json, sys, statistics
runs = [b for b in json.load(sys.stdin)["benchmarks"] if b.get("run_type") == "iteration"]
ms = statistics.median(b["real_time"] if b["time_unit"] == "ms" else b["real_time"] / 1e6 for b in runs)
print(json.dumps({"impl": "vae-cpu", "device": "cpu", "batch": '"$batch"', "ms_per_step": ms, "samples_per_s": '"$batch"' / (ms / 1000)}))')
    echo "$ours" | tee -a "$results"
    for mode in eager compile; do
      torch=$("$python" "$here/pytorch_reference.py" step --model "$model" --batch "$batch" --threads "$threads" --mode "$mode" --repeats "${REPEATS:-200}" 2>/dev/null)
      echo "$torch" | tee -a "$results"
      "$python" -c "import json,sys; a=json.loads(sys.argv[1]); b=json.loads(sys.argv[2]); print(f'round $round batch {a[\"batch\"]}: {b[\"impl\"]} / vae-cpu step time = {b[\"ms_per_step\"]/a[\"ms_per_step\"]:.2f}x')" "$ours" "$torch"
    done
  done
done
"$python" - "$results" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
ratios = {}
for i, r in enumerate(rows):
    if r["impl"] == "vae-cpu":
        ours = r
    else:
        ratios.setdefault((r["batch"], r["impl"]), []).append(r["ms_per_step"] / ours["ms_per_step"])
for (batch, impl), v in sorted(ratios.items()):
    print(f"batch {batch}: {impl} / vae-cpu step time, median of {len(v)} rounds = {statistics.median(v):.2f}x "
          f"(rounds: {', '.join(f'{x:.2f}' for x in v)})")
PY
