#!/usr/bin/env python3
"""Helpers of scripts/gpu-check.sh (standard library only; runs with whatever python3 the GPU machine has).

  find-lib NAME        the copy of a CUDA library (libcublasLt.so.13, libcudnn.so.9) in PyTorch's pip
                       packages (nvidia/cu13/lib first, then nvidia/*/lib), or nothing
  gtest JSON           one verdict line on a GoogleTest JSON report; exit 3 if any test skipped (on the
                       GPU machine every test must run), 1 if any failed
  sanitizer LOG        one verdict line on a compute-sanitizer report; exit 1 on any device-side report
                       (failed CUDA API calls are counted and named, not judged)
  bench JSON           one verdict line on a Google Benchmark JSON report; exit 3 if any reported an error
  fused A B            one verdict line on two metrics.jsonl of the same short run with and without the
                       fused cuBLASLt epilogues; exit 1 if their losses differ by more than rounding allows
  archive WORK OUT     WORK/logs as a .tar.gz at OUT, without checkpoints (*.safetensors), profiler
                       databases or files over 4 MiB (each named in the archive's MANIFEST instead)
  summary WORK         the markdown sections of results.md, from the logs under WORK/logs

Verdict lines start with "gpu-check: ": gpu-check.sh puts them on the step's line of results.md.
"""
import csv
import glob
import io
import json
import os
import re
import sys
import tarfile
import time


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


def names(items, limit=8):
    items = list(items)
    return ", ".join(items[:limit]) + (f" and {len(items) - limit} more" if len(items) > limit else "")


def gtest(path):
    try:
        report = json.load(open(path))
    except (OSError, ValueError) as e:
        print(f"gpu-check: no test report ({e}); the test binary did not finish")
        return 1
    cases = [(f"{s['name']}.{t['name']}", t) for s in report.get("testsuites", []) for t in s.get("testsuite", [])]
    failed = [n for n, t in cases if t.get("failures")]
    skipped = [n for n, t in cases if t.get("result") == "SKIPPED"]
    if not cases:
        print("gpu-check: the filter matched no test")
        return 1
    if failed:
        print(f"gpu-check: {len(failed)} of {len(cases)} tests failed: {names(failed)}")
        return 1
    if skipped:
        print(f"gpu-check: {len(skipped)} of {len(cases)} tests skipped, and on the GPU machine every test must run "
              f"(no usable GPU? see the log): {names(skipped)}")
        return 3
    print(f"gpu-check: all {len(cases)} tests ran and passed")
    return 0


# A device-side report of memcheck, racecheck, initcheck or synccheck opens with one of these words.
DEVICE_SIDE = re.compile(r"^=+ (?:Invalid|Misaligned|Out-of-range|Uninitialized|Race|Barrier|Malloc|Free|Leaked|"
                         r"Warning|Error(?!: process didn't terminate)(?!: Target application))")
API_ERROR = re.compile(r"^=+ Program hit (\w+).* on CUDA API call to (\w+)")


def sanitizer(path):
    try:
        text = open(path, errors="replace").read()
    except OSError as e:
        print(f"gpu-check: no sanitizer report ({e})")
        return 1
    lines = text.splitlines()
    device = [line for line in lines if DEVICE_SIDE.match(line)]
    api = {}
    for line in lines:
        m = API_ERROR.match(line)
        if m:
            api[f"{m.group(2)}: {m.group(1)}"] = api.get(f"{m.group(2)}: {m.group(1)}", 0) + 1
    summary = re.findall(r"ERROR SUMMARY: (\d+) error", text)
    api_text = "; ".join(f"{k} x{v}" for k, v in sorted(api.items(), key=lambda kv: -kv[1])[:5]) or "none"
    if not summary and not device:
        last = text.strip().splitlines()[-1][:200] if text.strip() else "empty report"
        print(f"gpu-check: the sanitizer wrote no error summary (did it start, or was it cut off?): {last}")
        return 1
    first = f"; first: {device[0].lstrip('= ')[:160]}" if device else ""
    print(f"gpu-check: {len(device)} device-side reports{first}; {sum(api.values())} failed CUDA API calls, "
          f"not judged ({api_text}); summary says {sum(int(x) for x in summary)} errors")
    return 1 if device else 0


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


def fused(path_a, path_b):
    """The same short run with and without the fused epilogues: only rounding differs, so after one
    short epoch the mean training loss and the test -ELBO must agree to a small fraction of a nat
    (1.0 allows for the runs' divergence over their steps; a wrong epilogue moves them by tens)."""
    a, b = json_lines(path_a), json_lines(path_b)
    if not a or not b:
        print(f"gpu-check: no metrics from {'the fused run' if not a else 'the unfused run'}")
        return 1
    diffs = {k: abs(a[-1][k] - b[-1][k]) for k in ("train_loss", "test_neg_elbo") if k in a[-1] and k in b[-1]}
    if not diffs:
        print("gpu-check: the metrics hold neither train_loss nor test_neg_elbo")
        return 1
    text = ", ".join(f"{k} {a[-1][k]:.3f} fused vs {b[-1][k]:.3f} unfused" for k in diffs)
    bad = [k for k, d in diffs.items() if not d <= 1.0]
    print(f"gpu-check: {text}; {'DIFFER by more than 1 nat: ' + ', '.join(bad) if bad else 'within 1 nat'}")
    return 1 if bad else 0


SKIPPED_IN_ARCHIVE = (".safetensors", ".nsys-rep", ".sqlite", ".ncu-rep", ".qdrep")
ARCHIVE_FILE_LIMIT = 4 << 20


def archive(work, out):
    """WORK/logs into OUT (.tar.gz) without checkpoints, profiler databases or large files, written
    beside OUT and renamed, so a reader never sees half an archive. The device tool refuses any file
    over 16 MiB; with every file under 4 MiB and logs compressing well, the archive stays far below."""
    logs = os.path.join(work, "logs")
    left_out = []
    part = out + ".part"
    with tarfile.open(part, "w:gz") as tar:
        for folder, dirs, files in os.walk(logs):
            dirs.sort()
            for f in sorted(files):
                path = os.path.join(folder, f)
                rel = os.path.relpath(path, work)
                size = os.path.getsize(path)
                if f.endswith(SKIPPED_IN_ARCHIVE) or size > ARCHIVE_FILE_LIMIT:
                    left_out.append(f"{rel} ({size} bytes)")
                    continue
                tar.add(path, arcname=rel)
        manifest = ("files left out (checkpoints, profiler databases, files over 4 MiB):\n" +
                    "".join(f"  {x}\n" for x in left_out)).encode()
        info = tarfile.TarInfo("logs/MANIFEST")
        info.size, info.mtime = len(manifest), int(time.time())
        tar.addfile(info, io.BytesIO(manifest))
    os.replace(part, out)
    return 0


def json_lines(path):
    try:
        return [json.loads(line) for line in open(path) if line.startswith("{")]
    except (OSError, ValueError):
        return []


def section_step_times(logs):
    print("\n## Training step: ours and PyTorch's (TF32 on both sides; the same JSON fields)\n")
    ours, torch = {}, {}
    for path in sorted(glob.glob(os.path.join(logs, "bench*.json"))):
        try:
            rows = json.load(open(path))["benchmarks"]
        except (OSError, ValueError, KeyError) as e:
            print(f"no benchmark figures in {os.path.basename(path)} ({e})\n")
            continue
        for b in rows:
            m = re.match(r"BM_(Conv)?TrainStep/batch:(\d+)/cuda:1/graph:(\d)", b["run_name"])
            if not m or b.get("error_occurred"):
                continue
            if b.get("run_type") == "aggregate" and b.get("aggregate_name") != "median":
                continue
            model, batch, graph = "conv" if m.group(1) else "mlp", int(m.group(2)), m.group(3) == "1"
            ms = ms_of(b)
            row = {"impl": "vae-cuda-graph" if graph else "vae-cuda", "model": model, "device": "cuda", "batch": batch,
                   "precision": "tf32", "ms_per_step": ms, "samples_per_s": batch / (ms / 1000)}
            ours[(row["impl"], model, batch)] = row
    for f in sorted(glob.glob(os.path.join(logs, "torch-*.log"))):
        rows = json_lines(f)
        if rows:
            r = rows[-1]
            torch[(r["impl"], r.get("model", "mlp"), r["batch"])] = r
    for row in list(ours.values()) + list(torch.values()):
        print(f"    {json.dumps(row)}")
    if not ours and not torch:
        print("no figures (see the bench and torch-* steps)")
    if not torch:
        return
    print("\n| model | batch | PyTorch mode | PyTorch ms | vae (graph) ms | PyTorch / vae (higher: vae faster) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for (impl, model, batch), t in sorted(torch.items(), key=lambda kv: (kv[0][1], kv[0][2], kv[0][0])):
        v = ours.get(("vae-cuda-graph", model, batch))
        ratio = f"{t['ms_per_step'] / v['ms_per_step']:.2f}x" if v else "n/a"
        vms = f"{v['ms_per_step']:.3f}" if v else "n/a"
        print(f"| {model} | {batch} | {impl} | {t['ms_per_step']:.3f} | {vms} | {ratio} |")


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


def section_lines(title, paths, pattern, strip=""):
    print(f"\n## {title}\n")
    hits = []
    for path in paths:
        try:
            hits += [line.rstrip()[len(strip):] if line.startswith(strip) else line.rstrip()
                     for line in open(path, errors="replace") if re.search(pattern, line)]
        except OSError:
            pass
    hits = list(dict.fromkeys(hits))
    print("\n".join(f"    {h}" for h in hits) if hits else "none logged")


def section_training(logs):
    print("\n## Training on CUDA and evaluation\n")
    for run in ("run-cuda", "run-cuda-conv"):
        metrics = json_lines(os.path.join(logs, run, "metrics.jsonl"))
        if metrics:
            last = metrics[-1]
            seconds = ", ".join(f"{m.get('seconds', 0):.2f}" for m in metrics)
            print(f"- {run}: {len(metrics)} epochs; seconds per epoch: {seconds}")
            keys = [k for k in last if k not in ("kl_per_dim",)]
            print(f"- {run}, last epoch: {json.dumps({k: last[k] for k in keys})[:600]}")
        else:
            print(f"- {run}: no metrics.jsonl")
    evals = {}
    for name in ("eval-cuda", "eval-cpu-of-cuda-model", "eval-cuda-strict-fp32", "eval-cuda-k5000", "eval-cuda-conv",
                 "eval-cpu-of-cuda-conv"):
        rows = json_lines(os.path.join(logs, name + ".log"))
        if rows:
            evals[name] = {k: v for k, v in rows[-1].items() if k != "kl_per_dim"}
            print(f"- {name}: {json.dumps(evals[name])}")
    cuda, cpu = evals.get("eval-cuda"), evals.get("eval-cpu-of-cuda-model")
    if cuda and cpu:
        # The same checkpoint, binarised images and noise: only the arithmetic differs (TF32 GEMMs
        # and another summation order), so the two must agree closely.
        for key in ("neg_elbo", "iwae_nll"):
            if key in cuda and key in cpu:
                d = cuda[key] - cpu[key]
                print(f"- {key}: CUDA {cuda[key]:.3f}, CPU {cpu[key]:.3f}, difference {d:+.3f} nats "
                      f"({'within' if abs(d) <= 0.5 else 'OUTSIDE'} 0.5)")


def summary(work):
    logs = os.path.join(work, "logs")
    test_logs = [os.path.join(logs, n) for n in ("op-tests.log", "step-tests.log", "tests.log")]
    section_lines("Parity and golden (worst element as a fraction of its bound)", test_logs, r"^\[(parity|golden)\]")
    section_step_times(logs)
    section_kernels(logs)
    plan_logs = [os.path.join(logs, n) for n in ("bench.log", "gemm-plans.log")]
    section_lines("cuBLASLt plans of the training steps (cuBLASLt: fused; otherwise the unfused path)", plan_logs,
                  r"^vae: GEMM", strip="vae: ")
    conv_logs = [os.path.join(logs, n) for n in ("train-cuda-conv.log", "eval-cuda-conv.log", "op-tests.log")]
    section_lines("cuDNN plans (usable algorithms per direction: algo/math type/workspace) and fallbacks", conv_logs,
                  r"^vae: cuDNN", strip="vae: ")
    section_training(logs)
    return 0


def main(argv):
    commands = {"find-lib": find_lib, "gtest": gtest, "sanitizer": sanitizer, "bench": bench, "summary": summary,
                "fused": fused, "archive": archive}
    arity = {"fused": 2, "archive": 2}
    if len(argv) < 2 or argv[1] not in commands or len(argv) != 2 + arity.get(argv[1], 1):
        print(__doc__, file=sys.stderr)
        return 2
    return commands[argv[1]](*argv[2:])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
