#!/usr/bin/env bash
# Trains a small model with the vae command, evaluates it, and has the PyTorch reference
# (bench/pytorch_reference.py, float64) recompute the same -ELBO and IWAE bound with the same
# binarised images and noise. Fails if they differ by more than 0.01 nats.
set -euo pipefail
vae=$1 python=$2 script=$3 data=$4 scratch=$5
rm -rf "$scratch" && mkdir -p "$scratch"
"$vae" train --data "$data" --epochs 1 --train-limit 1000 --test-limit 100 --hidden 96,48 --latent 6 \
  --batch 50 --threads 2 --seed 3 --out "$scratch/run" > "$scratch/train.log"
"$vae" eval --checkpoint "$scratch/run/model.safetensors" --data "$data" --limit 150 --k 7 --json > "$scratch/engine.json"
"$python" "$script" --data "$data" check --checkpoint "$scratch/run/model.safetensors" --engine-json "$scratch/engine.json"
