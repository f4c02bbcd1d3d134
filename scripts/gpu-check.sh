#!/usr/bin/env bash
# Run ON THE GPU MACHINE (through the device tool, with carry [".gpu"] from scripts/gpu-prepare.sh):
# the whole test suite, compute-sanitizer memcheck and racecheck over the CUDA tests, the kernels and
# cuBLASLt plans of one training step, the benchmarks, the PyTorch side-by-side and the default
# training run and the conv VAE's on CUDA with their evaluations. docs/gpu.md says how to call it and what to look for.
#
#   bash scripts/gpu-check.sh [PHASE...]   phases: tests sanitizers profile bench torch autotune train python
#                                          (none = all; one device call may run 10 minutes at most,
#                                          so docs/gpu.md splits them over three calls)
#
# What comes back: the device tool returns at most 8 files from $OUT. This script leaves two there:
# results.md (the summary) and logs.tar.gz (every log, the training run and the reports). Both are
# rewritten after every step, so a call cut off by its time limit still returns everything done.
# Each step has its own time limit (GPU_CHECK_STEP_LIMIT seconds, default 540) so one hung step cannot
# take the rest of the call. A tool that is missing or refuses the device (compute-sanitizer and ncu
# have refused it on some machines of this kind) marks its step SKIPPED with the reason; only our own
# failures say FAIL. GPU_CHECK_WITHOUT="xz gzip" pretends those tools are missing, to try the
# fallbacks on a machine that has them.
set -uo pipefail
all_phases="tests sanitizers profile bench torch autotune train python"
phases=" ${*:-$all_phases} "
for p in $phases; do
  [[ " $all_phases " == *" $p "* ]] || { echo "gpu-check: unknown phase '$p'; the phases are: $all_phases" >&2; exit 2; }
done
want() { [[ "$phases" == *" $1 "* ]]; }
root=$(cd "$(dirname "$0")/.." && pwd)
g=$root/.gpu
out=${OUT:-$root/gpu-out}
work=${GPU_CHECK_WORK:-/tmp/vae-gpu-check}
logs=$work/logs
step_limit=${GPU_CHECK_STEP_LIMIT:-540}
report=$root/scripts/gpu_report.py
[ -f "$g/vae_tests" ] && [ -f "$g/DEVICE_LIBS" ] ||
  { echo "gpu-check: .gpu/ is missing or from an older gpu-prepare.sh; run scripts/gpu-prepare.sh here and carry .gpu" >&2; exit 1; }
mkdir -p "$out"
rm -rf "$work" && mkdir -p "$logs"
summary=$out/results.md
facts=$work/facts.md
steps=$work/steps.md
: > "$facts"
: > "$steps"
status=0

have() { [[ " ${GPU_CHECK_WITHOUT:-} " != *" $1 "* ]] && command -v "$1" > /dev/null; }
fact() { echo "- $*" | tee -a "$facts"; }

# Every log in one archive in $OUT, replaced whole (written beside it, then renamed).
archive() {
  local part=$out/logs-part.tar.gz
  if have tar && have gzip; then
    tar -C "$work" --exclude='*.nsys-rep' --exclude='*.sqlite' -czf "$part" logs
  else
    (cd "$work" && python3 -m tarfile -c "$part" logs)  # the .gz name asks tarfile for gzip
  fi && mv -f "$part" "$out/logs.tar.gz"
}
refresh() {
  {
    echo "# GPU check"
    cat "$facts"
    echo
    echo "## Steps"
    echo
    cat "$steps"
    python3 "$report" summary "$work" 2>&1
  } > "$work/results.md"
  cp "$work/results.md" "$logs/results.md"
  mv -f "$work/results.md" "$summary"
  archive
}

# step NAME COMMAND...: runs under the step limit with its output in $logs/NAME.log, and records
# PASS or FAIL with the time taken and the step's own verdict (its "gpu-check: " lines), or, for a
# failure without one, the log's last line. COMMAND may be a function of this script (exported).
step() {
  local name=$1 t0=$SECONDS rc result verdict
  shift
  timeout -k 10 "$step_limit" bash -c '"$@"' "$name" "$@" > "$logs/$name.log" 2>&1
  rc=$?
  verdict=$(grep '^gpu-check: ' "$logs/$name.log" | cut -c12- | paste -sd ';' -)
  case $rc in
    0) result=PASS ;;
    124 | 137) result="FAIL (no result within ${step_limit}s)" ;;
    *) result="FAIL (rc $rc)" ;;
  esac
  [ $rc = 0 ] || [ -n "$verdict" ] || verdict=$(grep -v '^[[:space:]]*$' "$logs/$name.log" | tail -1 | cut -c1-300)
  echo "- $name: $result in $((SECONDS - t0))s${verdict:+: $verdict}" | tee -a "$steps"
  [ $rc = 0 ] || status=1
  refresh
}
skip() { echo "- $1: SKIPPED: $2" | tee -a "$steps"; refresh; }
fail() { echo "- $1: FAIL: $2" | tee -a "$steps"; status=1; refresh; }

# ---- what the carried binaries need ----------------------------------------------------------
# OpenBLAS travels xz-compressed and is unpacked outside .gpu/ (which must stay small enough to
# carry); xz may be missing here, Python's lzma is not.
mkdir -p "$work/lib"
for f in "$g"/lib/*.xz; do
  [ -e "$f" ] || continue
  unpacked=$work/lib/$(basename "${f%.xz}")
  if have xz; then
    xz -dc "$f" > "$unpacked"
  else
    python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' "$f" "$unpacked"
  fi || { echo "gpu-check: could not decompress $f (xz, then python3's lzma)" >&2; exit 1; }
done

# CUDA libraries (cuBLASLt, cuDNN 9): PyTorch's pip packages first (nvidia/cu13/lib: the copies
# PyTorch runs with on this driver), then what the loader knows, then the toolkit, then a search
# that does not walk /proc, /sys, /dev or /run.
find_device_lib() {
  local name=$1 p d
  p=$(python3 "$report" find-lib "$name" 2> /dev/null)
  [ -z "$p" ] && p=$(ldconfig -p 2> /dev/null | awk -v n="$name" '$1 == n { print $NF; exit }')
  if [ -z "$p" ]; then
    for d in ${CUDA_HOME:+$CUDA_HOME/lib64} /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
      [ -e "$d/$name" ] && { p=$d/$name; break; }
    done
  fi
  [ -z "$p" ] && p=$(find / \( -path /proc -o -path /sys -o -path /dev -o -path /run \) -prune -o -name "$name" -print 2> /dev/null | sort | head -1)
  echo "$p"
}

# Only our binaries get these libraries: Python and PyTorch keep their own.
ours() { LD_LIBRARY_PATH="$ourlibs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" VAE_CLI_PATH="$g/vae" VAE_TEST_DATA_DIR="$g/data" "$@"; }

fact "date: $(date -u +%Y-%m-%dT%H:%MZ)"
fact "commit: $(tr '\n' ' ' < "$g/COMMIT")"
fact "build: $(tr '\n' ';' < "$g/BUILD" 2> /dev/null)"
if have nvidia-smi; then
  fact "nvidia-smi: $(nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv,noheader 2>&1 | head -1)"
else
  fact "nvidia-smi: not installed here"
fi
fact "C library: $(ldd --version 2>&1 | head -1); the binaries need at most $(tr '\n' ' ' < "$g/NEEDS")"
fact "phases:$phases"
ourlibs=$g/lib:$work/lib
while read -r name; do
  [ -n "$name" ] || continue
  path=$(find_device_lib "$name")
  [ -n "$path" ] || { fail loader "$name is not on this machine (looked in PyTorch's nvidia packages, ldconfig, /usr/local/cuda, then everywhere)"; exit 1; }
  fact "$name: $path ($(basename "$(readlink -f "$path")"))"
  ourlibs=$ourlibs:$(dirname "$path")
done < "$g/DEVICE_LIBS"

# The binaries were built elsewhere: name any library the loader cannot find before running anything.
ours ldd "$g"/vae "$g"/vae_tests "$g"/vae_bench "$g"/vae_gpu_probe > "$logs/ldd.log" 2>&1
missing=$(grep -E "not found" "$logs/ldd.log" | sort -u)
if [ -n "$missing" ]; then
  fail loader "the carried binaries cannot load here: $(echo "$missing" | tr -s ' \t\n' ' ')"
  exit 1
fi

# Is there a usable GPU at all? The probe is a few lines of CUDA, none of ours.
ours "$g/vae_gpu_probe" > "$logs/probe.log" 2>&1
probe_rc=$?
probe_says=$(grep -m1 '^vae_gpu_probe: ' "$logs/probe.log" | cut -c16-)
if [ $probe_rc = 0 ]; then
  fact "CUDA probe: ${probe_says:-ok}"
else
  fact "CUDA probe: FAILED (rc $probe_rc): ${probe_says:-$(tail -1 "$logs/probe.log")}"
fi
refresh

# A CUDA tool: on PATH, else the first of the usual places (newest version first).
find_tool() {
  local name=$1 c
  shift
  have "$name" && { command -v "$name"; return; }
  for c in "$@"; do [ -x "$c" ] && { echo "$c"; return; }; done
}
newest() { ls -d "$@" 2> /dev/null | sort -rV; }  # its words are candidates for find_tool (no spaces in these paths)
# tool_refuses NAME COMMAND...: runs the probe under a tool; prints why the tool cannot be used, if so.
tool_refuses() {
  local log=$logs/probe-$1.log
  shift
  timeout -k 5 120 bash -c '"$@"' "$1" "$@" > "$log" 2>&1 && return 1
  grep -m1 -iE 'error|not supported|fail' "$log" | sed -E 's/^=+([A-Z]+=+)? *//' | cut -c1-200 || tail -1 "$log"
  return 0
}
# needs_tool STEP TOOL NAME PROBE-ARGS...: decides whether STEP can run; if not, records why.
needs_tool() {
  local stepname=$1 tool=$2 toolname=$3 why
  shift 3
  if [ -z "$tool" ]; then skip "$stepname" "$toolname is not installed here (not on PATH or in the usual places)"; return 1; fi
  if [ $probe_rc != 0 ]; then fail "$stepname" "no usable CUDA device: $probe_says"; return 1; fi
  if why=$(tool_refuses "$toolname" ours "$tool" "$@" "$g/vae_gpu_probe"); then
    skip "$stepname" "$toolname refuses this device: $why"
    return 1
  fi
}

# run_gtest JSON COMMAND...: the test binary (last word of COMMAND) with a JSON report, then the
# verdict: any failed or skipped test fails the step (on this machine every CUDA test must run).
run_gtest() {
  local json=$1 rc
  shift
  "$@" --gtest_brief=1 --gtest_output="json:$json"
  rc=$?
  python3 "$report" gtest "$json" || { [ $rc = 0 ] && rc=3; }
  return $rc
}
# sanitize TOOL FILTER: the CUDA tests under a compute-sanitizer tool, whose report goes to a file of
# its own; the step fails on a sanitizer error as well as on a failed or skipped test.
sanitize() {
  local tool=$1 filter=$2 rc
  run_gtest "$logs/$tool.json" ours "$cs" --tool "$tool" --error-exitcode 1 --log-file "$logs/$tool-report.log" \
    "$g/vae_tests" --gtest_filter="$filter"
  rc=$?
  python3 "$report" sanitizer "$logs/$tool-report.log" || { [ $rc = 0 ] && rc=1; }
  return $rc
}
# The kernels one training step launches (batch 128), for the fused-epilogue check: nsys traces the
# recorded graph node by node; ncu (clock control off: the card's clocks are left as they are) lists
# the uncaptured step's kernels.
profile_nsys() {
  ours "$nsys" profile --trace=cuda --cuda-graph-trace=node --force-overwrite=true -o "$logs/step" \
    "$g/vae_bench" --benchmark_filter='BM_TrainStep/batch:128/cuda:1/graph:1' --benchmark_min_time=0.05 &&
    "$nsys" stats --report cuda_gpu_kern_sum --format csv "$logs/step.nsys-rep" > "$logs/kernels.csv"
}
profile_ncu() {
  ours "$ncu" --clock-control none --csv --metrics gpu__time_duration.sum --launch-count 150 \
    "$g/vae_bench" --benchmark_filter='BM_TrainStep/batch:128/cuda:1/graph:0' --benchmark_min_time=0.01 > "$logs/kernels.csv"
}
# Which cuBLASLt plan each GEMM of a training step got (fused epilogue, or the unfused path), at
# both benchmark batch sizes (src/backend/cuda/lt_matmul.cpp logs them).
gemm_plans() {
  local plans n
  plans=$(VAE_LOG_GEMM_PLANS=1 ours "$g/vae_bench" --benchmark_filter='BM_TrainStep/batch:(128|4096)/cuda:1/graph:1' \
    --benchmark_min_time=0.01 2>&1)
  echo "$plans"
  n=$(grep -c "GEMM plan" <<< "$plans")
  [ "$n" -gt 0 ] || { echo "gpu-check: no GEMM plan was logged"; return 3; }
  echo "gpu-check: $n GEMM plans, $(grep "GEMM plan" <<< "$plans" | grep -c "epilogue=[A-Z].*: cuBLASLt") with a fused epilogue"
}
# Every CUDA benchmark (the CPU ones mean nothing on this machine's CPU), three repetitions, medians.
bench() {
  ours "$g/vae_bench" --benchmark_filter='cuda:1' --benchmark_min_time=0.5 --benchmark_repetitions=3 \
    --benchmark_report_aggregates_only=true --benchmark_format=json --benchmark_out="$logs/bench.json" > /dev/null
  local rc=$?
  python3 "$report" bench "$logs/bench.json" || { [ $rc = 0 ] && rc=3; }
  return $rc
}
torch_step() { python3 "$root/bench/pytorch_reference.py" step --device cuda --batch "$1" --mode "$2" --repeats 100; }
export g logs ourlibs report root
export -f ours run_gtest sanitize profile_nsys profile_ncu gemm_plans bench torch_step

if want tests; then
  step tests run_gtest "$logs/tests.json" ours "$g/vae_tests"
fi

if want sanitizers; then
  # shellcheck disable=SC2046
  cs=$(find_tool compute-sanitizer /usr/local/cuda/bin/compute-sanitizer /usr/local/cuda/compute-sanitizer/compute-sanitizer \
    $(newest /opt/nvidia/compute-sanitizer*/compute-sanitizer))
  export cs
  # Every CUDA test (the op table's parity cases match *Cuda* through CudaMatchesCpu) but the golden
  # run (slow under the tool, and the parity suite covers its kernels)
  # and the out-of-memory test, whose 16 TiB cudaMalloc fails on purpose: the sanitizer would count it.
  needs_tool memcheck "$cs" compute-sanitizer --tool memcheck --error-exitcode 1 &&
    step memcheck sanitize memcheck '*Cuda*:-CudaGolden*:CudaErrors.OutOfMemory*'
  # The kernels that use shared memory.
  needs_tool racecheck "$cs" compute-sanitizer --tool racecheck --error-exitcode 1 &&
    step racecheck sanitize racecheck \
      'OpTable/OpParity.CudaMatchesCpu/latent_sample_kl:OpTable/OpParity.CudaMatchesCpu/*_nll:OpTable/OpParity.CudaMatchesCpu/loss_reduce:OpTable/OpParity.CudaMatchesCpu/adam'
fi

if want profile; then
  # shellcheck disable=SC2046
  nsys=$(find_tool nsys /usr/local/cuda/bin/nsys $(newest /opt/nvidia/nsight-systems/*/bin/nsys))
  # shellcheck disable=SC2046
  ncu=$(find_tool ncu /usr/local/cuda/bin/ncu $(newest /opt/nvidia/nsight-compute/*/ncu))
  export nsys ncu
  if [ -n "$nsys" ] && [ $probe_rc = 0 ] && ! tool_refuses nsys ours "$nsys" profile --trace=cuda --force-overwrite=true \
    -o "$logs/probe" "$g/vae_gpu_probe" > /dev/null; then
    step profile profile_nsys
  elif needs_tool profile "$ncu" ncu --clock-control none --metrics gpu__time_duration.sum; then
    step profile profile_ncu
  fi
  step gemm-plans gemm_plans
fi

if want bench; then
  step bench bench
fi

if want torch; then
  for b in 128 4096; do
    for mode in eager compile reduce-overhead; do step "torch-$mode-$b" torch_step $b $mode; done
  done
fi

if want autotune; then
  # max-autotune benchmarks GEMM variants while it compiles: minutes per batch size.
  for b in 128 4096; do step "torch-max-autotune-$b" torch_step $b max-autotune; done
fi

if want train; then
  run=$logs/run-cuda
  step train-cuda ours "$g/vae" train --device cuda --data "$g/data" --out "$run"
  step eval-cuda ours "$g/vae" eval --device cuda --checkpoint "$run/model.safetensors" --data "$g/data" --k 100 --json
  # The same weights evaluated by the CPU reference backend (the same binarised test set and noise).
  step eval-cpu-of-cuda-model ours "$g/vae" eval --device cpu --checkpoint "$run/model.safetensors" --data "$g/data" --k 100 --json
  step eval-cuda-k5000 ours "$g/vae" eval --device cuda --checkpoint "$run/model.safetensors" --data "$g/data" --k 5000 --json
  # The conv VAE through cuDNN (configs/conv.json), with the algorithm cuDNN chose for each layer.
  conv=$logs/run-cuda-conv
  step train-cuda-conv ours env VAE_LOG_CONV_PLANS=1 "$g/vae" train --device cuda --config configs/conv.json --epochs 3 \
    --data "$g/data" --out "$conv"
  step eval-cuda-conv ours "$g/vae" eval --device cuda --checkpoint "$conv/model.safetensors" --data "$g/data" --k 100 --json
  step eval-cpu-of-cuda-conv ours "$g/vae" eval --device cpu --checkpoint "$conv/model.safetensors" --data "$g/data" --k 100 --json
  # Generation on CUDA: a conditional run, the classifier, and the quality measure for prior and
  # aggregate-posterior samples (with their samples/s), against the same measure on the CPU.
  cond=$logs/run-cuda-conditional
  step train-cuda-conditional ours "$g/vae" train --device cuda --conditional --epochs 3 --data "$g/data" --out "$cond"
  step classifier-cuda ours "$g/vae" classifier --device cuda --data "$g/data" --out "$logs/classifier.safetensors"
  step quality-cuda-prior ours "$g/vae" quality --device cuda --checkpoint "$cond/model.safetensors" \
    --classifier "$logs/classifier.safetensors" --data "$g/data" --json
  step quality-cpu-prior ours "$g/vae" quality --device cpu --checkpoint "$cond/model.safetensors" \
    --classifier "$logs/classifier.safetensors" --data "$g/data" --json
  step quality-cuda-aggregate ours "$g/vae" quality --device cuda --checkpoint "$run/model.safetensors" \
    --classifier "$logs/classifier.safetensors" --data "$g/data" --from aggregate --json
fi

if want python; then
  # The Python package's tests with the CUDA build of vae._core: the DLPack path on the GPU (torch's
  # CUDA tensors, and the engine's own vae.Tensor), and the rest as on the CPU. The module is built
  # for the preparing machine's Python (.gpu/PYTHON); another version cannot import it.
  py_here=$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2> /dev/null)
  if [ "$py_here" != "$(cat "$g/PYTHON" 2> /dev/null)" ]; then
    skip python "vae._core is built for Python $(cat "$g/PYTHON" 2> /dev/null) but this machine has ${py_here:-none}"
  elif ! python3 -c 'import numpy, pytest' 2> /dev/null; then
    skip python "python3 here lacks numpy or pytest"
  else
    step python ours env PYTHONPATH="$g/python" VAE_CLI="$g/vae" python3 -m pytest -q -rs "$root/python/tests"
  fi
fi

cat "$summary"
exit $status
