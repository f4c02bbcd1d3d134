"""Type stubs of vae._core, the C++ extension (python/src/module.cpp); the vae package re-exports it."""
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import numpy.typing as npt

# An array the engine reads: a numpy array (or anything numpy can read), or a DLPack tensor
# (torch.Tensor, a CuPy array) for the device path.
ArrayLike = Union[npt.ArrayLike, Any]
Labels = Optional[Union[npt.ArrayLike, Any]]

class Error(RuntimeError):
    """An error from the engine, with its message (a missing file, a bad checkpoint, no GPU, ...)."""

class ArgumentError(ValueError, Error):
    """A bad argument: a wrong dtype, shape or value, with what was expected."""

class Tensor:
    """A float32 tensor the engine owns, on the model's device; hand it to torch.from_dlpack,
    cupy.from_dlpack or numpy.from_dlpack (CPU) to use it without a copy."""
    @property
    def shape(self) -> Tuple[int, ...]: ...
    @property
    def device(self) -> str: ...
    def __dlpack__(self, *, stream: Optional[int] = None, max_version: Optional[Tuple[int, int]] = None,
                   dl_device: Optional[Tuple[int, int]] = None, copy: Optional[bool] = None) -> Any: ...
    def __dlpack_device__(self) -> Tuple[int, int]: ...
    def numpy(self) -> npt.NDArray[np.float32]:
        """A copy in host memory."""

class AggregatePosterior:
    """A diagonal Gaussian mixture fitted by EM to training posterior means (fit_aggregate)."""
    @property
    def components(self) -> int: ...
    @property
    def latent(self) -> int: ...
    @property
    def iterations(self) -> int: ...
    @property
    def mean_log_likelihood(self) -> float: ...
    @property
    def weights(self) -> npt.NDArray[np.float64]: ...
    @property
    def means(self) -> npt.NDArray[np.float64]: ...
    @property
    def variances(self) -> npt.NDArray[np.float64]: ...

class Model:
    """A VAE: its configuration, parameters and device."""
    def __init__(self, config: Optional[Union[Dict[str, Any], str]] = None, device: str = "auto", seed: int = 0) -> None:
        """A freshly initialised model. config: None (the default MLP VAE), a dict or JSON text of the
        model section or of a whole run config ({"model": ...}), or a config file's path such as
        configs/conv.json. device: "cpu", "cuda" or "auto"."""
    @property
    def config(self) -> Dict[str, Any]: ...
    @property
    def config_json(self) -> str: ...
    @property
    def device(self) -> str: ...
    @property
    def latent(self) -> int: ...
    @property
    def image_shape(self) -> Tuple[int, int, int]: ...
    @property
    def parameter_count(self) -> int: ...
    @property
    def origin(self) -> Optional[Dict[str, Any]]:
        """The run that trained the model (run_id, data, labels, test_fraction, data_hash), or None."""
    def state_dict(self) -> Dict[str, np.ndarray]:
        """The parameters as float32 numpy arrays (copies) named as in the checkpoint."""
    def load_state_dict(self, state_dict: Dict[str, np.ndarray]) -> None:
        """Sets the parameters from a dict like state_dict()'s (all names, same shapes, finite values)."""
    def __getstate__(self) -> Tuple[bytes, str]: ...
    def __setstate__(self, state: Tuple[bytes, str]) -> None: ...
    def save(self, path: str) -> None:
        """Writes a safetensors checkpoint atomically; vae.load and the CLI read it."""
    def encode(self, x: ArrayLike, labels: Labels = None) -> Tuple[Any, Any]:
        """(mu, logvar), float32 [N, L] each: numpy arrays for numpy input, the input's kind of tensor
        on the model's device for a DLPack tensor. x: uint8 or float32 in [0, 1], [N, H, W] or
        [N, C, H, W]."""
    def decode(self, z: ArrayLike, labels: Labels = None) -> Any:
        """Images float32 [N, C, H, W] in [0, 1] for codes z float32 [N, L]."""
    def sample(self, n: int, temperature: float = 1.0, label: Optional[Union[int, Sequence[int]]] = None,
               seed: int = 0, aggregate: Optional[AggregatePosterior] = None, dlpack: bool = False) -> Any:
        """n images float32 [n, C, H, W] from the prior (or the fitted aggregate posterior); a numpy
        array, or a vae.Tensor on the model's device with dlpack=True."""
    def reconstruct(self, x: ArrayLike, labels: Labels = None) -> Any:
        """Each image decoded from its posterior mean, float32 [N, C, H, W]."""

def set_threads(threads: int) -> None:
    """CPU threads for everything that follows (0: all cores)."""

def load(path: str, device: str = "auto") -> Model:
    """A model from a safetensors checkpoint (model.save or vae train)."""

def load_data(path: str, test_fraction: float = 0.1, labels: str = "") -> Dict[str, Any]:
    """A data set as the CLI's --data reads it: train_x, test_x (uint8 [N, C, H, W]), train_labels,
    test_labels (int32 [N] or None), source, class_names, test_fraction (0: the source's own test
    split) and hash (its content hash, as a run records it)."""

def fit_aggregate(model: Model, x: ArrayLike, labels: Labels = None, components: int = 10, seed: int = 0,
                  limit: int = 20000) -> AggregatePosterior:
    """A diagonal Gaussian mixture fitted by EM to the posterior means of the first `limit` images."""

def evaluate(model: Model, x: ArrayLike, labels: Labels = None, k: int = 0, limit: int = 0) -> Dict[str, Any]: ...

def train(model: Model, run_json: str, x: ArrayLike, labels: Labels = None, test_x: Optional[ArrayLike] = None,
          test_labels: Labels = None, on_step: Optional[Callable[[Dict[str, Any]], None]] = None,
          checkpoint: str = "", on_epoch: Optional[Callable[[Dict[str, Any]], None]] = None) -> List[Dict[str, Any]]: ...
def run(out: str, run_config: str = "", resume: bool = False, overwrite: bool = False, epochs: int = 0,
        threads: int = 0, on_step: Optional[Callable[[Dict[str, Any]], None]] = None,
        on_epoch: Optional[Callable[[Dict[str, Any]], None]] = None, data: str = "") -> List[Dict[str, Any]]: ...

def _encode_seconds(model: Model, x: ArrayLike, repeats: int = 5) -> List[float]: ...
