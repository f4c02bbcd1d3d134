#!/usr/bin/env bash
# The refactoring check: the same models trained for 3 epochs on 12,000 images with one vae binary,
# each run's last test -ELBO printed to all digits (metrics.jsonl) and the model file's checksum.
# Run it with the binary from before a change and after, on the same machine and thread count: a
# change that must not move the numerics gives identical lines.
#
#   bash bench/same_bits.sh VAE_BINARY OUT_DIR [THREADS]
set -euo pipefail
vae=$1
out=$2
threads=${3:-2}
root=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$out"
run() {
  local name=$1
  shift
  "$vae" train --epochs 3 --train-limit 12000 --threads "$threads" --seed 5 --overwrite --out "$out/$name" "$@" > "$out/$name.log" 2>&1
  printf '%-10s test_neg_elbo %s  model %s\n' "$name" \
    "$(tail -1 "$out/$name/metrics.jsonl" | python3 -c 'import json,sys; print(repr(json.loads(sys.stdin.read())["test_neg_elbo"]))')" \
    "$(sha256sum "$out/$name/model.safetensors" | cut -c1-16)"
}
run default
run conv --config "$root/configs/conv.json"
run mog --config "$root/configs/mog.json"
run vamp --prior vamp --prior-components 50
run flow --prior flow
run iwae --objective iwae --k-train 5
