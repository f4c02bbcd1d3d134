#!/usr/bin/env python3
"""Colour Fashion-MNIST: an 8-bit RGB data set built from the Fashion-MNIST the machine has, for the
RGB likelihoods (dmol). Each image's grey level g in [0, 1] mixes two colours drawn per image
uniformly from the RGB cube, a foreground f and a background b: x_c = round(255 (g f_c + (1 - g) b_c)).
The three channels are then strongly coupled (what PixelCNN++'s linear colour coupling models), and
every channel uses the whole 0..255 range. Deterministic (numpy's PCG64, seed 0).

Writes IMAGES.npy (uint8 [N, 3, 28, 28]) and LABELS.npy (int64 [N]) from the training split.
Usage: colour_fashion_mnist.py [--source /usr/share/datasets/fashion-mnist] OUT_DIR
"""
import argparse
import gzip
import os

import numpy as np


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--source", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("out")
    a = p.parse_args()
    grey = read_idx(os.path.join(a.source, "train-images-idx3-ubyte.gz")).astype(np.float64) / 255.0
    labels = read_idx(os.path.join(a.source, "train-labels-idx1-ubyte.gz")).astype(np.int64)
    rng = np.random.Generator(np.random.PCG64(0))
    n = grey.shape[0]
    fg = rng.random((n, 3, 1, 1))
    bg = rng.random((n, 3, 1, 1))
    g = grey[:, None, :, :]
    rgb = np.rint(255.0 * (g * fg + (1.0 - g) * bg)).astype(np.uint8)
    os.makedirs(a.out, exist_ok=True)
    np.save(os.path.join(a.out, "images.npy"), rgb)
    np.save(os.path.join(a.out, "labels.npy"), labels)
    print(f"wrote {n} images {rgb.shape[1:]} to {a.out}/images.npy with labels.npy")


if __name__ == "__main__":
    main()
