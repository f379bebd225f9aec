"""Small array helpers shared by the reference modules."""

from __future__ import annotations

import numpy as np


def as_float(x: np.ndarray | float) -> np.ndarray:
    """Return ``x`` as a floating array, keeping a floating dtype and promoting integers to float64."""
    x = np.asarray(x)
    if np.issubdtype(x.dtype, np.floating):
        return x
    return x.astype(np.float64)


def sum_to_shape(grad: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Undo NumPy broadcasting: sum ``grad`` over the axes that were broadcast to reach its shape.

    A value broadcast to many positions receives the sum of their gradients.
    """
    extra = grad.ndim - len(shape)
    grad = grad.sum(axis=tuple(range(extra))) if extra > 0 else grad
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    return grad.sum(axis=stretched, keepdims=True) if stretched else grad


def shift_by_max(x: np.ndarray, axis: int) -> np.ndarray:
    """``x`` minus its maximum along ``axis``: every entry at most 0.

    A difference beyond the dtype's range (float16 65504 minus -1e4) rounds to -inf, which is
    the correctly rounded result (its exponential is 0), so that overflow is not warned about.
    """
    x = as_float(x)
    with np.errstate(over="ignore"):
        return x - x.max(axis=axis, keepdims=True)
