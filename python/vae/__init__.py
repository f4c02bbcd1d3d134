"""vae: train, evaluate and sample variational autoencoders with the vae C++ engine, on numpy arrays.

    import numpy, vae
    model = vae.Model({"posterior": {"type": "gaussian", "latent": 16}})
    history = vae.train(model, images, labels=None, epochs=5)   # images: uint8 [N, 28, 28]
    mu, logvar = model.encode(images[:100])
    samples = model.sample(64, temperature=0.8)                  # float32 [64, 1, 28, 28]

Errors from the engine arrive as vae.Error; bad arguments as vae.ArgumentError, a ValueError.
"""
import json as _json

from ._core import ArgumentError, Error, Model, evaluate as _evaluate, load, train as _train

__all__ = ["ArgumentError", "Error", "Model", "evaluate", "load", "train"]
__version__ = "0.1.0"


def train(model, x, labels=None, test_x=None, test_labels=None, callback=None, progress=True, **overrides):
    """Trains model in place on images x (uint8 or float32 in [0, 1], [N, H, W] or [N, C, H, W]).

    overrides are the run configuration's "train" and "objective" fields (epochs=5, batch=128,
    lr=1e-3, beta=0.5, ...; see the README). callback(step: dict) runs every few steps; a tqdm bar
    is shown when tqdm is installed and progress is true. Ctrl-C stops after the current step and
    raises KeyboardInterrupt with the model holding that step's parameters. Returns the per-epoch
    metrics as dicts (the lines of the CLI's metrics.jsonl).
    """
    objective_keys = {"type", "beta", "warmup", "warmup_epochs", "warmup_ratio", "free_bits", "free_bits_group",
                      "capacity", "capacity_epochs", "k"}
    run = {"train": {k: v for k, v in overrides.items() if k not in objective_keys},
           "objective": {k: v for k, v in overrides.items() if k in objective_keys}}
    bar = None
    if progress:
        try:
            import tqdm  # optional
        except ImportError:
            tqdm = None
        if tqdm is not None:
            bar = tqdm.tqdm(unit="step")

    def on_step(p):
        if bar is not None:
            bar.total = p["steps_per_epoch"]
            bar.n = p["step"]
            bar.set_description(f"epoch {p['epoch']}")
            bar.set_postfix(loss=f"{p['loss']:.2f}")
            bar.refresh()
        if callback is not None:
            callback(p)

    try:
        return _train(model, _json.dumps(run), x, labels, test_x, test_labels, on_step)
    finally:
        if bar is not None:
            bar.close()


def evaluate(model, x, labels=None, k=0, limit=0):
    """The test -ELBO and its parts, active units, KL per dimension and, with k > 0, the
    importance-weighted -log p(x), as a dict (the CLI's vae eval --json)."""
    return _evaluate(model, x, labels, k, limit)
