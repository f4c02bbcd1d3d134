#!/usr/bin/env bash
# A whole default training run (10 epochs of Fashion-MNIST, per-epoch test evaluation), ours and
# PyTorch eager, back to back on the same machine and thread count; prints each epoch's seconds and
# the two wall times. Use PyTorch from PyPI, not Debian's old build:
#   python3 -m venv /opt/torch-venv && /opt/torch-venv/bin/pip install torch numpy
#   bench/cpu_run_side_by_side.sh [build-dir] [threads] [epochs]   (PYTHON=/opt/torch-venv/bin/python)
# MODEL=conv runs configs/conv.json's model on both sides instead of the default MLP.
# The step alone, against eager and torch.compile: bench/cpu_side_by_side.sh.
set -euo pipefail
build=${1:-build}
threads=${2:-$(nproc)}
epochs=${3:-10}
python=${PYTHON:-/opt/torch-venv/bin/python}
here=$(cd "$(dirname "$0")" && pwd)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"$python" -c 'import torch, sys; print(f"PyTorch {torch.__version__} from {torch.__file__}", file=sys.stderr)'

start=$(date +%s.%N)
model=${MODEL:-mlp}
config=()
[ "$model" = conv ] && config=(--config "$here/../configs/conv.json")
"$build/vae" train "${config[@]}" --epochs "$epochs" --threads "$threads" --out "$out/run" > "$out/ours.log"
[ -z "${KEEP_RUN:-}" ] || cp -r "$out/run" "$KEEP_RUN"
ours_wall=$(echo "$(date +%s.%N) - $start" | bc)
start=$(date +%s.%N)
"$python" "$here/pytorch_reference.py" train --model "$model" --epochs "$epochs" --threads "$threads" --k 0 > "$out/torch.log"
torch_wall=$(echo "$(date +%s.%N) - $start" | bc)

"$python" - "$out/run/metrics.jsonl" "$out/torch.log" "$ours_wall" "$torch_wall" <<'PY'
import json, sys
ours = [json.loads(l) for l in open(sys.argv[1])]
torch = [json.loads(l) for l in open(sys.argv[2])]
ow, tw = float(sys.argv[3]), float(sys.argv[4])
for name, rows, wall in (("vae-cpu", ours, ow), ("pytorch-eager", torch, tw)):
    secs = [r["seconds"] for r in rows]
    print(json.dumps({"impl": name, "epoch_seconds": [round(s, 2) for s in secs],
                      "slowest_over_fastest": round(max(secs) / min(secs), 2),
                      "final_test_neg_elbo": round(rows[-1]["test_neg_elbo"], 2), "wall_s": round(wall, 1)}))
print(f"whole run: pytorch-eager wall / vae-cpu wall = {tw / ow:.2f}x")
PY
