#!/usr/bin/env bash
# The latent-technique study (issue 12): every variant trained with the same budget on Fashion-MNIST
# (MLP encoder 512-256 unless the variant says otherwise, Adam 1e-3, batch 128, seed 0,
# dynamically binarised pixels), then evaluated the same way:
#   - vae eval --k K on the first EVAL_LIMIT test images: -log p(x), -ELBO, KL, active units, I(x;z);
#   - vae quality against a classifier trained once here (vae classifier, EPOCHS_CLASSIFIER epochs):
#     the Frechet distance of its features, for prior samples and for aggregate-posterior samples
#     (a 10-component mixture fitted to FIT_LIMIT training posterior means), the conditional
#     model's accuracy on its samples, and sampling throughput;
#   - a sample grid and a latent plot per variant.
# Then bench/latent_study.py writes docs/latent-study.md and its plots from the results.
#
#   bash bench/latent_study.sh BUILD_DIR [THREADS=2] [EPOCHS=10] [K=100] [DEVICE=cpu] [OUT=runs/latent-study] [VARIANTS...]
#
# A GPU machine runs the full budget with, e.g., bash bench/latent_study.sh build 0 50 1000 cuda.
set -euo pipefail
build=${1:?usage: $0 BUILD_DIR [THREADS] [EPOCHS] [K] [DEVICE] [OUT] [VARIANTS...]}
threads=${2:-2}
epochs=${3:-10}
k=${4:-100}
device=${5:-cpu}
out=${6:-runs/latent-study}
shift $(( $# < 6 ? $# : 6 ))
eval_limit=${EVAL_LIMIT:-10000}
fit_limit=${FIT_LIMIT:-20000}
quality_n=${QUALITY_N:-10000}
classifier_epochs=${EPOCHS_CLASSIFIER:-10}
page=${PAGE:-docs/latent-study.md}
vae="$build/vae"
python=${PYTHON:-/usr/bin/python3}
half=$(( epochs / 2 > 0 ? epochs / 2 : 1 ))
declare -A flags=(
  [latent2]="--latent 2"
  [latent8]="--latent 8"
  [plain]="--latent 32"
  [latent64]="--latent 64"
  [beta0.5]="--beta 0.5"
  [beta4]="--beta 4"
  [warmup]="--warmup-epochs $half"
  [free_bits]="--free-bits 0.25"
  [mog]="--prior mog --prior-components 10"
  [vamp]="--prior vamp --prior-components 500"
  [flow_prior]="--prior flow --prior-flow-steps 4"
  [flow_posterior]="--posterior-flow 4"
  [iwae5]="--objective iwae --k-train 5"
  [conditional]="--conditional"
  [conv]="--encoder conv --channels 32,64 --hidden 256"
)
order=(latent2 latent8 plain latent64 beta0.5 beta4 warmup free_bits mog vamp flow_prior flow_posterior iwae5 conditional conv)
variants=("$@")
[ ${#variants[@]} -eq 0 ] && variants=("${order[@]}")
mkdir -p "$out"
common="--threads $threads --device $device"

if [ ! -f "$out/classifier.safetensors" ]; then
  "$vae" classifier --epochs "$classifier_epochs" $common --out "$out/classifier.safetensors" | tee "$out/classifier.log"
fi
: > "$out/results.jsonl.tmp"
for v in "${variants[@]}"; do
  run="$out/$v"
  echo "== $v: ${flags[$v]}" >&2
  # The per-epoch test numbers (monitoring, best.safetensors) use the first 2000 test images.
  # shellcheck disable=SC2086
  "$vae" train --epochs "$epochs" --test-limit 2000 ${flags[$v]} $common --out "$run" --overwrite > "$run.train.log" 2>&1 \
    || { cat "$run.train.log" >&2; exit 1; }
  ckpt="$run/model.safetensors"
  t0=$(date +%s.%N)
  "$vae" eval --checkpoint "$ckpt" --k "$k" --limit "$eval_limit" $common --json > "$run.eval.json"
  t1=$(date +%s.%N)
  "$vae" quality --checkpoint "$ckpt" --classifier "$out/classifier.safetensors" --n "$quality_n" $common --json \
    > "$run.quality_prior.json"
  "$vae" quality --checkpoint "$ckpt" --classifier "$out/classifier.safetensors" --n "$quality_n" --from aggregate \
    --fit-limit "$fit_limit" $common --json | tail -1 > "$run.quality_aggregate.json"
  "$vae" sample --checkpoint "$ckpt" --n 32 --columns 8 $common --out "$out/samples_$v.png" > /dev/null
  "$vae" plot-latent --checkpoint "$ckpt" --limit 3000 $common --out "$out/latent_$v.png" > /dev/null
  "$python" - "$v" "${flags[$v]}" "$run" "$t0" "$t1" "$k" >> "$out/results.jsonl.tmp" <<'PY'
import json, sys
v, fl, run, t0, t1, k = sys.argv[1:7]
epochs = [json.loads(l) for l in open(f"{run}/metrics.jsonl")]
r = {"variant": v, "flags": fl, "k": int(k), "epochs": len(epochs),
     "train_seconds": sum(m["seconds"] for m in epochs), "eval_seconds": float(t1) - float(t0),
     "eval": json.load(open(f"{run}.eval.json")),
     "quality_prior": json.load(open(f"{run}.quality_prior.json")),
     "quality_aggregate": json.load(open(f"{run}.quality_aggregate.json")),
     "params": json.load(open(f"{run}/config.json"))["model"]}
print(json.dumps(r))
PY
done
# Rows of variants not run this time stay from the last run, in the study's order.
"$python" - "$out/results.jsonl" "$out/results.jsonl.tmp" "${order[@]}" <<'PY'
import json, os, sys
old_path, new_path, order = sys.argv[1], sys.argv[2], sys.argv[3:]
rows = {}
if os.path.exists(old_path):
    rows = {r["variant"]: r for r in map(json.loads, filter(str.strip, open(old_path)))}
rows.update({r["variant"]: r for r in map(json.loads, filter(str.strip, open(new_path)))})
with open(old_path, "w") as f:
    for v in order + sorted(set(rows) - set(order)):
        if v in rows:
            f.write(json.dumps(rows[v]) + "\n")
os.remove(new_path)
PY
cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
"$python" bench/latent_study.py "$out" "$page" --device "$device" --cpu "$cpu" --threads "$threads" \
  --epochs "$epochs" --k "$k" --eval-limit "$eval_limit" --fit-limit "$fit_limit" --quality-n "$quality_n" \
  --classifier-epochs "$classifier_epochs"
