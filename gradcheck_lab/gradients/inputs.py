"""The inputs of a check: names for messages, constants, and the dtype-rounded float64 copies every side gets."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from gradcheck_lab.core.comparison import all_finite
from gradcheck_lab.core.dtypes import dtype_name, round_to_dtype
from gradcheck_lab.errors import InvalidInputError, NonFiniteError

ReferenceFn = Callable[..., tuple[Any, Sequence[Any]]]
TorchFn = Callable[..., torch.Tensor]


def input_names(fn: Callable[..., Any], count: int) -> list[str]:
    """Names for the inputs: the function's positional parameter names when they fit, else ``input[k]``."""
    try:
        return list(_cached_input_names(fn, count))
    except TypeError:  # unhashable callable
        return list(_input_names(fn, count))


@functools.lru_cache(maxsize=256)
def _cached_input_names(fn: Callable[..., Any], count: int) -> tuple[str, ...]:
    return _input_names(fn, count)


def _input_names(fn: Callable[..., Any], count: int) -> tuple[str, ...]:
    try:
        params = [p for p in inspect.signature(fn).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        params = []
    if len(params) >= count:
        return tuple(f"{params[k].name!r} (input {k})" for k in range(count))
    return tuple(f"input {k}" for k in range(count))


def as_input_tuple(inputs: Any) -> tuple[Any, ...]:
    """Accept one array or a sequence of arrays."""
    if isinstance(inputs, np.ndarray | torch.Tensor | float | int | np.generic):
        return (inputs,)
    if isinstance(inputs, list | tuple):
        if not inputs:
            raise InvalidInputError("inputs is empty: pass a tuple with at least one array")
        return tuple(inputs)
    raise InvalidInputError(f"inputs must be a tuple of NumPy arrays, got {type(inputs).__name__}")


def constant_indices(constants: Sequence[int], count: int) -> frozenset[int]:
    """Validate ``constants=`` (indices of data inputs, negative ones from the end) against ``count`` inputs."""
    if isinstance(constants, int | np.integer):
        constants = (int(constants),)
    indices = set()
    for k in constants:
        if not isinstance(k, int | np.integer) or isinstance(k, bool):
            raise InvalidInputError(f"constants= holds {k!r}: give input indices (integers)")
        if not -count <= k < count:
            raise InvalidInputError(f"constants= holds index {k}, but there are {count} input(s)")
        indices.add(int(k) % count)
    if len(indices) == count:
        raise InvalidInputError("every input is in constants=: at least one input must be differentiated")
    return frozenset(indices)


def prepare_inputs(inputs: Any, dtype: torch.dtype, names: Sequence[str] | None = None,
                   constants: frozenset[int] = frozenset()) -> list[np.ndarray]:
    """Validate the inputs and return copies: float64 rounded to ``dtype``. The caller's arrays are not touched.

    Data inputs (indices in ``constants``) may also be integer or boolean arrays, kept exact; floating
    data is rounded to ``dtype`` like every other input, since the torch side sees it in ``dtype``.
    """
    inputs = as_input_tuple(inputs)
    names = names or [f"input {k}" for k in range(len(inputs))]
    rounded = []
    for k, (name, x) in enumerate(zip(names, inputs, strict=True)):
        arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
        if k in constants and arr.dtype.kind in "iub":
            rounded.append(np.array(arr, copy=True))
            continue
        if arr.dtype.kind in "iub":
            raise InvalidInputError(
                f"{name} has {arr.dtype} dtype: gradients need floating inputs (cast it, e.g. x.astype(np.float64),"
                " or pass its index in constants= if it is data such as labels)")
        if arr.dtype.kind != "f":
            raise InvalidInputError(f"{name} has unsupported dtype {arr.dtype}: only real floating arrays are checked")
        if arr.size == 0 and k not in constants:
            raise InvalidInputError(f"{name} is empty (shape {arr.shape}): there is nothing to differentiate")
        as_dtype = round_to_dtype(arr, dtype)
        if all_finite(as_dtype):  # one pass: an input's NaN or Inf survives rounding, so this also covers it
            rounded.append(as_dtype)
            continue
        if not all_finite(arr):
            bad = tuple(int(i) for i in np.argwhere(~np.isfinite(arr))[0])
            raise NonFiniteError(f"{name} holds {float(arr[bad])!r} at index {bad}: inputs must be finite")
        raise NonFiniteError(f"{name} overflows {dtype_name(dtype)}: its largest magnitude is {np.abs(arr).max():g}")
    return rounded
