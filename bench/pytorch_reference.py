#!/usr/bin/env python3
"""The same VAE, recipe and evaluation in PyTorch: the engine's independent reference.

Modes (all print JSON lines with the same field names as the engine's own output):
  check --checkpoint FILE --engine-json FILE [--limit N] [--k K]
      Loads a vae checkpoint (safetensors, read here with json+numpy), rebuilds the model in PyTorch
      in float64 and recomputes the test -ELBO and the k-sample importance-weighted -log p(x) with the
      SAME binarised test images and the SAME noise as `vae eval` (Philox4x32-10 reimplemented below).
      Compares with the engine's `vae eval --json` output and exits 1 if they disagree by more than
      the stated bounds. This is the evidence that the two implementations compute one function.
  train [--epochs 10] [--seed 0] [--threads 2]
      Trains the default model with the default recipe (PyTorch nn.Linear init, Adam 1e-3, batch 128,
      dynamic binarisation) and evaluates on the engine's fixed binarisation of the test set.
  step [--batch 128] [--threads 2] [--device cpu|cuda] [--mode eager|compile|reduce-overhead|max-autotune]
       [--model mlp|conv|gated|hvae]
      Times one training step (forward, loss, backward, Adam), eager or through torch.compile.
  eval-time --checkpoint FILE [--k 100] [--threads 2]   /   sample-time --checkpoint FILE [--n 10000]
      Times the work of `vae eval --k K` over the test set and of `vae sample --n N`, batched
      (bench/cpu_eval_side_by_side.sh runs them beside the engine's own).
Uses Debian's python3-torch and python3-numpy (run with /usr/bin/python3).
"""
import argparse
import gzip
import json
import math
import os
import struct
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

DATA = "/usr/share/datasets/fashion-mnist"
# Constants mirrored from the engine (kernels/philox.cuh, kernels/vae_math.cuh, src/train/evaluate.cpp).
STREAM_LATENT, STREAM_IMPORTANCE, STREAM_TEST_BINARIZE = 4, 6, 7
TEST_BINARIZE_SEED, EVAL_NOISE_SEED = 0x7E57B1A5, 0xE7A1
LOGVAR_MIN, LOGVAR_MAX = -30.0, 20.0
MASK = np.uint64(0xFFFFFFFF)


def philox4x32_10(c0, c1, c2, c3, seed):
    """Vectorised Philox4x32-10 over uint64 arrays holding 32-bit words."""
    c = [np.asarray(x, dtype=np.uint64) & MASK for x in (c0, c1, c2, c3)]
    k0, k1 = np.uint64(seed & 0xFFFFFFFF), np.uint64((seed >> 32) & 0xFFFFFFFF)
    for _ in range(10):
        p0 = np.uint64(0xD2511F53) * c[0]
        p1 = np.uint64(0xCD9E8D57) * c[2]
        c = [(p1 >> np.uint64(32)) ^ c[1] ^ k0, p1 & MASK, (p0 >> np.uint64(32)) ^ c[3] ^ k1, p0 & MASK]
        k0 = (k0 + np.uint64(0x9E3779B9)) & MASK
        k1 = (k1 + np.uint64(0xBB67AE85)) & MASK
    return c


def uniform24(bits):
    return (bits >> np.uint64(8)).astype(np.float32) * np.float32(1.0 / 16777216.0)


def philox_normal(rows, cols, seed, stream, step):
    """eps[r, c] for counter (c/4, rows[r], step[r or scalar], stream), Box-Muller on the lane pair."""
    rows = np.asarray(rows, dtype=np.uint64)[:, None]
    step = np.asarray(step, dtype=np.uint64)
    step = step[:, None] if step.ndim else step
    col = np.arange(cols, dtype=np.uint64)[None, :]
    words = philox4x32_10(col >> np.uint64(2), rows, step, np.uint64(stream), seed)
    lane = (col & np.uint64(3)).astype(np.int64)
    pair = lane & 2
    w = np.stack(np.broadcast_arrays(*words), axis=0)  # [4, R, C]
    take = lambda idx: np.take_along_axis(w, np.broadcast_to(idx, w.shape[1:])[None], axis=0)[0]
    u1 = ((take(pair) >> np.uint64(8)) + np.uint64(1)).astype(np.float32) * np.float32(1.0 / 16777216.0)
    u2 = uniform24(take(pair + 1))
    radius = np.sqrt(np.float32(-2.0) * np.log(u1))
    angle = np.float32(6.283185307179586) * u2
    return np.where(np.broadcast_to(lane & 1, radius.shape) == 1, radius * np.sin(angle), radius * np.cos(angle))


def read_idx_images(path):
    with gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb") as f:
        data = f.read()
    magic, n, h, w = struct.unpack(">IIII", data[:16])
    assert magic == 0x803, f"{path}: not an IDX image file"
    return np.frombuffer(data, dtype=np.uint8, offset=16).reshape(n, h * w)


def binarize_test(pixels, first=0):
    """The engine's fixed binarisation of the test set (a function of the image index alone)."""
    n, d = pixels.shape
    idx = np.arange(first, first + n, dtype=np.uint64)[:, None]
    col = np.arange(d, dtype=np.uint64)[None, :]
    words = philox4x32_10(col >> np.uint64(2), idx, 0, STREAM_TEST_BINARIZE, TEST_BINARIZE_SEED)
    w = np.stack(np.broadcast_arrays(*words), axis=0)
    lane = np.broadcast_to((col & np.uint64(3)).astype(np.int64), (n, d))
    u = uniform24(np.take_along_axis(w, lane[None], axis=0)[0])
    p = pixels.astype(np.float32) / np.float32(255.0)
    return (u < p).astype(np.float32)


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    meta = header.pop("__metadata__", {})
    data = raw[8 + n:]
    tensors = {}
    for name, e in header.items():
        assert e["dtype"] == "F32"
        b, end = e["data_offsets"]
        tensors[name] = np.frombuffer(data[b:end], dtype="<f4").reshape(e["shape"])
    return meta, tensors


class VAE(nn.Module):
    """784-512-256-(2x32) encoder, mirrored decoder, ReLU: the engine's default ModelConfig."""

    def __init__(self, d=784, hidden=(512, 256), latent=32):
        super().__init__()
        enc, width = [], d
        for h in hidden:
            enc += [nn.Linear(width, h), nn.ReLU()]
            width = h
        enc.append(nn.Linear(width, 2 * latent))
        dec, width = [], latent
        for h in reversed(hidden):
            dec += [nn.Linear(width, h), nn.ReLU()]
            width = h
        dec.append(nn.Linear(width, d))
        self.encoder, self.decoder, self.latent = nn.Sequential(*enc), nn.Sequential(*dec), latent

    def posterior(self, x):
        mu, raw = self.encoder(x).chunk(2, dim=1)
        # The engine's soft clamp: identity within e^-(distance to the bound).
        above = LOGVAR_MIN + F.softplus(raw - LOGVAR_MIN)
        return mu, LOGVAR_MAX - F.softplus(LOGVAR_MAX - above)

    def loss_terms(self, x, eps):
        mu, lv = self.posterior(x)
        z = mu + torch.exp(0.5 * lv) * eps
        nll = F.binary_cross_entropy_with_logits(self.decoder(z), x, reduction="none").sum(1)
        kl = 0.5 * (torch.exp(lv) + mu * mu - 1.0 - lv).sum(1)
        return nll, kl


def evaluate(model, x, first, k, dtype):
    """Test -ELBO with the engine's evaluation noise, and the k-sample IWAE bound."""
    with torch.no_grad():
        n = x.shape[0]
        idx = np.arange(first, first + n)
        eps = torch.from_numpy(philox_normal(idx, model.latent, EVAL_NOISE_SEED, STREAM_LATENT, 0)).to(dtype)
        nll, kl = model.loss_terms(x, eps)
        out = {"count": n, "neg_elbo": float((nll + kl).mean()), "recon": float(nll.mean()), "kl": float(kl.mean())}
        if k > 0:
            mu, lv = model.posterior(x)
            logw = []
            for j in range(k):
                e = torch.from_numpy(philox_normal(idx, model.latent, EVAL_NOISE_SEED, STREAM_IMPORTANCE,
                                                   np.full(n, j))).to(dtype)
                z = mu + torch.exp(0.5 * lv) * e
                nll_j = F.binary_cross_entropy_with_logits(model.decoder(z), x, reduction="none").sum(1)
                logw.append(-0.5 * (z * z).sum(1) + 0.5 * (e * e).sum(1) + 0.5 * lv.sum(1) - nll_j)
            log_px = torch.logsumexp(torch.stack(logw, 1), 1) - math.log(k)
            out["k"], out["iwae_nll"] = k, float(-log_px.mean())
        return out


def load_checkpoint(path, dtype):
    """A vae checkpoint of a Bernoulli/ReLU MLP model as this file's VAE, in dtype."""
    meta, tensors = read_safetensors(path)
    cfg = json.loads(meta["vae_config"])  # the component tree (image, encoder, ..., likelihood)
    enc = cfg["encoder"]
    assert cfg["likelihood"]["type"] == "bernoulli" and enc["type"] == "mlp" and enc["activation"] == "relu", \
        "the reference covers Bernoulli/ReLU MLP models"
    model = VAE(cfg["image"]["height"] * cfg["image"]["width"], enc["hidden"], cfg["posterior"]["latent"]).to(dtype)
    state = {name: torch.from_numpy(v.copy()).to(dtype) for name, v in tensors.items()}
    model.load_state_dict(state, strict=True)
    return model


def cmd_check(a):
    model = load_checkpoint(a.checkpoint, torch.float64)
    engine = json.load(open(a.engine_json))
    pixels = read_idx_images(os.path.join(a.data, "t10k-images-idx3-ubyte.gz"))[: engine["count"]]
    x = torch.from_numpy(binarize_test(pixels)).double()
    ref = evaluate(model, x, 0, engine.get("k", 0), torch.float64)
    # Bounds: the engine runs in float32 (784-term sums per image, 1e6-parameter GEMMs), the
    # reference in float64; 0.01 nats is ~4e-5 of the value and far below any modelling difference.
    report = {"reference": ref, "engine": {k: engine[k] for k in ref if k in engine}}
    bad = [f for f in ("neg_elbo", "recon", "kl", "iwae_nll") if f in ref and abs(ref[f] - engine[f]) > 0.01]
    report["max_abs_diff"] = max(abs(ref[f] - engine[f]) for f in ("neg_elbo", "recon", "kl", "iwae_nll") if f in ref)
    print(json.dumps(report))
    if bad:
        print(f"MISMATCH in {bad}: the engine and the PyTorch reference disagree", file=sys.stderr)
        return 1
    return 0


def cmd_train(a):
    torch.manual_seed(a.seed)
    torch.set_num_threads(a.threads)
    train = torch.from_numpy(read_idx_images(os.path.join(a.data, "train-images-idx3-ubyte.gz")).astype(np.float32) / 255.0)
    test_px = read_idx_images(os.path.join(a.data, "t10k-images-idx3-ubyte.gz"))
    test_x = torch.from_numpy(binarize_test(test_px))
    model = ConvVAE() if a.model == "conv" else VAE()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(a.seed)
    for epoch in range(1, a.epochs + 1):
        t0 = time.perf_counter()
        perm = torch.randperm(train.shape[0], generator=g)
        total = 0.0
        for s in range(0, train.shape[0], a.batch):
            x = torch.bernoulli(train[perm[s:s + a.batch]], generator=g)
            nll, kl = model.loss_terms(x, torch.randn(x.shape[0], model.latent, generator=g))
            loss = (nll + kl).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss) * x.shape[0]
        secs = time.perf_counter() - t0
        ev = evaluate(model, test_x, 0, a.k if epoch == a.epochs else 0, torch.float32)
        print(json.dumps({"impl": "pytorch-eager", "epoch": epoch, "train_loss": total / train.shape[0],
                          "test_neg_elbo": ev["neg_elbo"], "test_recon": ev["recon"], "test_kl": ev["kl"],
                          **({"iwae_nll": ev["iwae_nll"], "k": a.k} if "iwae_nll" in ev else {}),
                          "seconds": secs, "samples_per_s": train.shape[0] / secs}), flush=True)
    return 0


class ConvVAE(VAE):
    """configs/conv.json: Conv2d 1->32->64 (4x4, stride 2, padding 1), Linear 3136->256->2x32, and the
    mirrored decoder (Linear 32->256->3136, ConvTranspose2d 64->32->1), ReLU; flat [B, 784] in and out."""

    def __init__(self, latent=32):
        nn.Module.__init__(self)
        self.latent = latent
        self.encoder = nn.Sequential(
            nn.Unflatten(1, (1, 28, 28)),
            nn.Conv2d(1, 32, 4, 2, 1), nn.ReLU(), nn.Conv2d(32, 64, 4, 2, 1), nn.ReLU(), nn.Flatten(),
            nn.Linear(3136, 256), nn.ReLU(), nn.Linear(256, 2 * latent))
        self.decoder = nn.Sequential(
            nn.Linear(latent, 256), nn.ReLU(), nn.Linear(256, 3136), nn.ReLU(), nn.Unflatten(1, (64, 7, 7)),
            nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.ReLU(), nn.ConvTranspose2d(32, 1, 4, 2, 1), nn.Flatten())


class Gated(nn.Module):
    """vae_vampprior's GatedDense as the engine builds it: one Linear of doubled width, h = a * sigmoid(g)."""

    def __init__(self, width_in, width_out):
        super().__init__()
        self.linear = nn.Linear(width_in, 2 * width_out)

    def forward(self, x):
        a, g = self.linear(x).chunk(2, dim=1)
        return a * torch.sigmoid(g)


def soft_clamp(raw):
    above = LOGVAR_MIN + F.softplus(raw - LOGVAR_MIN)
    return LOGVAR_MAX - F.softplus(LOGVAR_MAX - above)


class GatedVAE(VAE):
    """One level of 80 with gated 300-300 networks: the one-level side of the hierarchy comparison
    (vae train --hidden 300,300 --activation gated --latent 80)."""

    def __init__(self, d=784, hidden=300, latent=80):
        nn.Module.__init__(self)
        self.latent = latent
        self.encoder = nn.Sequential(Gated(d, hidden), Gated(hidden, hidden), nn.Linear(hidden, 2 * latent))
        self.decoder = nn.Sequential(Gated(latent, hidden), Gated(hidden, hidden), nn.Linear(hidden, d))


class HVAE(nn.Module):
    """configs/hvae.json: two levels of 40 (top first), gated 300-300 networks, the top-down network
    Linear(40, 2x300) gate Linear(300, 4x40) = [prior head | posterior shift]; q(z1|x, z2) has head
    b1 + t1; the decoder reads [z2 | z1]; analytic KL at both levels (src/latent/top_down.hpp)."""

    def __init__(self, d=784, hidden=300, levels=(40, 40)):
        super().__init__()
        self.levels, self.latent = levels, sum(levels)
        self.encoder = nn.Sequential(Gated(d, hidden), Gated(hidden, hidden), nn.Linear(hidden, 2 * self.latent))
        self.top_down = nn.Sequential(Gated(levels[0], hidden), nn.Linear(hidden, 4 * levels[1]))
        self.decoder = nn.Sequential(Gated(self.latent, hidden), Gated(hidden, hidden), nn.Linear(hidden, d))

    def loss_terms(self, x, eps):
        l0, l1 = self.levels
        h = self.encoder(x)
        mu0, lv0 = h[:, :l0], soft_clamp(h[:, l0:2 * l0])
        z0 = mu0 + torch.exp(0.5 * lv0) * eps[:, :l0]
        kl = 0.5 * (torch.exp(lv0) + mu0 * mu0 - 1.0 - lv0).sum(1)
        o = self.top_down(z0)
        q = h[:, 2 * l0:] + o[:, 2 * l1:]
        muq, lvq = q[:, :l1], soft_clamp(q[:, l1:])
        mup, lvp = o[:, :l1], soft_clamp(o[:, l1:2 * l1])
        z1 = muq + torch.exp(0.5 * lvq) * eps[:, l0:]
        kl = kl + 0.5 * (lvp - lvq + (torch.exp(lvq) + (muq - mup) ** 2) * torch.exp(-lvp) - 1.0).sum(1)
        nll = F.binary_cross_entropy_with_logits(self.decoder(torch.cat([z0, z1], 1)), x, reduction="none").sum(1)
        return nll, kl


def cmd_step(a):
    """One training step (forward, loss, backward, Adam) on a batch already on the device.

    On CUDA: TF32 matmuls as the engine's default (--strict-fp32 turns both off), Adam(fused=True),
    and --mode eager | compile (torch.compile default) | reduce-overhead (torch.compile with CUDA
    graphs) | max-autotune (torch.compile benchmarking GEMM and Triton variants while it compiles, with
    CUDA graphs). The median of --repeats steps, each ended by a synchronisation."""
    torch.manual_seed(0)
    torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = not a.strict_fp32
        torch.backends.cudnn.allow_tf32 = not a.strict_fp32
    model = {"conv": ConvVAE, "gated": GatedVAE, "hvae": HVAE}.get(a.model, VAE)().to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, **({"fused": True} if dev.type == "cuda" else {}))
    x = (torch.rand(a.batch, 784, device=dev) < 0.3).float()
    eps = torch.randn(a.batch, model.latent, device=dev)

    def loss_fn(x, eps):
        nll, kl = model.loss_terms(x, eps)
        return (nll + kl).mean()

    if a.mode != "eager":
        loss_fn = torch.compile(loss_fn, mode=None if a.mode == "compile" else a.mode)

    def step():
        loss = loss_fn(x, eps)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    for _ in range(10):
        step()
    sync()
    times = []
    for _ in range(a.repeats):
        t0 = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t0)
    ms = 1000 * float(np.median(times))
    print(json.dumps({"impl": f"pytorch-{a.mode}", "model": a.model, "device": a.device, "threads": a.threads, "batch": a.batch,
                      "precision": "fp32" if a.strict_fp32 or dev.type == "cpu" else "tf32",
                      "ms_per_step": ms, "samples_per_s": a.batch / (ms / 1000)}))
    return 0


def cmd_eval_time(a):
    """The work of `vae eval --k K` over the test set, batched as PyTorch code would write it: the
    one-sample test -ELBO, the K-sample importance-weighted bound (--images images at a time, so
    images * K decoder rows per call), active units and KL per dimension from the posterior means.
    Noise from torch.randn (the engine's Philox in numpy would time numpy, not the model); the test
    images are binarised before the clock starts. Prints the seconds of the best of --repeats."""
    torch.set_num_threads(a.threads)
    model = load_checkpoint(a.checkpoint, torch.float32)
    pixels = read_idx_images(os.path.join(a.data, "t10k-images-idx3-ubyte.gz"))
    x = torch.from_numpy(binarize_test(pixels[: a.limit] if a.limit else pixels))
    n, L, k, B = x.shape[0], model.latent, a.k, a.images
    g = torch.Generator().manual_seed(0)

    def run():
        with torch.no_grad():
            elbo = iwae = 0.0
            means, kls = [], []
            for b in range(0, n, B):
                xb = x[b:b + B]
                mu, lv = model.posterior(xb)
                std = torch.exp(0.5 * lv)
                z = mu + std * torch.randn(mu.shape, generator=g)
                nll = F.binary_cross_entropy_with_logits(model.decoder(z), xb, reduction="none").sum(1)
                kl_dims = 0.5 * (torch.exp(lv) + mu * mu - 1.0 - lv)
                elbo += float((nll + kl_dims.sum(1)).sum())
                means.append(mu)
                kls.append(kl_dims.sum(0))
                if k > 0:
                    e = torch.randn(xb.shape[0], k, L, generator=g)
                    zk = mu[:, None] + std[:, None] * e
                    logits = model.decoder(zk.reshape(-1, L)).view(xb.shape[0], k, -1)
                    nll_k = F.binary_cross_entropy_with_logits(logits, xb[:, None].expand_as(logits), reduction="none").sum(2)
                    logw = -0.5 * (zk * zk).sum(2) + 0.5 * (e * e).sum(2) + 0.5 * lv.sum(1, keepdim=True) - nll_k
                    iwae -= float((torch.logsumexp(logw, 1) - math.log(k)).sum())
            active = int((torch.cat(means).var(0) > 0.01).sum())
            return {"neg_elbo": elbo / n, "iwae_nll": iwae / n if k > 0 else None, "active_units": active,
                    "kl_per_dim": (torch.stack(kls).sum(0) / n).tolist()}

    secs = []
    for _ in range(a.repeats):
        t0 = time.perf_counter()
        out = run()
        secs.append(time.perf_counter() - t0)
    print(json.dumps({"impl": "pytorch-eager", "task": "eval", "count": n, "k": k, "threads": a.threads,
                      "seconds": min(secs), "neg_elbo": out["neg_elbo"], "iwae_nll": out["iwae_nll"]}))
    return 0


def cmd_sample_time(a):
    """The work of `vae sample --n N`: N codes from the standard normal prior through the decoder to
    the mean images, a float32 numpy array [N, 1, 28, 28] as Model.sample returns. Best of --repeats."""
    torch.set_num_threads(a.threads)
    model = load_checkpoint(a.checkpoint, torch.float32)
    g = torch.Generator().manual_seed(0)
    secs = []
    for _ in range(a.repeats):
        t0 = time.perf_counter()
        with torch.no_grad():
            images = torch.sigmoid(model.decoder(torch.randn(a.n, model.latent, generator=g))).view(a.n, 1, 28, 28).numpy()
        secs.append(time.perf_counter() - t0)
    assert images.shape == (a.n, 1, 28, 28)
    print(json.dumps({"impl": "pytorch-eager", "task": "sample", "count": a.n, "threads": a.threads, "seconds": min(secs)}))
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=DATA)
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("check")
    c.add_argument("--checkpoint", required=True)
    c.add_argument("--engine-json", required=True, help="output of vae eval --json (with --limit and --k)")
    t = sub.add_parser("train")
    t.add_argument("--epochs", type=int, default=10)
    t.add_argument("--batch", type=int, default=128)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--threads", type=int, default=2)
    t.add_argument("--k", type=int, default=100)
    t.add_argument("--model", default="mlp", choices=["mlp", "conv"], help="mlp: the default model; conv: configs/conv.json")
    s = sub.add_parser("step")
    s.add_argument("--batch", type=int, default=128)
    s.add_argument("--threads", type=int, default=2)
    s.add_argument("--repeats", type=int, default=50)
    s.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    s.add_argument("--mode", default="eager", choices=["eager", "compile", "reduce-overhead", "max-autotune"])
    s.add_argument("--strict-fp32", action="store_true", help="CUDA: turn TF32 off")
    s.add_argument("--model", default="mlp", choices=["mlp", "conv", "gated", "hvae"],
                   help="mlp: the default model; conv: configs/conv.json; gated: one level of 80, gated 300-300; "
                        "hvae: configs/hvae.json")
    e = sub.add_parser("eval-time")
    e.add_argument("--checkpoint", required=True)
    e.add_argument("--k", type=int, default=100)
    e.add_argument("--limit", type=int, default=0, help="first N test images (0: all 10,000)")
    e.add_argument("--images", type=int, default=80, help="test images per importance-sampling batch")
    e.add_argument("--threads", type=int, default=2)
    e.add_argument("--repeats", type=int, default=1)
    g = sub.add_parser("sample-time")
    g.add_argument("--checkpoint", required=True)
    g.add_argument("--n", type=int, default=10000)
    g.add_argument("--threads", type=int, default=2)
    g.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()
    return {"check": cmd_check, "train": cmd_train, "step": cmd_step, "eval-time": cmd_eval_time,
            "sample-time": cmd_sample_time}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
