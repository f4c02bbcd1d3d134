"""vae: train, evaluate and sample variational autoencoders with the vae C++ engine.

    import vae
    data = vae.load_data("/usr/share/datasets/fashion-mnist")   # the CLI's loaders
    model = vae.Model({"posterior": {"type": "gaussian", "latent": 16}}, device="auto")
    history = vae.train(model, data, epochs=5, checkpoint="model.safetensors")
    vae.run("runs/fmnist", {"train": {"epochs": 5}})                # or a run folder, as vae train keeps one
    mu, logvar = model.encode(data["test_x"][:100])             # numpy in, numpy out
    samples = model.sample(64, temperature=0.8)                  # float32 [64, 1, 28, 28]
    print(vae.evaluate(model, data["test_x"], k=100)["iwae_nll"])

Images are uint8 (0-255) or float32 in [0, 1], [N, H, W] or [N, C, H, W]. On a CUDA model, float32
torch tensors and CuPy arrays (anything with DLPack) are read where they lie and the results come
back as the same kind of tensor on the GPU, with no copy through the host.

Errors from the engine arrive as vae.Error (a RuntimeError); bad arguments as vae.ArgumentError,
a ValueError and a vae.Error.
"""
import json as _json
from typing import Any, Callable, Dict, List, Optional, Union

import numpy as _np

from ._core import (AggregatePosterior, ArgumentError, Error, Model, Tensor, evaluate as _evaluate,
                    fit_aggregate, load, load_data, run as _run, set_threads, train as _train)

__all__ = ["AggregatePosterior", "ArgumentError", "Error", "Model", "Tensor", "evaluate", "fit_aggregate", "load",
           "load_data", "run", "set_threads", "train"]
__version__ = "0.1.0"

# The run configuration's "objective" fields; every other keyword of train() is a "train" field.
_OBJECTIVE_KEYS = {"type", "beta", "warmup", "warmup_epochs", "warmup_ratio", "free_bits", "free_bits_group",
                   "capacity", "capacity_epochs", "k"}


def _data_arguments(data, labels, test_x, test_labels, test_fraction):
    """(x, labels, test_x, test_labels) from an array, a data set path or a load_data() dict."""
    if isinstance(data, str):
        data = load_data(data, test_fraction=test_fraction)
    if isinstance(data, dict):
        if labels is not None or test_x is not None or test_labels is not None:
            raise ArgumentError("train: give labels and test data inside the data set (a path or load_data's dict), "
                                "or pass arrays, not both")
        return data["train_x"], data["train_labels"], data["test_x"], data["test_labels"]
    return data, labels, test_x, test_labels


def _step_hook(callback, on_step, where):
    if callback is not None and on_step is not None:
        raise ArgumentError(f"{where}: give on_step or callback (its older name), not both")
    return on_step if on_step is not None else callback


def train(model: Model, data: Union[_np.ndarray, str, Dict[str, Any]], labels: Optional[_np.ndarray] = None,
          test_x: Optional[_np.ndarray] = None, test_labels: Optional[_np.ndarray] = None,
          callback: Optional[Callable[[Dict[str, Any]], None]] = None, progress: bool = True,
          checkpoint: Optional[str] = None, test_fraction: float = 0.1,
          on_epoch: Optional[Callable[[Dict[str, Any]], None]] = None,
          on_step: Optional[Callable[[Dict[str, Any]], None]] = None, **overrides: Any) -> List[Dict[str, Any]]:
    """Trains model in place and returns the per-epoch metrics as dicts (the CLI's metrics.jsonl lines).

    data: images (uint8 or float32 in [0, 1], [N, H, W] or [N, C, H, W]) with optional labels and
    test_x / test_labels (the test set defaults to the training images); or a data set path as the
    CLI's --data takes (a Fashion-MNIST IDX folder, a .npy file, a folder of PNGs), or the dict
    load_data returns, both with their own labels and test split.

    overrides are the run configuration's "train" and "objective" fields: epochs=5, batch=128,
    lr=1e-3, seed=0, threads=0, beta=0.5, warmup_epochs=10, free_bits=0.1, k=5, ... (README.md).
    on_step(step) (or callback, its older name) gets a dict (epoch, step, steps_per_epoch, loss,
    samples_per_s) every few steps;
    on_epoch(metrics) each epoch's metrics dict when the epoch ends. With progress true a tqdm bar is
    shown when tqdm is installed, and one line per epoch is printed otherwise. Without test data the
    "test" metrics are the training images' (a UserWarning says so). checkpoint: a path written at
    every epoch's end and when the run stops. Ctrl-C, or an exception from callback, stops training
    after the current step: the model keeps that step's parameters, the checkpoint is written, and
    the exception (KeyboardInterrupt) is raised. A run that diverges raises vae.Error and leaves the
    model with the parameters of the last epoch's end (the start's, in the first epoch).
    """
    callback = _step_hook(callback, on_step, "train")
    x, labels, test_x, test_labels = _data_arguments(data, labels, test_x, test_labels, test_fraction)
    if test_x is None:
        import warnings
        warnings.warn("vae.train: no test data (test_x): the test metrics and the best checkpoint use the training "
                      "images", UserWarning, stacklevel=2)
    run = {"train": {k: v for k, v in overrides.items() if k not in _OBJECTIVE_KEYS},
           "objective": {k: v for k, v in overrides.items() if k in _OBJECTIVE_KEYS}}
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

    def epoch_end(metrics):
        if progress and bar is None:
            print(f"epoch {metrics['epoch']}  train loss {metrics['train_loss']:.2f}  test -ELBO "
                  f"{metrics['test_neg_elbo']:.2f}  {metrics['seconds']:.1f}s", flush=True)
        if on_epoch is not None:
            on_epoch(metrics)

    try:
        return _train(model, _json.dumps(run), x, labels, test_x, test_labels, on_step, checkpoint or "", epoch_end)
    finally:
        if bar is not None:
            bar.close()


def evaluate(model: Model, x: Union[_np.ndarray, str, Dict[str, Any]], labels: Optional[_np.ndarray] = None,
             k: int = 0, limit: int = 0) -> Dict[str, Any]:
    """The test -ELBO and its parts (neg_elbo, recon, kl), active units, KL per dimension and, with
    k > 0, the importance-weighted -log p(x) (iwae_nll) with its standard error over the images
    (iwae_stderr) and the weights' effective sample size (ess_mean, ess_min), as a dict: the fields of
    the CLI's vae eval --json, with its "protocol" (k, test images and their hash, binarization, the
    model configuration's hash, and the data set's content hash and test split when x is a data set's
    path or load_data's dict). x as for train (8-bit pixels); limit: the first images only (0: all)."""
    data = load_data(x) if isinstance(x, str) else x if isinstance(x, dict) else None
    if data is not None:
        x, labels = data["test_x"], data["test_labels"]
    result = _evaluate(model, x, labels, k, limit)
    for key in ("hash", "test_split"):  # a load_data dict knows its data set: as vae eval --json records it
        if data is not None and key in data:
            result["protocol"]["data_hash" if key == "hash" else key] = data[key]
    return result


def run(out: str, config: Union[None, str, Dict[str, Any]] = None, resume: bool = False, overwrite: bool = False,
        epochs: Optional[int] = None, threads: Optional[int] = None,
        callback: Optional[Callable[[Dict[str, Any]], None]] = None,
        on_epoch: Optional[Callable[[Dict[str, Any]], None]] = None, data: Optional[str] = None,
        on_step: Optional[Callable[[Dict[str, Any]], None]] = None) -> List[Dict[str, Any]]:
    """Trains into the run folder out exactly as `vae train --out out` does, and returns this call's
    per-epoch metrics (the lines it adds to out/metrics.jsonl).

    config: the whole run configuration ({"model": ..., "train": ..., "objective": ...}, as a dict,
    JSON text or a config file's path, such as configs/conv.json); None: the defaults. The data comes
    from its train.data (data= overrides it), the image size (and a conditional model's classes) from
    the data; the run records the data's absolute path and content hash. A folder that already holds a
    run is refused unless overwrite; resume=True continues the run in out with its own configuration
    (as vae train --resume: only epochs, threads and, for data that moved, data= may change; other
    data than the run's is refused). on_step(step) (or callback) gets
    a dict every few steps; on_epoch(metrics) after each epoch's files are written. Ctrl-C, or an
    exception from a callback, stops the run after the current step with its checkpoint and state
    saved (resume continues it exactly), and is raised.
    """
    callback = _step_hook(callback, on_step, "run")
    if isinstance(config, dict):
        config = _json.dumps(config)
    if resume and config is not None:
        raise ArgumentError("run: resume continues the run with its own configuration; give no config")
    return _run(out, config or "", resume, overwrite, epochs or 0, threads or 0, callback, on_epoch, data or "")
