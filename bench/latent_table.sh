#!/usr/bin/env bash
# The latent toolkit's comparison (issue 11): one MLP VAE recipe (encoder 512-256, latent 40,
# Adam 1e-3, batch 128, seed 0, dynamically binarised Fashion-MNIST) trained for the same epochs
# with each latent technique, one run after another on an otherwise idle machine, then each final
# model evaluated on the whole test set (binarised once) with k importance samples.
# Prints one markdown row per variant: -log p(x), -ELBO, KL, active units, I(x;z), KL(q(z)||p),
# mean seconds per training epoch, and the evaluation's wall time.
#
#   bash bench/latent_table.sh BUILD_DIR [THREADS=2] [EPOCHS=50] [K=1000] [OUT=/tmp/vae-latent] [VARIANTS...]
set -euo pipefail
build=${1:?usage: $0 BUILD_DIR [THREADS] [EPOCHS] [K] [OUT] [VARIANTS...]}
threads=${2:-2}
epochs=${3:-50}
k=${4:-1000}
out=${5:-/tmp/vae-latent}
shift $(( $# < 5 ? $# : 5 ))
vae="$build/vae"
declare -A flags=(
  [plain]=""
  [mog]="--prior mog --prior-components 10"
  [vamp]="--prior vamp --prior-components 500"
  [flow_prior]="--prior flow --prior-flow-steps 4"
  [flow_posterior]="--posterior-flow 4"
  [iwae5]="--objective iwae --k-train 5"
  [iwae5_dreg]="--objective iwae-dreg --k-train 5"
  [free_bits]="--free-bits 0.1"
  [beta_half]="--beta 0.5"
)
variants=("$@")
[ ${#variants[@]} -eq 0 ] && variants=(plain mog vamp flow_prior flow_posterior iwae5 iwae5_dreg free_bits beta_half)
mkdir -p "$out"
echo "| variant | flags | -log p(x), k=$k | -ELBO | KL | active units | I(x;z) | KL(q(z)‖p) | s/epoch | eval s |"
echo "|---|---|---|---|---|---|---|---|---|---|"
for v in "${variants[@]}"; do
  run="$out/$v"
  # shellcheck disable=SC2086
  # The per-epoch test numbers (monitoring and best.safetensors) use the first 2000 test images;
  # the table evaluates the final model on all of them.
  "$vae" train --latent 40 --epochs "$epochs" --threads "$threads" --test-limit 2000 ${flags[$v]} --out "$run" --overwrite \
    > "$out/$v.train.log" 2>&1
  t0=$(date +%s.%N)
  "$vae" eval --checkpoint "$run/model.safetensors" --k "$k" --threads "$threads" --json > "$out/$v.eval.json"
  t1=$(date +%s.%N)
  python3 - "$run" "$out/$v.eval.json" "$v" "${flags[$v]:-(defaults)}" "$t0" "$t1" <<'PY'
import json, sys
run, ev, v, fl, t0, t1 = sys.argv[1:7]
epochs = [json.loads(l) for l in open(f"{run}/metrics.jsonl")]
e = json.load(open(ev))
secs = sum(m["seconds"] for m in epochs) / len(epochs)
print(f"| {v} | `{fl}` | {e['iwae_nll']:.2f} | {e['neg_elbo']:.2f} | {e['kl']:.2f} | {e['active_units']} | "
      f"{e['mutual_info']:.2f} | {e['aggregate_kl']:.2f} | {secs:.1f} | {float(t1) - float(t0):.0f} |", flush=True)
PY
done
