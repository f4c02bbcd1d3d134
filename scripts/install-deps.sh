#!/usr/bin/env bash
# Installs every build, test and data dependency from Debian's packages (run as root).
# The CUDA toolkit (nvcc, cuBLAS, cuDNN) is not a Debian package here: when /usr/local/cuda exists
# the build compiles the CUDA sources too; without it everything builds and runs CPU-only.
set -euo pipefail
packages=(
  build-essential cmake ninja-build pkg-config
  libopenblas-openmp-dev libdnnl-dev zlib1g-dev libpng-dev libssl-dev nlohmann-json3-dev libcli11-dev libstb-dev
  libgtest-dev libbenchmark-dev
  clang libclang-rt-dev libomp-dev
  python3-torch python3-numpy python3-matplotlib python3-tqdm
  pybind11-dev libdlpack-dev python3-dev python3-venv python3-pytest
  libopenmpi-dev openmpi-bin
  dataset-fashion-mnist
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
