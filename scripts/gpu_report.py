#!/usr/bin/env python3
"""Helpers of scripts/gpu-check.sh (standard library only; runs with whatever python3 the GPU machine has).

  find-lib NAME        the copy of a CUDA library (libcublasLt.so.13, libcudnn.so.9) in PyTorch's pip
                       packages (nvidia/cu13/lib first, then nvidia/*/lib), or nothing
  gtest JSON           one verdict line on a GoogleTest JSON report; exit 3 if any test skipped (on the
                       GPU machine every test must run), 1 if any failed
  sanitizer LOG        one verdict line on a compute-sanitizer report; exit 1 on any error
  bench JSON           one verdict line on a Google Benchmark JSON report; exit 3 if any reported an error
  summary WORK         the markdown sections of results.md, from the logs under WORK/logs

Verdict lines start with "gpu-check: ": gpu-check.sh puts them on the step's line of results.md.
"""
import csv
import glob
import json
import os
import re
import sys


def find_lib(name):
    try:
        import nvidia  # PyTorch's CUDA wheels: a namespace package holding cu13/lib, cudnn/lib, ...
        roots = list(nvidia.__path__)
    except ImportError:
        return 0
    hits = sorted(h for r in roots for h in glob.glob(os.path.join(r, "*", "lib", name)))
    hits.sort(key=lambda h: os.sep + "cu13" + os.sep not in h)  # stable: the CUDA 13 wheels first
    if hits:
        print(hits[0])
    return 0


def gtest(path):
    try:
        report = json.load(open(path))
    except (OSError, ValueError) as e:
        print(f"gpu-check: no test report ({e}); the test binary did not finish")
        return 1
    cases = [(f"{s['name']}.{t['name']}", t) for s in report.get("testsuites", []) for t in s.get("testsuite", [])]
    failed = [n for n, t in cases if t.get("failures")]
    skipped = [n for n, t in cases if t.get("result") == "SKIPPED"]
    if failed:
        print(f"gpu-check: {len(failed)} of {len(cases)} tests failed: {', '.join(failed)}")
        return 1
    if skipped:
        print(f"gpu-check: {len(skipped)} of {len(cases)} tests skipped, and on the GPU machine every test must run "
              f"(no usable GPU? see the log): {', '.join(skipped)}")
        return 3
    print(f"gpu-check: all {len(cases)} tests ran and passed")
    return 0


def sanitizer(path):
    try:
        text = open(path, errors="replace").read()
    except OSError as e:
        print(f"gpu-check: no sanitizer report ({e})")
        return 1
    m = re.findall(r"ERROR SUMMARY: (\d+) error", text)
    # "Program hit ..." is a failed CUDA API call; the rest are device-side (memory access, races).
    api = len(re.findall(r"=+ Program hit ", text))
    hazards = len(re.findall(r"=+ (?:Invalid|Error|Race|Warning|Uninitialized|Barrier|Malloc|Free|Leaked)", text))
    if not m:
        print(f"gpu-check: the sanitizer wrote no error summary (did it start?): "
              f"{text.strip().splitlines()[-1][:200] if text.strip() else 'empty report'}")
        return 1
    total = sum(int(x) for x in m)
    print(f"gpu-check: {total} sanitizer errors ({hazards} device-side reports, {api} failed CUDA API calls)")
    return 1 if total else 0


def bench(path):
    try:
        rows = json.load(open(path))["benchmarks"]
    except (OSError, ValueError, KeyError) as e:
        print(f"gpu-check: no benchmark report ({e})")
        return 1
    errors = sorted({(r["run_name"], r.get("error_message", "")) for r in rows if r.get("error_occurred")})
    if errors:
        print(f"gpu-check: {len(errors)} benchmarks reported an error, first {errors[0][0]}: {errors[0][1]}")
        return 3
    print(f"gpu-check: {len({r['run_name'] for r in rows})} benchmarks ran")
    return 0


def ms_of(row):
    return row["real_time"] * {"ms": 1.0, "us": 1e-3, "ns": 1e-6, "s": 1e3}[row["time_unit"]]


def json_lines(path):
    try:
        return [json.loads(line) for line in open(path) if line.startswith("{")]
    except (OSError, ValueError):
        return []


def section_step_times(logs):
    print("\n## Training step: ours and PyTorch's (TF32 on both sides; the same JSON fields)\n")
    ours, torch = {}, {}
    try:
        for b in json.load(open(os.path.join(logs, "bench.json")))["benchmarks"]:
            m = re.match(r"BM_TrainStep/batch:(\d+)/cuda:1/graph:(\d)", b["run_name"])
            if not m or b.get("error_occurred"):
                continue
            if b.get("run_type") == "aggregate" and b.get("aggregate_name") != "median":
                continue
            batch, graph = int(m.group(1)), m.group(2) == "1"
            ms = ms_of(b)
            row = {"impl": "vae-cuda-graph" if graph else "vae-cuda", "device": "cuda", "batch": batch,
                   "precision": "tf32", "ms_per_step": ms, "samples_per_s": batch / (ms / 1000)}
            ours[(row["impl"], batch)] = row
    except (OSError, ValueError, KeyError) as e:
        print(f"no benchmark figures ({e})\n")
    for f in sorted(glob.glob(os.path.join(logs, "torch-*.log"))):
        rows = json_lines(f)
        if rows:
            torch[(rows[-1]["impl"], rows[-1]["batch"])] = rows[-1]
    for row in list(ours.values()) + list(torch.values()):
        print(f"    {json.dumps(row)}")
    if not ours and not torch:
        print("no figures (see the bench and torch-* steps)")
    if not torch:
        return
    print("\n| batch | PyTorch mode | PyTorch ms | vae (graph) ms | PyTorch / vae (higher: vae faster) |")
    print("| --- | --- | --- | --- | --- |")
    for (impl, batch), t in sorted(torch.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        v = ours.get(("vae-cuda-graph", batch))
        ratio = f"{t['ms_per_step'] / v['ms_per_step']:.2f}x" if v else "n/a"
        vms = f"{v['ms_per_step']:.3f}" if v else "n/a"
        print(f"| {batch} | {impl} | {t['ms_per_step']:.3f} | {vms} | {ratio} |")


FALLBACK_KERNELS = ("bias_add_kernel", "bias_grad_kernel", "relu_bias_kernel", "relu_grad_bias_grad_kernel",
                    "activation_forward_kernel", "activation_backward_kernel")


def section_kernels(logs):
    path = os.path.join(logs, "kernels.csv")
    print("\n## Kernels of one training step (batch 128; our fallback epilogue kernels must not appear)\n")
    if not os.path.exists(path) or not os.path.getsize(path):
        print("no profile (see the profile step)")
        return
    lines = [line for line in open(path, errors="replace") if line.startswith('"')]
    rows = list(csv.reader(lines))
    header = next((i for i, r in enumerate(rows) if "Kernel Name" in r or "Name" in r), None)
    if header is None:
        print("the profile has no kernel table (see kernels.csv)")
        return
    cols = rows[header]
    name_col = cols.index("Kernel Name") if "Kernel Name" in cols else cols.index("Name")
    counts = {}
    for r in rows[header + 1:]:
        if len(r) > name_col and r[name_col] != cols[name_col]:
            short = r[name_col].split("(")[0].split("<")[0].replace("void ", "").strip()
            counts[short] = counts.get(short, 0) + 1
    for name, count in sorted(counts.items(), key=lambda kv: -kv[1])[:40]:
        print(f"    {count:5d}  {name}")
    seen = sorted({k for k in counts for f in FALLBACK_KERNELS if f in k})
    print(f"\nfallback kernels seen: {', '.join(seen) if seen else 'none'}")


def section_lines(title, path, pattern, strip=""):
    print(f"\n## {title}\n")
    try:
        hits = list(dict.fromkeys(line.rstrip()[len(strip):] if line.startswith(strip) else line.rstrip()
                                  for line in open(path, errors="replace") if re.search(pattern, line)))
    except OSError:
        hits = []
    print("\n".join(f"    {h}" for h in hits) if hits else "none logged")


def section_training(logs):
    print("\n## Training on CUDA and evaluation\n")
    metrics = json_lines(os.path.join(logs, "run-cuda", "metrics.jsonl"))
    if metrics:
        last = metrics[-1]
        seconds = ", ".join(f"{m.get('seconds', 0):.2f}" for m in metrics)
        print(f"- epochs: {len(metrics)}; seconds per epoch: {seconds}")
        keys = [k for k in last if k not in ("kl_per_dim",)]
        print(f"- last epoch: {json.dumps({k: last[k] for k in keys})[:600]}")
    else:
        print("- no metrics.jsonl (see train-cuda.log)")
    for name in ("eval-cuda", "eval-cpu-of-cuda-model", "eval-cuda-k5000"):
        rows = json_lines(os.path.join(logs, name + ".log"))
        if rows:
            r = {k: v for k, v in rows[-1].items() if k != "kl_per_dim"}
            print(f"- {name}: {json.dumps(r)}")


def summary(work):
    logs = os.path.join(work, "logs")
    section_lines("Parity and golden (worst element as a fraction of its bound)", os.path.join(logs, "tests.log"),
                  r"^\[(parity|golden)\]")
    section_step_times(logs)
    section_kernels(logs)
    section_lines("cuBLASLt plans of the training step (cuBLASLt: fused; otherwise the unfused path)",
                  os.path.join(logs, "gemm-plans.log"), r"^vae: GEMM", strip="vae: ")
    section_training(logs)
    return 0


def main(argv):
    commands = {"find-lib": find_lib, "gtest": gtest, "sanitizer": sanitizer, "bench": bench, "summary": summary}
    if len(argv) != 3 or argv[1] not in commands:
        print(__doc__, file=sys.stderr)
        return 2
    return commands[argv[1]](argv[2])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
