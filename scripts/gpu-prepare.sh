#!/usr/bin/env bash
# Run HERE (the development machine): builds the CUDA binaries and gathers what the GPU machine lacks
# into .gpu/ (git-ignored), which the device tool carries with `carry: [".gpu"]`.
#
# The GPU machine has nvcc 13, CMake, ninja and PyTorch (whose pip packages carry cuBLAS/cuDNN), but
# no package registry: no GoogleTest, OpenBLAS, zlib headers, nlohmann-json, CLI11 or stb. So the
# binaries are built here (Debian 12, glibc 2.36, sm_90) and carried, with the shared libraries the
# device cannot provide; cuBLASLt comes from PyTorch's pip package there (see gpu-check.sh).
# The data set travels too (30 MB), for the CUDA training run. Everything must stay under the
# device tool's 64 MiB: OpenBLAS (35 MB) travels xz-compressed (4 MB).
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DVAE_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 > /dev/null
cmake --build build-gpu
rm -rf .gpu && mkdir -p .gpu/lib .gpu/data
cp build-gpu/vae build-gpu/tests/vae_tests build-gpu/bench/vae_bench .gpu/
for lib in libopenblas.so.0 libgfortran.so.5 libquadmath.so.0 libgomp.so.1; do
  path=$(ldd build-gpu/tests/vae_tests | awk -v l="$lib" '$1 == l { print $3 }')
  [ -n "$path" ] || { echo "gpu-prepare: $lib not found by ldd" >&2; exit 1; }
  cp -L "$path" ".gpu/lib/$lib"
done
xz -9 -T2 .gpu/lib/libopenblas.so.0
cp /usr/share/datasets/fashion-mnist/*-images-idx3-ubyte.gz .gpu/data/
git rev-parse HEAD > .gpu/COMMIT
git diff --quiet HEAD || echo "dirty" >> .gpu/COMMIT
du -sh .gpu
echo "now call the device tool: run(command='bash scripts/gpu-check.sh', carry=['.gpu'])"
