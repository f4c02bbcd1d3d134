#!/usr/bin/env bash
# Run HERE (the development machine): builds the CUDA binaries and gathers what the GPU machine lacks
# into .gpu/ (git-ignored), which the device tool carries with `carry: [".gpu"]`. See docs/gpu.md.
#
# The GPU machine has nvcc 13, CMake, ninja and PyTorch (whose pip packages carry cuBLAS and cuDNN),
# but no package registry: no GoogleTest, Google Benchmark, OpenBLAS, zlib headers, nlohmann-json,
# CLI11 or stb. So the binaries are built here (Debian 12, sm_90) and carried with every shared
# library they need that the device may lack. zlib is carried as libz.so.1 (Debian's libz.a is not
# position-independent, so vae._core, a shared object, cannot link it); Debian has no static Google
# Benchmark, and OpenBLAS stays shared (its OpenMP build, as in every other build of ours). The
# carried set is derived from ldd, then checked against each ELF file's own NEEDED entries: every one
# must be carried, be a CUDA library the device has (cuBLASLt, cuDNN: gpu-check.sh finds it there),
# or belong to glibc, libstdc++ or libgcc. The data set travels too, for the CUDA training run.
# Everything the device tool sends must stay under 64 MiB: OpenBLAS (35 MB) travels xz-compressed.
#
#   bash scripts/gpu-prepare.sh               build, gather and check .gpu/
#   bash scripts/gpu-prepare.sh --check-only  only check an existing .gpu/ (NEEDED entries, size)
set -euo pipefail
cd "$(dirname "$0")/.."

# Provided by any glibc 2.34+ system with GCC 12's libstdc++ or newer (the versions are checked below).
is_system_lib() {
  case "$1" in
    linux-vdso.so.1 | ld-linux-x86-64.so.2 | libc.so.6 | libm.so.6 | libpthread.so.0 | libdl.so.2 | librt.so.1 | \
      libutil.so.1 | libresolv.so.2 | libstdc++.so.6 | libgcc_s.so.1) return 0 ;;
  esac
  return 1
}
# Provided on the device by PyTorch's pip packages (nvidia/cu13/lib, nvidia/cudnn/lib, nvidia/nccl/lib)
# or the toolkit. (libnccl is 218 MB: it could not travel anyway.)
is_device_cuda_lib() {
  case "$1" in
    libcublasLt.so.* | libcublas.so.* | libcudnn*.so.* | libnccl.so.*) return 0 ;;
  esac
  return 1
}
elf_files() { find .gpu -maxdepth 3 -type f \( -name 'vae*' -o -path '.gpu/lib/*' \) ! -name '*.xz' | sort; }
needed_of() { readelf -d "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'; }

# Every NEEDED entry of every carried ELF file (binaries and libraries) is carried, a CUDA library
# of the device's, or glibc/libstdc++/libgcc. Compressed libraries are checked through a copy.
check_needed() {
  local bad=0 tmp f n where
  tmp=$(mktemp -d)
  for f in .gpu/lib/*.xz; do
    [ -e "$f" ] || continue
    xz -dc "$f" > "$tmp/$(basename "${f%.xz}")"
  done
  echo "gpu-prepare: the NEEDED entries of every carried file:"
  for f in $(elf_files) "$tmp"/*; do
    [ -f "$f" ] || continue
    for n in $(needed_of "$f"); do
      if [ -e ".gpu/lib/$n" ] || [ -e ".gpu/lib/$n.xz" ]; then where="carried in .gpu/lib"
      elif is_system_lib "$n"; then where="system (glibc, libstdc++, libgcc)"
      elif is_device_cuda_lib "$n"; then where="CUDA library of the device (gpu-check.sh finds it)"
      else where="MISSING: neither carried nor provided by the device"; bad=1
      fi
      printf '  %-26s %-24s %s\n' "$(basename "$f")" "$n" "$where"
    done
  done
  rm -rf "$tmp"
  if [ "$bad" != 0 ]; then
    echo "gpu-prepare: FAIL: a carried file needs a library that would be missing on the device (above);" \
         "carry it in .gpu/lib or link it statically" >&2
    return 1
  fi
}

mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
# The device tool sends tracked files, untracked files git does not ignore, and the carried paths.
check_size() {
  local tracked untracked carried total limit=$((64 << 20))
  tracked=$(git ls-files -z | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1)
  untracked=$(git ls-files -z -o --exclude-standard | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1)
  carried=$(du -sb .gpu | cut -f1)
  total=$((tracked + ${untracked:-0} + carried))
  echo "gpu-prepare: the device tool will send $(mib "$total") MiB of its 64 MiB limit" \
       "(tracked files $(mib "$tracked"), untracked $(mib "${untracked:-0}"), .gpu $(mib "$carried"))"
  [ "$total" -lt "$limit" ] || { echo "gpu-prepare: FAIL: over the device tool's 64 MiB" >&2; return 1; }
}

if [ "${1:-}" = "--check-only" ]; then
  [ -d .gpu ] || { echo "gpu-prepare: no .gpu/ to check; run scripts/gpu-prepare.sh" >&2; exit 1; }
  check_needed && check_size
  exit
fi

# Without MPI: the device has no mpirun to start a job with, and one GPU. The NCCL path runs there
# with one rank in-process (ProcessGroup::local_collective: the Distributed.* tests, and the
# BM_TrainStepAllReduce benchmark), which needs no MPI.
# Without the Python extension: it would be built for this machine's Python (Debian's 3.11) and the
# GPU machine has 3.12, so it could not be imported there (docs/gpu.md).
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DVAE_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
  -DVAE_BUILD_PYTHON=OFF -DVAE_MPI=OFF -DVAE_ONEDNN=OFF > /dev/null
cmake --build build-gpu
rm -rf .gpu && mkdir -p .gpu/lib .gpu/data
cp build-gpu/vae build-gpu/tests/vae_tests build-gpu/bench/vae_bench build-gpu/vae_gpu_probe .gpu/

# Carry what ldd resolves here, except what the device provides. ldd lists the whole closure
# (libraries of libraries too); "not found" here would be not found there either.
: > .gpu/DEVICE_LIBS
for b in .gpu/vae*; do
  ldd "$b" | awk '$2 == "=>" { print $1, $3; next } { n = split($1, p, "/"); print p[n], $1 }'
done | sort -u | while read -r name path; do
  [ "$path" != "not" ] || { echo "gpu-prepare: $name is not found here either; install it first" >&2; exit 1; }
  if is_system_lib "$name"; then continue; fi
  if is_device_cuda_lib "$name"; then echo "$name" >> .gpu/DEVICE_LIBS; continue; fi
  cp -L "$path" ".gpu/lib/$name"
done
echo "gpu-prepare: carried libraries: $(cd .gpu/lib && ls | tr '\n' ' ')"
echo "gpu-prepare: CUDA libraries the device must provide: $(tr '\n' ' ' < .gpu/DEVICE_LIBS)"

# The newest symbol versions any carried file asks of glibc and libstdc++ (the device's must be at
# least these; gpu-check.sh's ldd names any that are not).
versions=$(for f in $(elf_files); do
  objdump -T "$f" | grep '\*UND\*' | grep -o '(\(GLIBC\|GLIBCXX\|CXXABI\)_[0-9.]*)' || true
done | tr -d '()' | sort -uV)
for k in GLIBC GLIBCXX CXXABI; do echo "$versions" | grep "^${k}_[0-9]" | tail -1; done > .gpu/NEEDS
echo "gpu-prepare: newest symbol versions needed: $(tr '\n' ' ' < .gpu/NEEDS)"

cp /usr/share/datasets/fashion-mnist/*-ubyte.gz .gpu/data/
# The carried binaries and data work together here (CPU, a few steps) before they travel.
smoke=$(mktemp -d)
LD_LIBRARY_PATH="$PWD/.gpu/lib" .gpu/vae train --device cpu --data .gpu/data --epochs 1 --train-limit 256 \
  --test-limit 128 --hidden 32 --latent 4 --threads 2 --out "$smoke/run" > "$smoke/log" 2>&1 ||
  { cat "$smoke/log" >&2; echo "gpu-prepare: FAIL: the carried vae could not train on the carried data" >&2; exit 1; }
rm -rf "$smoke"
.gpu/vae_gpu_probe || true  # here, with no GPU, it says so (exit 2); on the device it must pass

for f in .gpu/lib/*; do
  if [ "$(stat -c %s "$f")" -gt $((4 << 20)) ]; then xz -9 -T2 "$f"; fi
done
check_needed
{
  git rev-parse HEAD
  git diff --quiet HEAD || echo "dirty"
} > .gpu/COMMIT
{
  echo "built $(date -u +%Y-%m-%dT%H:%MZ) on $(. /etc/os-release && echo "$PRETTY_NAME")"
  echo "$(nvcc --version | tail -2 | head -1); $(g++ --version | head -1)"
} > .gpu/BUILD
check_size
echo "now call the device tool once: run(command=\"bash scripts/gpu-check.sh quick\", carry=[\".gpu\"], timeout_s=500) (docs/gpu.md)"
