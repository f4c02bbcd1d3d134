"""Train a VAE on Fashion-MNIST from Python, plot its loss curve and latent space, and sample it.

Run it as a script or cell by cell in a notebook (each "# %%" starts a cell):
    .venv/bin/python examples/train_and_sample.py --epochs 5 --out runs/python-example
It writes loss.png, latent.png, samples.png and model.safetensors into --out.
"""
# %% Set-up
import argparse
import os
import time

import matplotlib

matplotlib.use("Agg")  # files, not windows; drop this line in a notebook
import matplotlib.pyplot as plt
import numpy as np

import vae

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--data", default="/usr/share/datasets/fashion-mnist", help="a data set as vae train --data takes")
parser.add_argument("--out", default="runs/python-example", help="folder for the plots and the checkpoint")
parser.add_argument("--epochs", type=int, default=5)
parser.add_argument("--latent", type=int, default=16)
parser.add_argument("--train-limit", type=int, default=0, help="train on the first N images only (0: all)")
parser.add_argument("--device", default="auto", help="cpu, cuda or auto")
parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: all cores)")
args = parser.parse_args()
os.makedirs(args.out, exist_ok=True)

# %% Data: the CLI's loaders, as numpy arrays (uint8 [N, 1, 28, 28] and int32 labels)
data = vae.load_data(args.data)
if args.train_limit:
    data["train_x"], data["train_labels"] = data["train_x"][:args.train_limit], data["train_labels"][:args.train_limit]
print(f"{len(data['train_x'])} training and {len(data['test_x'])} test images from {data['source']}")

# %% Model and training, with the loss of every step the callback sees
model = vae.Model({"posterior": {"type": "gaussian", "latent": args.latent}}, device=args.device, seed=0)
print(f"{model.parameter_count} parameters on {model.device}")
steps = []
start = time.perf_counter()
history = vae.train(model, data, epochs=args.epochs, batch=128, threads=args.threads,
                    checkpoint=os.path.join(args.out, "model.safetensors"),
                    callback=lambda p: steps.append(((p["epoch"] - 1) + p["step"] / p["steps_per_epoch"], p["loss"])))
print(f"trained {args.epochs} epochs in {time.perf_counter() - start:.1f} s; "
      f"test -ELBO {history[-1]['test_neg_elbo']:.2f} nats")

# %% The loss curve: training loss per step window and test -ELBO per epoch
fig, ax = plt.subplots(figsize=(6, 4))
ax.plot([s[0] for s in steps], [s[1] for s in steps], label="training loss (running)", lw=1)
ax.plot([h["epoch"] for h in history], [h["test_neg_elbo"] for h in history], "o-", label="test -ELBO")
ax.set_xlabel("epoch")
ax.set_ylabel("nats per image")
ax.legend()
fig.tight_layout()
fig.savefig(os.path.join(args.out, "loss.png"), dpi=120)

# %% The latent space: posterior means of the test images, their two principal components
mu, logvar = model.encode(data["test_x"])
centred = mu - mu.mean(axis=0)
_, singular, components = np.linalg.svd(centred, full_matrices=False)
points = centred @ components[:2].T
explained = singular[:2] ** 2 / np.sum(singular ** 2)
fig, ax = plt.subplots(figsize=(6, 5))
labels = data["test_labels"] if data["test_labels"] is not None else np.zeros(len(mu), int)
scatter = ax.scatter(points[:, 0], points[:, 1], c=labels, cmap="tab10", s=2)
names = data["class_names"] or ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                                "Bag", "Ankle boot"]
ax.legend(scatter.legend_elements()[0], names[:labels.max() + 1], fontsize=7, markerscale=0.7, loc="best")
ax.set_xlabel(f"PC 1 ({explained[0]:.0%} of the variance)")
ax.set_ylabel(f"PC 2 ({explained[1]:.0%})")
ax.set_title("test posterior means")
fig.tight_layout()
fig.savefig(os.path.join(args.out, "latent.png"), dpi=120)

# %% Samples: the prior at temperature 1, and the aggregate posterior (a mixture fitted to the training means)
fitted = vae.fit_aggregate(model, data["train_x"], components=10)
rows = [model.sample(8, temperature=1.0, seed=1), model.sample(8, temperature=0.7, seed=1),
        model.sample(8, aggregate=fitted, seed=1)]
fig, axes = plt.subplots(3, 8, figsize=(8, 3.4))
for r, (images, title) in enumerate(zip(rows, ["prior, T = 1", "prior, T = 0.7", "aggregate posterior"])):
    for c in range(8):
        axes[r, c].imshow(images[c, 0], cmap="gray", vmin=0, vmax=1)
        axes[r, c].axis("off")
    axes[r, 0].set_title(title, fontsize=8, loc="left")
fig.tight_layout()
fig.savefig(os.path.join(args.out, "samples.png"), dpi=120)

# %% The importance-weighted bound on a part of the test set
result = vae.evaluate(model, data["test_x"][:1000], k=100)
print(f"-log p(x) ~ {result['iwae_nll']:.2f} nats (k = 100, 1000 test images); active units {result['active_units']}")
print(f"wrote {args.out}/loss.png, latent.png, samples.png, model.safetensors")
