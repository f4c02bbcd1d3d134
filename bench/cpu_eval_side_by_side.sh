#!/usr/bin/env bash
# Evaluation and sampling on the CPU, ours against a batched PyTorch twin of the same computation
# (bench/pytorch_reference.py eval-time / sample-time), back to back in each round on the same
# machine and thread count: IWAE with k importance samples over the 10,000 test images (with the
# one-sample -ELBO, active units and KL per dimension, as `vae eval --k K` computes), and sampling N
# images from the prior. Ours is timed in-process through the Python package (the build's
# build/python, so configure with -DVAE_BUILD_PYTHON=ON), PyTorch from PyPI in its venv:
#   PYTHON=/opt/torch-venv/bin/python [ROUNDS=3] bench/cpu_eval_side_by_side.sh build-dir checkpoint [threads] [k] [n]
# checkpoint: a Bernoulli/ReLU MLP model.safetensors (a trained run's: measure real weights).
set -euo pipefail
build=${1:?usage: bench/cpu_eval_side_by_side.sh build-dir checkpoint [threads] [k] [n]}
checkpoint=${2:?a model.safetensors of the default model (vae train --out RUN writes RUN/model.safetensors)}
threads=${3:-$(nproc)}
k=${4:-100}
n=${5:-10000}
python=${PYTHON:-/opt/torch-venv/bin/python}
ours_python=${OURS_PYTHON:-/usr/bin/python3}
here=$(cd "$(dirname "$0")" && pwd)
[ -f "$checkpoint" ] || { echo "no checkpoint at $checkpoint: train one first (vae train --out RUN)" >&2; exit 1; }
[ -d "$build/python/vae" ] || { echo "no Python package in $build/python: configure with -DVAE_BUILD_PYTHON=ON" >&2; exit 1; }
results=$(mktemp)
trap 'rm -f "$results"' EXIT
for round in $(seq "${ROUNDS:-3}"); do
  PYTHONPATH="$build/python" "$ours_python" - "$checkpoint" "$threads" "$k" "$n" <<'PY' | tee -a "$results"
import json, sys, time
import vae
checkpoint, threads, k, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
vae.set_threads(threads)
m = vae.load(checkpoint, device="cpu")
d = vae.load_data("/usr/share/datasets/fashion-mnist")
t0 = time.perf_counter()
r = vae.evaluate(m, d["test_x"], d["test_labels"], k=k)
secs = time.perf_counter() - t0
print(json.dumps({"impl": "vae-cpu", "task": "eval", "count": r["count"], "k": k, "threads": threads, "seconds": secs,
                  "neg_elbo": r["neg_elbo"], "iwae_nll": r.get("iwae_nll")}))
best = float("inf")
for seed in range(3):
    t0 = time.perf_counter()
    images = m.sample(n, seed=seed)
    best = min(best, time.perf_counter() - t0)
assert images.shape == (n, 1, 28, 28)
print(json.dumps({"impl": "vae-cpu", "task": "sample", "count": n, "threads": threads, "seconds": best}))
PY
  "$python" "$here/pytorch_reference.py" eval-time --checkpoint "$checkpoint" --k "$k" --threads "$threads" | tee -a "$results"
  "$python" "$here/pytorch_reference.py" sample-time --checkpoint "$checkpoint" --n "$n" --threads "$threads" | tee -a "$results"
done
"$python" - "$results" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
for task in ("eval", "sample"):
    ours = [r["seconds"] for r in rows if r["task"] == task and r["impl"] == "vae-cpu"]
    theirs = [r["seconds"] for r in rows if r["task"] == task and r["impl"] != "vae-cpu"]
    ratios = [t / o for o, t in zip(ours, theirs)]
    print(f"{task}: pytorch-eager / vae-cpu time, median of {len(ratios)} rounds = {statistics.median(ratios):.2f}x "
          f"(rounds: {', '.join(f'{x:.2f}' for x in ratios)}; ours {', '.join(f'{x:.2f}' for x in ours)} s, "
          f"PyTorch {', '.join(f'{x:.2f}' for x in theirs)} s)")
PY
