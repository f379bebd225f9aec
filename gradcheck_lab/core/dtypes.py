"""Resolving dtype names and rounding float64 arrays to a dtype under test."""

from __future__ import annotations

import numpy as np
import torch

from gradcheck_lab.errors import UnknownDtypeError

FLOAT_DTYPES: dict[str, torch.dtype] = {
    "float64": torch.float64,
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}
_ALIASES = {"double": "float64", "float": "float32", "half": "float16", "bf16": "bfloat16",
            "fp64": "float64", "fp32": "float32", "fp16": "float16"}


def resolve_dtype(dtype: str | torch.dtype | np.dtype | type) -> torch.dtype:
    """Map ``"float32"``, ``torch.float32`` or ``np.float32`` to a supported torch floating dtype."""
    if isinstance(dtype, torch.dtype):
        if dtype in FLOAT_DTYPES.values():
            return dtype
        raise UnknownDtypeError(f"dtype {dtype} is not supported; use one of {sorted(FLOAT_DTYPES)}")
    if isinstance(dtype, str):
        name = _ALIASES.get(dtype.lower().removeprefix("torch."), dtype.lower().removeprefix("torch."))
    else:
        try:
            name = np.dtype(dtype).name
        except TypeError as exc:
            raise UnknownDtypeError(f"cannot interpret {dtype!r} as a dtype") from exc
    if name not in FLOAT_DTYPES:
        raise UnknownDtypeError(f"unknown dtype {dtype!r}; use one of {sorted(FLOAT_DTYPES)}")
    return FLOAT_DTYPES[name]


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.float32`` -> ``"float32"``."""
    return str(dtype).removeprefix("torch.")


def unit_roundoff(dtype: torch.dtype) -> float:
    """Half the machine epsilon: the largest relative error of one rounding to ``dtype``."""
    return torch.finfo(dtype).eps / 2


def round_to_dtype(x: np.ndarray, dtype: torch.dtype) -> np.ndarray:
    """Round a float64 array to ``dtype`` (round to nearest even) and return it as float64 again."""
    # np.array (not ascontiguousarray, which makes 0-d arrays 1-d) copies into a fresh, writable array.
    if dtype == torch.float64:
        return np.array(x, dtype=np.float64, order="C")
    if dtype == torch.float32:  # NumPy's cast rounds to nearest even, as torch's does, overflow to Inf included
        with np.errstate(over="ignore"):
            return np.array(x, dtype=np.float64, order="C").astype(np.float32).astype(np.float64)
    return torch.from_numpy(np.array(x, dtype=np.float64, order="C")).to(dtype).double().numpy().reshape(np.shape(x))


NUMPY_DTYPES: dict[torch.dtype, type[np.floating]] = {
    torch.float64: np.float64,
    torch.float32: np.float32,
    torch.float16: np.float16,
    torch.bfloat16: np.float32,  # NumPy has no bfloat16: its values are exact in float32
}
"""The one torch -> NumPy dtype table: the NumPy dtype that holds a torch dtype's values exactly."""


def numpy_dtype(dtype: str | torch.dtype) -> type[np.floating]:
    """The NumPy dtype a NumPy implementation computes in when checked in ``dtype`` (bfloat16: float32)."""
    return NUMPY_DTYPES[resolve_dtype(dtype)]


def float64_array(tensor: torch.Tensor) -> np.ndarray:
    """A tensor's values as a float64 NumPy array, in the fewest torch calls: NumPy widens a CPU tensor it holds
    (float64 is not copied: the array shares the tensor's memory, as ``.double().numpy()`` would), torch widens
    the others (bfloat16) and copies them from a GPU."""
    tensor = tensor.detach()
    if tensor.device.type == "cpu" and tensor.dtype in (torch.float64, torch.float32, torch.float16):
        return np.asarray(tensor.numpy(), dtype=np.float64)
    return tensor.double().cpu().numpy()


def tensor_copy(x: np.ndarray, device: torch.device, dtype: torch.dtype | None = None) -> torch.Tensor:
    """A tensor of its own holding ``x`` on ``device``, in ``dtype`` (None: ``x``'s own): what ``torch.tensor``
    makes, at half its fixed cost (``torch.from_numpy`` of a NumPy copy, which a read-only ``x`` allows too)."""
    return torch.from_numpy(np.array(x)).to(device=device, dtype=dtype)
