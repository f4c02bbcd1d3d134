#!/usr/bin/env bash
# Run ON THE GPU MACHINE (through the device tool, with carry [".gpu"] from scripts/gpu-prepare.sh).
# docs/gpu.md says how to call it, what each line of results.md means and what to run second.
#
#   bash scripts/gpu-check.sh quick          the first call on any GPU: one call, a hard deadline
#   bash scripts/gpu-check.sh [PHASE...]     the full phases, for later calls: tests sanitizers
#                                            profile bench torch autotune train (none = all)
#
# quick runs, in this order, each step under min(its own cap, what is left of GPU_CHECK_DEADLINE
# seconds, default 450, counted from the start): probe and library versions; the op-level CUDA tests
# (op table parity, CudaParity, CudaErrors, the recording guards) in one process with the GEMM and
# convolution plan logs on; the step tests (graph replay in FP32 and TF32, golden 10 steps, NCCL with
# one rank) in a separate process, since one device fault poisons every later CUDA call of a
# process; the default model trained 10 epochs on CUDA, its checkpoint evaluated on CUDA, on the CPU
# and with --strict-fp32 (k=100, 2000 test images); one short epoch with and without the fused
# epilogues; the conv VAE for 2 epochs and its evaluation; the training-step benchmarks (MLP and conv
# at batch 128 and 4096) with the GEMM plan log; PyTorch eager at the same sizes; compute-sanitizer
# memcheck over the op-level tests, our kernels only, with whatever time is left. A step with too
# little time left is SKIPPED and says so.
#
# What comes back: the device tool returns at most 8 files from $OUT, each under 16 MiB. This script
# leaves two there: results.md (the summary) and logs.tar.gz (every log, never a checkpoint or a
# profiler database). Both are rewritten after every step, so a call cut off still returns what ran.
# In the full phases each step has its own limit (GPU_CHECK_STEP_LIMIT seconds, default 540). A tool
# that is missing or refuses the device (compute-sanitizer and ncu have refused it on some machines)
# marks its step SKIPPED with the reason; only our own failures say FAIL. VAE_REQUIRE_CUDA=1 is set
# for every test run: a CUDA test that cannot run fails instead of skipping. GPU_CHECK_WITHOUT="xz
# gzip" pretends those tools are missing, to try the fallbacks on a machine that has them.
set -uo pipefail
all_phases="tests sanitizers profile bench torch autotune train"
if [ "${1:-}" = quick ]; then
  [ $# = 1 ] || { echo "gpu-check: quick runs alone (it is the whole first call)" >&2; exit 2; }
  phases=" quick "
else
  phases=" ${*:-$all_phases} "
  for p in $phases; do
    [ "$p" != python ] || { echo "gpu-check: the python phase is gone: vae._core is built for Debian's Python 3.11 and the GPU machine has 3.12 (docs/gpu.md)" >&2; exit 2; }
    [[ " $all_phases " == *" $p "* ]] || { echo "gpu-check: unknown phase '$p'; the phases are: quick, or $all_phases" >&2; exit 2; }
  done
fi
want() { [[ "$phases" == *" $1 "* ]]; }
root=$(cd "$(dirname "$0")/.." && pwd)
g=$root/.gpu
out=${OUT:-$root/gpu-out}
work=${GPU_CHECK_WORK:-/tmp/vae-gpu-check}
logs=$work/logs
step_limit=${GPU_CHECK_STEP_LIMIT:-540}
report=$root/scripts/gpu_report.py
# quick: every step ends by this many seconds after the start (the device call's limit, 600 s, minus
# the machine's start and the transfers); the full phases have no deadline but the per-step limit.
if want quick; then deadline=${GPU_CHECK_DEADLINE:-450}; else deadline=1000000000; fi
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

# results.md, and every log in one archive (gpu_report.py archive: never a checkpoint or a profiler
# database), both in $OUT and both replaced whole (written beside, then renamed).
refresh() {
  {
    echo "# GPU check ($([ "$phases" = " quick " ] && echo "quick, deadline ${deadline}s" || echo "phases:$phases"))"
    echo
    cat "$facts"
    echo
    echo "## Steps"
    echo
    cat "$steps"
    python3 "$report" summary "$work" 2>&1
  } > "$work/results.md"
  cp "$work/results.md" "$logs/results.md"
  mv -f "$work/results.md" "$summary"
  python3 "$report" archive "$work" "$out/logs.tar.gz" > "$work/archive.log" 2>&1 ||
    echo "- archive: FAIL: $(tail -1 "$work/archive.log")" >> "$steps"
}

# step_cap NAME CAP COMMAND...: runs COMMAND with its output in $logs/NAME.log for at most CAP seconds
# and never past the deadline, and records PASS or FAIL with the time taken and the step's own
# verdict (its "gpu-check: " lines) or, for a failure without one, the log's last line. With less
# than 10 s left the step is SKIPPED. COMMAND may be a function of this script (exported).
step_cap() {
  local name=$1 cap=$2 t0=$SECONDS rc result verdict limit left
  shift 2
  left=$((deadline - SECONDS))
  if [ "$left" -lt 10 ]; then
    skip "$name" "no time left before the ${deadline}s deadline"
    return
  fi
  limit=$((cap < left ? cap : left))
  timeout -k 5 "$limit" bash -c '"$@"' "$name" "$@" > "$logs/$name.log" 2>&1
  rc=$?
  verdict=$(grep '^gpu-check: ' "$logs/$name.log" | cut -c12- | paste -sd ';' -)
  case $rc in
    0) result=PASS ;;
    124 | 137) result="FAIL (no result within ${limit}s$([ "$limit" -lt "$cap" ] && echo ": cut at the deadline"))" ;;
    *) result="FAIL (rc $rc)" ;;
  esac
  [ $rc = 0 ] || [ -n "$verdict" ] || verdict=$(grep -v '^[[:space:]]*$' "$logs/$name.log" | tail -1 | cut -c1-300)
  echo "- $name: $result in $((SECONDS - t0))s${verdict:+: $verdict}" | tee -a "$steps"
  [ $rc = 0 ] || status=1
  refresh
}
step() { step_cap "$1" "$step_limit" "${@:2}"; }
skip() { echo "- $1: SKIPPED: $2" | tee -a "$steps"; refresh; }
fail() { echo "- $1: FAIL: $2" | tee -a "$steps"; status=1; refresh; }
# needs_file STEP FILE: whether a step's input (a checkpoint an earlier step wrote) is there; if not,
# the step is SKIPPED naming the step that should have written it.
needs_file() { [ -f "$2" ] || { skip "$1" "no $(basename "$2"): $3 did not write it"; return 1; }; }

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

# CUDA libraries (cuBLASLt, cuDNN 9, NCCL): PyTorch's pip packages first (nvidia/cu13/lib: the copies
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

# Only our binaries get these libraries (Python and PyTorch keep their own), and every test run
# requires CUDA: a CUDA test that cannot run fails instead of skipping.
ours() {
  LD_LIBRARY_PATH="$ourlibs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" VAE_CLI_PATH="$g/vae" VAE_TEST_DATA_DIR="$g/data" \
    VAE_REQUIRE_CUDA=1 "$@"
}

# ---- step 1: probe and versions ---------------------------------------------------------------
fact "date: $(date -u +%Y-%m-%dT%H:%MZ)"
fact "commit: $(tr '\n' ' ' < "$g/COMMIT")"
fact "build: $(tr '\n' ';' < "$g/BUILD" 2> /dev/null)"
if have nvidia-smi; then
  fact "nvidia-smi: $(nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv,noheader 2>&1 | head -1)"
else
  fact "nvidia-smi: not installed here"
fi
fact "C library: $(ldd --version 2>&1 | head -1); the binaries need at most $(tr '\n' ' ' < "$g/NEEDS")"
ourlibs=$g/lib:$work/lib
while read -r name; do
  [ -n "$name" ] || continue
  path=$(find_device_lib "$name")
  [ -n "$path" ] || { fail loader "$name is not on this machine (looked in PyTorch's nvidia packages, ldconfig, /usr/local/cuda, then everywhere)"; exit 1; }
  ourlibs=$ourlibs:$(dirname "$path")
done < "$g/DEVICE_LIBS"

# The binaries were built elsewhere: name any library the loader cannot find before running anything.
ours ldd "$g"/vae "$g"/vae_tests "$g"/vae_bench "$g"/vae_gpu_probe > "$logs/ldd.log" 2>&1
missing=$(grep -E "not found" "$logs/ldd.log" | sort -u)
if [ -n "$missing" ]; then
  fail loader "the carried binaries cannot load here: $(echo "$missing" | tr -s ' \t\n' ' ')"
  exit 1
fi
# The file each CUDA library resolves to under our library path, and the version it reports.
# shellcheck disable=SC2046
ours "$g/vae_gpu_probe" --libraries $(cat "$g/DEVICE_LIBS") > "$logs/libraries.log" 2>&1
while read -r line; do fact "${line#vae_gpu_probe: }"; done < <(grep '^vae_gpu_probe: library ' "$logs/libraries.log")

# Is there a usable GPU at all? The probe is a few lines of CUDA, none of ours.
ours "$g/vae_gpu_probe" > "$logs/probe.log" 2>&1
probe_rc=$?
probe_says=$(grep -m1 '^vae_gpu_probe: ' "$logs/probe.log" | cut -c16-)
if [ $probe_rc = 0 ]; then
  fact "CUDA probe: ${probe_says:-ok}"
else
  fact "CUDA probe: FAILED (rc $probe_rc): ${probe_says:-$(tail -1 "$logs/probe.log")}"
fi

# A CUDA tool: on PATH, else the first of the usual places (newest version first).
find_tool() {
  local name=$1 c
  shift
  have "$name" && { command -v "$name"; return; }
  for c in "$@"; do [ -x "$c" ] && { echo "$c"; return; }; done
}
newest() { ls -d "$@" 2> /dev/null | sort -rV; }  # its words are candidates for find_tool (no spaces in these paths)
# shellcheck disable=SC2046
cs=$(find_tool compute-sanitizer /usr/local/cuda/bin/compute-sanitizer /usr/local/cuda/compute-sanitizer/compute-sanitizer \
  $(newest /opt/nvidia/compute-sanitizer*/compute-sanitizer))
if [ -n "$cs" ]; then
  fact "compute-sanitizer: $cs ($("$cs" --version 2>&1 | grep -m1 -iE 'version' | sed 's/^ *//'))"
else
  fact "compute-sanitizer: not installed here"
fi
if [ $probe_rc = 0 ] && ! grep -q 'NOT LOADED' "$logs/libraries.log"; then
  echo "- probe: PASS: $probe_says" >> "$steps"
else
  fail probe "${probe_says:-no usable CUDA device} $(grep -o 'library [^:]*: NOT LOADED' "$logs/libraries.log" | paste -sd ';' -)"
fi
refresh

# tool_refuses NAME COMMAND...: runs the probe under a tool; prints why the tool cannot be used, if so.
tool_refuses() {
  local log=$logs/probe-$1.log
  shift
  timeout -k 5 120 bash -c '"$@"' "$1" "$@" > "$log" 2>&1 && return 1
  grep -m1 -iE 'error|not supported|fail|unrecognized|unknown' "$log" | sed -E 's/^=+([A-Z]+=+)? *//' | cut -c1-200 || tail -1 "$log"
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
# sanitize TOOL FILTER [TOOL-OPTIONS...]: the tests of FILTER under a compute-sanitizer tool, its
# report streamed to $logs/TOOL-report.log as it is written (a step cut off keeps what was found). The
# step fails on a device-side report (an access out of bounds, a race) or a failed or skipped test;
# failed CUDA API calls (cuDNN and cuBLASLt probing what the device supports, an allocation refused
# on purpose) are counted and listed, not judged.
sanitize() {
  local tool=$1 filter=$2 rc
  shift 2
  run_gtest "$logs/$tool.json" ours "$cs" --tool "$tool" "$@" "$g/vae_tests" --gtest_filter="$filter"
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
# CUDA benchmarks matching FILTER (the CPU ones mean nothing on this machine's CPU), REPS repetitions
# (medians when more than one), JSON in $logs/NAME.json; the GEMM and convolution plans are logged.
bench() {
  local name=$1 filter=$2 reps=$3 rc
  VAE_LOG_GEMM_PLANS=1 VAE_LOG_CONV_PLANS=1 ours "$g/vae_bench" --benchmark_filter="$filter" --benchmark_min_time=0.5 \
    --benchmark_repetitions="$reps" --benchmark_report_aggregates_only="$([ "$reps" -gt 1 ] && echo true || echo false)" \
    --benchmark_format=json --benchmark_out="$logs/$name.json" > /dev/null
  rc=$?
  python3 "$report" bench "$logs/$name.json" || { [ $rc = 0 ] && rc=3; }
  echo "gpu-check: $(grep -c 'GEMM plan' "$logs/$name.log") GEMM plans logged, $(grep 'GEMM plan' "$logs/$name.log" | grep -c 'epilogue=[A-Z].*: cuBLASLt') with a fused epilogue"
  return $rc
}
# PyTorch's step with the first python3 that has torch and numpy (the GPU machine's own; Debian's
# /usr/bin/python3 on a development machine, where the pyenv one on PATH may lack them).
torch_python=$(for py in python3 /usr/bin/python3; do
  command -v "$py" > /dev/null && "$py" -c 'import torch, numpy' 2> /dev/null && { command -v "$py"; break; }
done)
torch_step() {
  [ -n "$torch_python" ] || { echo "gpu-check: no python3 here has torch and numpy"; return 3; }
  "$torch_python" "$root/bench/pytorch_reference.py" step --device cuda --batch "$1" --mode "$2" --model "${3:-mlp}" --repeats 100
}
# fused_vs_unfused: one short epoch (same seed) with the fused cuBLASLt epilogues and without them;
# the two differ only in rounding, so their losses must agree closely (gpu_report.py fused).
fused_vs_unfused() {
  local common=(train --device cuda --data "$g/data" --epochs 1 --train-limit 12800 --test-limit 2000 --seed 3)
  ours "$g/vae" "${common[@]}" --out "$logs/run-fused" &&
    ours "$g/vae" "${common[@]}" --no-fused-epilogues --out "$logs/run-unfused" &&
    python3 "$report" fused "$logs/run-fused/metrics.jsonl" "$logs/run-unfused/metrics.jsonl"
}
export g logs ourlibs report root cs torch_python
export -f ours run_gtest sanitize profile_nsys profile_ncu gemm_plans bench torch_step fused_vs_unfused

# The tests by group: the op-level CUDA tests run in one process, the step-level ones in another.
op_tests='OpTable/OpParity.*:CudaParity.*:CudaErrors.*:StepTable.*Cuda*:StepGraph.RecordingRefuses*Cuda*'
step_tests='StepGraph.CudaGraph*:CudaGolden.*:Distributed.Cuda*'
# memcheck's filter: the op-level tests but the out-of-memory one (its 16 TiB cudaMalloc fails on
# purpose); NCCL's tests are not among them (its kernels and proxy thread are NCCL's business).
memcheck_tests="$op_tests:-CudaErrors.OutOfMemory*"

# memcheck_our_kernels: memcheck over the op-level tests, instrumenting only our kernels (names in
# namespace vae, so "vae" is in every mangled name; cuBLASLt's and cuDNN's kernels are not
# instrumented) when this compute-sanitizer has the kernel-name filter, else every kernel.
memcheck_our_kernels() {
  local filter_args=(--kernel-name kns=vae)
  if tool_refuses memcheck-filter ours "$cs" --tool memcheck "${filter_args[@]}" "$g/vae_gpu_probe" > /dev/null; then
    echo "gpu-check: this compute-sanitizer has no --kernel-name filter; every kernel instrumented"
    filter_args=()
  fi
  sanitize memcheck "$memcheck_tests" "${filter_args[@]}" --print-limit 200 --log-file "$logs/memcheck-report.log"
}
export memcheck_tests
export -f memcheck_our_kernels tool_refuses

if want quick; then
  # 2-3: the tests, op-level then step-level, each in its own process.
  step_cap op-tests 150 run_gtest "$logs/op-tests.json" ours env VAE_LOG_GEMM_PLANS=1 VAE_LOG_CONV_PLANS=1 \
    "$g/vae_tests" --gtest_filter="$op_tests"
  step_cap step-tests 150 run_gtest "$logs/step-tests.json" ours "$g/vae_tests" --gtest_filter="$step_tests"
  # 4: the default model, 10 epochs on CUDA; the same checkpoint evaluated on CUDA, on the CPU and
  # with --strict-fp32 (k = 100 on 2000 test images: the same binarised images and noise each time).
  run=$logs/run-cuda
  step_cap train-cuda 150 ours "$g/vae" train --device cuda --data "$g/data" --out "$run"
  for e in "eval-cuda:--device cuda" "eval-cpu-of-cuda-model:--device cpu" "eval-cuda-strict-fp32:--device cuda --strict-fp32"; do
    # shellcheck disable=SC2086
    needs_file "${e%%:*}" "$run/model.safetensors" train-cuda &&
      step_cap "${e%%:*}" 90 ours "$g/vae" eval ${e#*:} --checkpoint "$run/model.safetensors" --data "$g/data" --k 100 --limit 2000 --json
  done
  # 5: the only end-to-end check of the TF32 backward epilogues.
  step_cap fused-vs-unfused 90 fused_vs_unfused
  # 6: the conv VAE through cuDNN: 2 epochs (the last batch of each has 96 rows, and evaluation grows
  # the batch), with the algorithm cuDNN chose for each layer and each fallback, then its evaluation.
  conv=$logs/run-cuda-conv
  step_cap train-cuda-conv 120 ours env VAE_LOG_CONV_PLANS=1 "$g/vae" train --device cuda --config configs/conv.json \
    --epochs 2 --data "$g/data" --out "$conv"
  needs_file eval-cuda-conv "$conv/model.safetensors" train-cuda-conv &&
    step_cap eval-cuda-conv 60 ours env VAE_LOG_CONV_PLANS=1 "$g/vae" eval --device cuda --checkpoint "$conv/model.safetensors" \
      --data "$g/data" --k 100 --limit 2000 --json
  # 7-8: our training step (recorded graph) and PyTorch eager's, MLP and conv, batch 128 and 4096.
  step_cap bench 90 bench bench 'BM_(Conv)?TrainStep/batch:(128|4096)/cuda:1/graph:1' 1
  for b in 128 4096; do
    for model in mlp conv; do step_cap "torch-eager-$model-$b" 45 torch_step "$b" eager "$model"; done
  done
  # 9: memcheck with whatever time is left.
  if needs_tool memcheck "$cs" compute-sanitizer --tool memcheck; then
    step_cap memcheck 600 memcheck_our_kernels
  fi
fi

if want tests; then
  step tests run_gtest "$logs/tests.json" ours "$g/vae_tests"
fi

if want sanitizers; then
  needs_tool memcheck "$cs" compute-sanitizer --tool memcheck && step memcheck memcheck_our_kernels
  # The kernels that use shared memory: block_sum's users and channel_bias (its own reduction).
  needs_tool racecheck "$cs" compute-sanitizer --tool racecheck &&
    step racecheck sanitize racecheck \
      'OpTable/OpParity.CudaMatchesCpu/latent_sample_kl:OpTable/OpParity.CudaMatchesCpu/*_nll:OpTable/OpParity.CudaMatchesCpu/loss_reduce:OpTable/OpParity.CudaMatchesCpu/adam:OpTable/OpParity.CudaMatchesCpu/channel_bias' \
      --log-file "$logs/racecheck-report.log"
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
  step bench bench bench 'cuda:1' 3
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
  needs_file eval-cuda "$run/model.safetensors" train-cuda &&
    step eval-cuda ours "$g/vae" eval --device cuda --checkpoint "$run/model.safetensors" --data "$g/data" --k 100 --json
  # The same weights evaluated by the CPU reference backend (the same binarised test set and noise).
  needs_file eval-cpu-of-cuda-model "$run/model.safetensors" train-cuda &&
    step eval-cpu-of-cuda-model ours "$g/vae" eval --device cpu --checkpoint "$run/model.safetensors" --data "$g/data" --k 100 --json
  needs_file eval-cuda-k5000 "$run/model.safetensors" train-cuda &&
    step eval-cuda-k5000 ours "$g/vae" eval --device cuda --checkpoint "$run/model.safetensors" --data "$g/data" --k 5000 --json
  # The conv VAE through cuDNN (configs/conv.json), with the algorithm cuDNN chose for each layer.
  conv=$logs/run-cuda-conv
  step train-cuda-conv ours env VAE_LOG_CONV_PLANS=1 "$g/vae" train --device cuda --config configs/conv.json --epochs 3 \
    --data "$g/data" --out "$conv"
  needs_file eval-cuda-conv "$conv/model.safetensors" train-cuda-conv &&
    step eval-cuda-conv ours "$g/vae" eval --device cuda --checkpoint "$conv/model.safetensors" --data "$g/data" --k 100 --json
  needs_file eval-cpu-of-cuda-conv "$conv/model.safetensors" train-cuda-conv &&
    step eval-cpu-of-cuda-conv ours "$g/vae" eval --device cpu --checkpoint "$conv/model.safetensors" --data "$g/data" --k 100 --json
  # Generation on CUDA: a conditional run, the classifier, and the quality measure for prior and
  # aggregate-posterior samples (with their samples/s), against the same measure on the CPU.
  cond=$logs/run-cuda-conditional
  step train-cuda-conditional ours "$g/vae" train --device cuda --conditional --epochs 3 --data "$g/data" --out "$cond"
  step classifier-cuda ours "$g/vae" classifier --device cuda --data "$g/data" --out "$logs/classifier.safetensors"
  if needs_file quality-cuda-prior "$cond/model.safetensors" train-cuda-conditional &&
    needs_file quality-cuda-prior "$logs/classifier.safetensors" classifier-cuda; then
    step quality-cuda-prior ours "$g/vae" quality --device cuda --checkpoint "$cond/model.safetensors" \
      --classifier "$logs/classifier.safetensors" --data "$g/data" --json
    step quality-cpu-prior ours "$g/vae" quality --device cpu --checkpoint "$cond/model.safetensors" \
      --classifier "$logs/classifier.safetensors" --data "$g/data" --json
  fi
  needs_file quality-cuda-aggregate "$run/model.safetensors" train-cuda &&
    needs_file quality-cuda-aggregate "$logs/classifier.safetensors" classifier-cuda &&
    step quality-cuda-aggregate ours "$g/vae" quality --device cuda --checkpoint "$run/model.safetensors" \
      --classifier "$logs/classifier.safetensors" --data "$g/data" --from aggregate --json
fi

echo "- total: $SECONDS s" >> "$steps"
refresh
cat "$summary"
exit $status
