#!/usr/bin/env bash
# Run ON THE GPU MACHINE (through the device tool, with carry ['.gpu'] from scripts/gpu-prepare.sh).
# One call does it all, because device minutes are scarce: the whole test suite, compute-sanitizer
# memcheck and racecheck over the CUDA tests, the benchmarks, the PyTorch side-by-side (eager,
# torch.compile, reduce-overhead) and the default training run on CUDA with its evaluation. Logs and a
# results summary go to $OUT (fetched back by the tool); copy the summary to bench/results/.
#
# Phases (arguments; none = all): tests sanitizers profile bench torch train. One device call may run
# at most 10 minutes, so a first run can split them, e.g. `tests sanitizers profile`, then
# `bench torch train`. Each phase appends to results.md as it finishes, so a call cut off by its
# time limit still returns what it did.
set -uo pipefail
phases=" ${*:-tests sanitizers profile bench torch train} "
want() { [[ "$phases" == *" $1 "* ]]; }
root=$(cd "$(dirname "$0")/.." && pwd)
g=$root/.gpu
out=${OUT:-$root/gpu-out}
mkdir -p "$out"
[ -f "$g/vae_tests" ] || { echo "gpu-check: .gpu/ missing; run scripts/gpu-prepare.sh here and carry .gpu" >&2; exit 1; }
[ -f "$g/lib/libopenblas.so.0.xz" ] && xz -dkf "$g/lib/libopenblas.so.0.xz"

# cuBLASLt: the toolkit's if the loader finds it, else PyTorch's pip package.
lt=$(ldconfig -p | awk '/libcublasLt.so.13 /{print $NF; exit}')
[ -n "$lt" ] || lt=$(find / -name 'libcublasLt.so.13' -not -path '/proc/*' 2>/dev/null | head -1)
[ -n "$lt" ] || { echo "gpu-check: libcublasLt.so.13 not found" >&2; exit 1; }
ourlibs="$g/lib:$(dirname "$lt")"
# Only our binaries get these libraries: Python/PyTorch keep their own.
ours() { LD_LIBRARY_PATH="$ourlibs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" VAE_CLI_PATH="$g/vae" VAE_TEST_DATA_DIR="$g/data" "$@"; }

summary=$out/results.md
{
  echo "# GPU check"
  echo "- date: $(date -u +%Y-%m-%dT%H:%MZ)"
  echo "- commit: $(tr '\n' ' ' < "$g/COMMIT")"
  echo "- device: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1)"
  echo "- cuBLASLt: $lt"
  echo "- C library: $(ldd --version 2>&1 | head -1)"
  echo "- phases:$phases"
} > "$summary"
# The binaries were built elsewhere (they need GLIBC_2.34 and GLIBCXX_3.4.29 at most, see
# docs/gpu.md): name any library the loader cannot find before running anything.
missing=$(ours ldd "$g/vae_tests" "$g/vae" "$g/vae_bench" 2>&1 | grep -E "not found|version .* not found" | sort -u)
if [ -n "$missing" ]; then
  { echo "- FAIL: the carried binaries cannot load here:"; echo "$missing" | sed 's/^/  /'; } | tee -a "$summary"
  exit 1
fi
status=0
step() {  # step NAME COMMAND...: runs, logs to $out/NAME.log, records pass/fail
  local name=$1; shift
  local t0=$(date +%s)
  "$@" > "$out/$name.log" 2>&1
  local rc=$?
  echo "- $name: $([ $rc = 0 ] && echo PASS || echo "FAIL (rc $rc)") in $(( $(date +%s) - t0 ))s" | tee -a "$summary"
  [ $rc = 0 ] || status=1
}

if want tests; then
  step tests ours "$g/vae_tests" --gtest_brief=1
  grep -h "^\[parity\]\|^\[golden\]" "$out/tests.log" > "$out/parity.txt" 2>/dev/null
fi
want sanitizers && step memcheck ours compute-sanitizer --tool memcheck --error-exitcode 1 "$g/vae_tests" --gtest_filter='*Cuda*:-CudaGolden*' --gtest_brief=1
want sanitizers && step racecheck ours compute-sanitizer --tool racecheck --error-exitcode 1 "$g/vae_tests" --gtest_filter='CudaParity.Latent*:CudaParity.Likelihoods:CudaParity.LossReduce*:CudaParity.Adam*' --gtest_brief=1
# Which kernels one training step launches (the fused-epilogue check): with the default ReLU model
# and fused epilogues, none of our fallback kernels (bias_add, bias_grad, relu_bias,
# relu_grad_bias_grad, activation_*) may appear. nsys if present (graph nodes traced one by one),
# else ncu on the uncaptured step.
profile_step() {
  if command -v nsys > /dev/null; then
    ours nsys profile --trace=cuda --cuda-graph-trace=node --force-overwrite=true -o "$out/step" \
      "$g/vae_bench" --benchmark_filter='BM_TrainStep/batch:128/cuda:1/graph:1' --benchmark_min_time=0.05 &&
      nsys stats --report cuda_gpu_kern_sum --format csv "$out/step.nsys-rep" > "$out/kernels.csv"
  elif command -v ncu > /dev/null; then
    ours ncu --csv --metrics gpu__time_duration.sum --launch-count 120 \
      "$g/vae_bench" --benchmark_filter='BM_TrainStep/batch:128/cuda:1/graph:0' --benchmark_min_time=0.01 > "$out/kernels.csv"
  else
    echo "neither nsys nor ncu is installed" >&2; return 1
  fi
}
want profile && step profile profile_step
# Which cuBLASLt plan each GEMM of a training step got (fused epilogue, or no algorithm and the
# unfused path), at both benchmark batch sizes: src/backend/cuda/lt_matmul.cpp logs them.
gemm_plans() {
  VAE_LOG_GEMM_PLANS=1 ours "$g/vae_bench" --benchmark_filter='BM_TrainStep/batch:(128|4096)/cuda:1/graph:1' \
    --benchmark_min_time=0.01
}
want profile && step gemm-plans gemm_plans
want bench && step bench ours "$g/vae_bench" --benchmark_min_time=1 --benchmark_format=json --benchmark_out="$out/bench.json"
for b in 128 4096; do
  for mode in eager compile reduce-overhead; do
    want torch && step "torch-$mode-$b" python3 "$root/bench/pytorch_reference.py" step --device cuda --batch $b --mode $mode --repeats 100
  done
done
want train && step train-cuda ours "$g/vae" train --device cuda --data "$g/data" --out "$out/run-cuda"
want train && step eval-cuda ours "$g/vae" eval --device cuda --checkpoint "$out/run-cuda/model.safetensors" --data "$g/data" --k 100 --json
want train && step eval-cuda-k5000 ours "$g/vae" eval --device cuda --checkpoint "$out/run-cuda/model.safetensors" --data "$g/data" --k 5000 --limit 1000 --json
{
  echo; echo "## Step times (the same JSON fields for ours and PyTorch's) and ratios"
  python3 - "$out" <<'PY'
import glob, json, os, re, sys
out = sys.argv[1]
ours, torch = {}, {}
try:
    for b in json.load(open(os.path.join(out, "bench.json")))["benchmarks"]:
        m = re.match(r"BM_TrainStep/batch:(\d+)/cuda:1/graph:(\d)", b["name"])
        if not m or "error_occurred" in b:
            continue
        ms = b["real_time"] * {"ms": 1.0, "us": 1e-3, "ns": 1e-6, "s": 1e3}[b["time_unit"]]
        batch, graph = int(m.group(1)), m.group(2) == "1"
        row = {"impl": "vae-cuda-graph" if graph else "vae-cuda", "device": "cuda", "batch": batch,
               "precision": "tf32", "ms_per_step": ms, "samples_per_s": batch / (ms / 1000)}
        ours[(row["impl"], batch)] = row
        print(json.dumps(row))
except Exception as e:
    print("bench.json unreadable:", e)
for f in sorted(glob.glob(os.path.join(out, "torch-*.log"))):
    lines = [l for l in open(f) if l.startswith("{")]
    if not lines:
        print(f"{os.path.basename(f)}: no result")
        continue
    row = json.loads(lines[-1])
    torch[(row["impl"], row["batch"])] = row
    print(json.dumps(row))
print()
print("| batch | PyTorch mode | PyTorch ms | vae-cuda-graph ms | PyTorch / vae (higher = vae faster) |")
print("| --- | --- | --- | --- | --- |")
for (impl, batch), t in sorted(torch.items(), key=lambda kv: (kv[0][1], kv[0][0])):
    v = ours.get(("vae-cuda-graph", batch))
    ratio = f"{t['ms_per_step'] / v['ms_per_step']:.2f}x" if v else "n/a"
    vms = f"{v['ms_per_step']:.3f}" if v else "n/a"
    print(f"| {batch} | {impl} | {t['ms_per_step']:.3f} | {vms} | {ratio} |")
PY
  echo; echo "## Kernels of one training step (batch 128; fallback kernels must not appear)"
  if [ -s "$out/kernels.csv" ]; then
    grep -o '[A-Za-z_0-9]*kernel[A-Za-z_0-9]*\|sm[0-9]*_xmma[A-Za-z_0-9]*\|[A-Za-z_0-9]*gemm[A-Za-z_0-9]*' "$out/kernels.csv" | sort | uniq -c | sort -rn | head -40
    echo "fallback kernels seen: $(grep -o 'bias_add_kernel\|bias_grad_kernel\|relu_bias_kernel\|relu_grad_bias_grad_kernel\|activation_forward_kernel\|activation_backward_kernel' "$out/kernels.csv" | sort -u | tr '\n' ' ')"
  else
    echo "no profile (see profile.log)"
  fi
  grep -h "ReLU mask" "$out/parity.txt" 2>/dev/null | head -5
  echo; echo "## cuBLASLt plans of the training step (epilogue: cuBLASLt = fused; otherwise the unfused path)"
  grep -h "GEMM" "$out/gemm-plans.log" 2>/dev/null | sed 's/^vae: /- /' | sort -u
  echo; echo "## Training on CUDA (metrics.jsonl, last line) and evaluation"
  tail -n 1 "$out/run-cuda/metrics.jsonl" 2>/dev/null | cut -c1-400
  tail -n 1 "$out/eval-cuda.log" "$out/eval-cuda-k5000.log" 2>/dev/null | cut -c1-300
} >> "$summary"
cat "$summary"
exit $status
