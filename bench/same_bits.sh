#!/usr/bin/env bash
# The refactoring check: the same models trained for 3 epochs on 12,000 images with one vae binary,
# each run's last test -ELBO printed to all digits (metrics.jsonl) and a checksum of the model's tensors (not its metadata, which names the run);
# then the objectives' variants (free bits per group and in total, capacity, DReG, IWAE through a
# posterior flow, warm-up) for 2 epochs on 6,000 images.
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
epochs=3
limit=12000
run() {
  local name=$1
  shift
  "$vae" train --epochs "$epochs" --train-limit "$limit" --threads "$threads" --seed 5 --overwrite --out "$out/$name" "$@" \
    > "$out/$name.log" 2>&1
  printf '%-10s test_neg_elbo %s  model %s\n' "$name" \
    "$(tail -1 "$out/$name/metrics.jsonl" | python3 -c 'import json,sys; print(repr(json.loads(sys.stdin.read())["test_neg_elbo"]))')" \
    "$(python3 -c 'import hashlib,struct,sys; b=open(sys.argv[1],"rb").read(); n=struct.unpack("<Q",b[:8])[0]; print(hashlib.sha256(b[8+n:]).hexdigest()[:16])' "$out/$name/model.safetensors")"
}
run default
run conv --config "$root/configs/conv.json"
run mog --config "$root/configs/mog.json"
run vamp --prior vamp --prior-components 50
run flow --prior flow
run iwae --objective iwae --k-train 5
epochs=2
limit=6000
run fbgroup --free-bits 0.2 --free-bits-group 4
run fbtotal --free-bits 0.2
run capacity --capacity 20 --capacity-epochs 1
run dreg --objective iwae_dreg --k-train 4
run iwaeflow --objective iwae --k-train 3 --posterior-flow 2
run warmup --warmup-epochs 2
