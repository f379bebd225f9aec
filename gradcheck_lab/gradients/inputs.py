"""The inputs of a check: names for messages, constants, and the dtype-rounded float64 copies every side gets."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import torch

from gradcheck_lab.core.comparison import all_finite
from gradcheck_lab.core.dtypes import dtype_name, resolve_dtype, round_to_dtype
from gradcheck_lab.errors import InvalidInputError, NonFiniteError, UnknownDtypeError

ReferenceFn = Callable[..., tuple[Any, Sequence[Any]]]
TorchFn = Callable[..., torch.Tensor]


def input_names(fn: Callable[..., Any], count: int) -> list[str]:
    """Display labels for messages: ``'x' (input 0)`` from the function's positional parameters when they fit,
    else ``input 0``."""
    found = _found_parameters(fn, count)
    if found is None:
        return [f"input {k}" for k in range(count)]
    return [f"{name!r} (input {k})" for k, name in enumerate(found)]


def parameter_names(fn: Callable[..., Any], count: int) -> list[str]:
    """Plain names, the keys of a report: the function's positional parameter names when it has ``count`` of
    them, else ``input0``, ``input1``, ..."""
    found = _found_parameters(fn, count)
    return list(found) if found is not None else [f"input{k}" for k in range(count)]


def _found_parameters(fn: Callable[..., Any], count: int) -> tuple[str, ...] | None:
    try:
        return _cached_parameters(fn, count)
    except TypeError:  # unhashable callable
        return _parameters(fn, count)


@functools.lru_cache(maxsize=256)
def _cached_parameters(fn: Callable[..., Any], count: int) -> tuple[str, ...] | None:
    return _parameters(fn, count)


def _parameters(fn: Callable[..., Any], count: int) -> tuple[str, ...] | None:
    try:
        params = [p for p in inspect.signature(fn).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        params = []
    return tuple(params[k].name for k in range(count)) if len(params) >= count else None


def as_input_tuple(inputs: Any) -> tuple[Any, ...]:
    """Accept one array or a tuple (or list) of inputs (static settings such as a dict allowed among them)."""
    __tracebackhide__ = True
    if isinstance(inputs, np.ndarray | torch.Tensor | float | int | np.generic) and not isinstance(inputs, bool):
        return (inputs,)
    if isinstance(inputs, list | tuple):
        if not inputs:
            raise InvalidInputError("inputs is empty: pass a tuple with at least one array, e.g. (np.ones(3),)")
        return tuple(inputs)
    raise InvalidInputError(f"inputs must be a tuple of NumPy arrays, got {type(inputs).__name__}: pass e.g. "
                            "(np.array([1.0, 2.0]),)")


def array_inputs(inputs: Any) -> tuple[Any, ...]:
    """:func:`as_input_tuple` for a check whose every input is an array (``check_gradients``).

    A list made only of numbers and lists (``[1.0, 2.0]``, ``[[1.0, 2.0], [3.0, 4.0]]``) is ambiguous: one
    array, or several inputs? It is refused with both spellings, as is ``None``, a string, a dict or a bool
    in place of an input.
    """
    __tracebackhide__ = True
    if isinstance(inputs, list) and inputs and all(_is_plain_nested(x) for x in inputs):
        raise InvalidInputError(
            "inputs is a list of numbers, which could mean one array or several inputs: pass "
            "(np.array(inputs),) for one array input, or a tuple of arrays, "
            "one per input, such as (np.array(inputs[0]), np.array(inputs[1]))")
    found = as_input_tuple(inputs)
    for k, x in enumerate(found):
        if x is None or isinstance(x, str | bytes | dict | set | bool):
            raise InvalidInputError(f"inputs[{k}] is {x!r:.60} ({type(x).__name__}): every input must be a "
                                    "NumPy array (or a number), e.g. np.array([1.0, 2.0])")
    return found


def _is_plain_nested(x: Any) -> bool:
    """A Python number, or a list/tuple of such (no arrays, no tensors)."""
    if isinstance(x, list | tuple):
        return all(_is_plain_nested(item) for item in x)
    return isinstance(x, float | int) and not isinstance(x, bool)


REFERENCE_DTYPES = ("float32", "float16")
"""The precisions ``reference_dtype=`` can declare for a reference that computes below float64."""


def reference_precision(reference_dtype: Any) -> torch.dtype | None:
    """Validate ``reference_dtype=``: None (the reference computes in float64), "float32" or "float16"."""
    __tracebackhide__ = True
    if reference_dtype is None:
        return None
    try:
        resolved = resolve_dtype(reference_dtype)
    except UnknownDtypeError:
        resolved = None
    if resolved is None or dtype_name(resolved) not in REFERENCE_DTYPES:
        raise InvalidInputError(f"reference_dtype must be None (a float64 reference), 'float32' or 'float16', got "
                                f"{reference_dtype!r}: name the precision the reference computes in")
    return resolved


def constant_indices(constants: Sequence[int], count: int) -> frozenset[int]:
    """Validate ``constants=`` (indices of data inputs, negative ones from the end) against ``count`` inputs."""
    __tracebackhide__ = True
    if constants is None:
        constants = ()
    if isinstance(constants, int | np.integer) and not isinstance(constants, bool):
        constants = (int(constants),)
    if isinstance(constants, str | bytes) or not isinstance(constants, Iterable):
        raise InvalidInputError(f"constants= must be a tuple of input indices such as (1,), got {constants!r}")
    indices = set()
    for k in constants:
        if not isinstance(k, int | np.integer) or isinstance(k, bool):
            raise InvalidInputError(f"constants= holds {k!r}: give input indices (integers), e.g. constants=(1,)")
        if not -count <= k < count:
            raise InvalidInputError(f"constants= holds index {k}, but there are {count} input(s): indices run from "
                                    f"0 to {count - 1} (or -{count} to -1 from the end)")
        indices.add(int(k) % count)
    if len(indices) == count:
        raise InvalidInputError("every input is in constants=: at least one input must be differentiated")
    return frozenset(indices)


def _read_only_view(x: np.ndarray) -> np.ndarray:
    """``x`` as float64 in C order, without a copy where it already is one (float64 needs no rounding): a view
    that refuses writes, since every run gets its own copy of it and the caller's array is never modified."""
    if x.dtype != np.float64 or not x.flags.c_contiguous:
        return round_to_dtype(x, torch.float64)
    view: np.ndarray = x.view()
    view.flags.writeable = False
    return view


def prepare_inputs(inputs: Any, dtype: torch.dtype, names: Sequence[str] | None = None,
                   constants: frozenset[int] = frozenset()) -> list[np.ndarray]:
    """Validate the inputs and return them as float64 rounded to ``dtype``: copies, or read-only views of inputs
    that are float64 already (C order) in a float64 check. The caller's arrays are not touched.

    Data inputs (indices in ``constants``) may also be integer or boolean arrays, kept exact; floating
    data is rounded to ``dtype`` like every other input, since the torch side sees it in ``dtype``.
    """
    __tracebackhide__ = True
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
        as_dtype = _read_only_view(arr) if dtype == torch.float64 else round_to_dtype(arr, dtype)
        if all_finite(as_dtype):  # one pass: an input's NaN or Inf survives rounding, so this also covers it
            rounded.append(as_dtype)
            continue
        if not all_finite(arr):
            bad = tuple(int(i) for i in np.argwhere(~np.isfinite(arr))[0])
            raise NonFiniteError(f"{name} holds {float(arr[bad])!r} at index {bad}: inputs must be finite")
        raise NonFiniteError(f"{name} overflows {dtype_name(dtype)}: its largest magnitude is {np.abs(arr).max():g}")
    return rounded
