#!/usr/bin/env bash
# Builds the libFuzzer harnesses (tests/fuzz, clang with ASan+UBSan) in build-fuzz and runs each for
# SECONDS, starting from the seeds in tests/fuzz/seeds and the corpus of earlier runs
# (build-fuzz/corpus). Prints one line per harness: executions, corpus size, findings. Exits 1 when
# any harness found a crash, a leak, a sanitizer report, an out-of-memory or a timeout; the
# reproducer is saved as build-fuzz/findings/<harness>/crash-* (rerun: build-fuzz/tests/fuzz/fuzz_X FILE).
# Usage: scripts/fuzz.sh [SECONDS=60] [HARNESS...]   (harnesses: idx npy png_folder safetensors checkpoint config)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
seconds=${1:-60}
shift || true
harnesses=("$@")
((${#harnesses[@]})) || harnesses=(idx npy png_folder safetensors checkpoint config)
build=${VAE_FUZZ_BUILD:-$root/build-fuzz}

mkdir -p "$build"
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++ \
  -DVAE_BUILD_FUZZERS=ON -DVAE_CUDA=OFF -DVAE_BUILD_TESTS=OFF -DVAE_BUILD_BENCH=OFF -DVAE_BUILD_CLI=OFF > "$build/configure.log" 2>&1 ||
  { cat "$build/configure.log"; exit 1; }
targets=()
for h in "${harnesses[@]}"; do targets+=("fuzz_$h"); done
cmake --build "$build" --target "${targets[@]}" > "$build/build.log" 2>&1 || { tail -50 "$build/build.log"; exit 1; }

status=0
for h in "${harnesses[@]}"; do
  corpus=$build/corpus/$h findings=$build/findings/$h log=$build/logs/fuzz_$h.log
  mkdir -p "$corpus" "$findings" "$build/logs"
  # -rss_limit_mb: a reader that allocates what a hostile header asks for shows up as an OOM finding.
  # ASan's leak check stays on. One worker: the machine's other core stays free.
  if ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1 UBSAN_OPTIONS=print_stacktrace=1 \
     "$build/tests/fuzz/fuzz_$h" "$corpus" "$root/tests/fuzz/seeds/$h" -max_total_time="$seconds" \
       -rss_limit_mb=2560 -malloc_limit_mb=2560 -timeout=20 -artifact_prefix="$findings/" -print_final_stats=1 > "$log" 2>&1; then
    verdict="no findings"
  else
    verdict="FINDING: $(find "$findings" -type f -printf '%f ' | head -c 300) (log: $log)"
    status=1
  fi
  runs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' || echo '?')
  units=$(find "$corpus" -type f | wc -l)
  printf 'fuzz_%-12s %4ss  %10s executions  corpus %5s  %s\n' "$h" "$seconds" "$runs" "$units" "$verdict"
done
exit $status
