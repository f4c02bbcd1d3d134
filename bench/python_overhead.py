"""Acceptance 2 of the Python package: model.encode of 10,000 images from Python against the same C++
call (vae::encode_images) timed inside C++, alternating in one process on one checkpoint.

    PYTHONPATH=build/python /usr/bin/python3 bench/python_overhead.py [--checkpoint runs/x/model.safetensors]
        [--threads 2] [--rounds 15] [--device cpu]

Prints one JSON object: the median seconds of each side, their ratio (Python / C++) and each round's
figures. Without --checkpoint it uses a freshly initialised default model (784-512-256-32 MLP); the
encoder's cost does not depend on the weights' values.
"""
import argparse
import json
import statistics
import time

import vae

p = argparse.ArgumentParser()
p.add_argument("--checkpoint", default="")
p.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
p.add_argument("--threads", type=int, default=0)
p.add_argument("--rounds", type=int, default=15)
p.add_argument("--device", default="cpu")
args = p.parse_args()

vae.set_threads(args.threads)
model = vae.load(args.checkpoint, device=args.device) if args.checkpoint else vae.Model(device=args.device)
x = vae.load_data(args.data)["test_x"][:10000]  # uint8 [10000, 1, 28, 28], as the CLI holds it
x_float = x.astype("float32") / 255
for _ in range(2):  # warm-up: first-touch allocations, OpenMP and OpenBLAS thread pools
    model.encode(x)
    vae._core._encode_seconds(model, x, 1)

cpp, py, py_float = [], [], []
for _ in range(args.rounds):
    cpp += vae._core._encode_seconds(model, x, 1)
    start = time.perf_counter()
    mu, logvar = model.encode(x)
    py.append(time.perf_counter() - start)
    start = time.perf_counter()
    model.encode(x_float)
    py_float.append(time.perf_counter() - start)
assert mu.shape == (10000, model.latent)

result = {
    "images": len(x), "device": model.device, "threads": args.threads, "rounds": args.rounds,
    "checkpoint": args.checkpoint or "fresh default model",
    "cpp_median_s": statistics.median(cpp), "python_median_s": statistics.median(py),
    "ratio_python_over_cpp": statistics.median(py) / statistics.median(cpp),
    "python_float32_median_s": statistics.median(py_float),
    "cpp_s": cpp, "python_s": py, "python_float32_s": py_float,
}
print(json.dumps(result))
