#!/usr/bin/env bash
# Trains the three example models (configs/mlp.json, conv.json, mog.json) for the same epochs on
# Fashion-MNIST, one after another on an otherwise idle machine, then evaluates each on the whole
# test set with the importance-weighted bound. Prints one markdown row per model: test -ELBO,
# -log p(x) at k, active units, mean seconds per training epoch, and the wall time of the run.
#
#   bash bench/cpu_model_comparison.sh BUILD_DIR [THREADS=2] [EPOCHS=10] [K=100] [OUT=/tmp/vae-models]
set -euo pipefail
build=${1:?usage: $0 BUILD_DIR [THREADS] [EPOCHS] [K] [OUT]}
threads=${2:-2}
epochs=${3:-10}
k=${4:-100}
out=${5:-/tmp/vae-models}
root=$(cd "$(dirname "$0")/.." && pwd)
vae="$build/vae"
mkdir -p "$out"
echo "| model | parameters | test -ELBO | -log p(x), k=$k | active units | s/epoch (mean) | run wall s | eval wall s |"
echo "|---|---|---|---|---|---|---|---|"
for model in mlp conv mog; do
  run="$out/$model"
  start=$(date +%s.%N)
  "$vae" train --config "$root/configs/$model.json" --epochs "$epochs" --threads "$threads" --out "$run" --overwrite \
    > "$out/$model.train.log" 2>&1
  mid=$(date +%s.%N)
  "$vae" eval --checkpoint "$run/model.safetensors" --k "$k" --threads "$threads" --json > "$out/$model.eval.json"
  end=$(date +%s.%N)
  python3 - "$run" "$out/$model.eval.json" "$out/$model.train.log" "$model" "$start" "$mid" "$end" <<'PY'
import json, re, sys
run, ev, log, model, t0, t1, t2 = sys.argv[1:8]
epochs = [json.loads(l) for l in open(f"{run}/metrics.jsonl")]
e = json.load(open(ev))
params = re.search(r"training (\d+) parameters", open(log).read()).group(1)
secs = sum(m["seconds"] for m in epochs) / len(epochs)
print(f"| {model} | {params} | {e['neg_elbo']:.2f} | {e['iwae_nll']:.2f} | {e['active_units']} | {secs:.1f} | "
      f"{float(t1) - float(t0):.0f} | {float(t2) - float(t1):.0f} |")
PY
done
