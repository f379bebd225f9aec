r"""Mean squared error and its backward pass."""

from __future__ import annotations

from typing import Literal

import numpy as np

from ._arrays import as_float

Reduction = Literal["mean", "sum"]


def _check_reduction(reduction: str) -> None:
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")


def mse(pred: np.ndarray, target: np.ndarray, reduction: Reduction = "mean") -> np.ndarray:
    r"""Squared error :math:`\sum_i (p_i - t_i)^2`, divided by :math:`N` when ``reduction="mean"``.

    ``pred`` and ``target`` have the same shape (any shape); the result is a 0-d array.
    """
    _check_reduction(reduction)
    pred, target = as_float(pred), as_float(target)
    if pred.shape != target.shape:
        raise ValueError(f"pred has shape {pred.shape} but target has shape {target.shape}")
    squared = np.square(pred - target)
    return np.asarray(squared.mean() if reduction == "mean" else squared.sum())


def mse_backward(
    pred: np.ndarray,
    target: np.ndarray,
    reduction: Reduction = "mean",
    grad_out: float | np.ndarray = 1.0,
) -> np.ndarray:
    r"""Gradient of the MSE with respect to ``pred``.

    With :math:`r_i = p_i - t_i` and :math:`L = c \sum_i r_i^2`, where :math:`c = 1/N`
    for ``"mean"`` and :math:`c = 1` for ``"sum"``,

    .. math::
        \frac{\partial L}{\partial p_i} = c \cdot 2 r_i \cdot \frac{\partial r_i}{\partial p_i}
                                        = \frac{2}{N} (p_i - t_i) \quad \text{(mean)},

    scaled by the upstream gradient ``grad_out`` (:math:`\partial \ell / \partial L`). The
    gradient with respect to ``target`` is the negative of this, since
    :math:`\partial r_i / \partial t_i = -1`. Forgetting the factor 2 is the classic bug.
    """
    _check_reduction(reduction)
    pred, target = as_float(pred), as_float(target)
    scale = 2.0 / pred.size if reduction == "mean" else 2.0
    return np.asarray(grad_out) * scale * (pred - target)
