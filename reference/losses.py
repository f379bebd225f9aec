r"""Losses (MSE, cross-entropy, binary cross-entropy with logits) and logsumexp, with their backward passes."""

from __future__ import annotations

from typing import Literal

import numpy as np

from ._arrays import as_float, shift_by_max
from .activations import log_softmax, sigmoid, softmax

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


# --- logsumexp, cross-entropy, binary cross-entropy with logits ---

LossReduction = Literal["mean", "sum", "none"]


def _check_loss_reduction(reduction: str) -> None:
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def logsumexp(x: np.ndarray, axis: int = -1) -> np.ndarray:
    r""":math:`\log \sum_i e^{x_i}` along ``axis`` (removed), as :math:`m + \log \sum_i e^{x_i - m}`.

    :math:`m` is each slice's maximum, so no exponent is positive and each sum is at least 1.
    """
    x = as_float(x)
    m = x.max(axis=axis, keepdims=True)
    return np.squeeze(m + np.log(np.exp(shift_by_max(x, axis)).sum(axis=axis, keepdims=True)), axis=axis)


def logsumexp_backward(grad_out: np.ndarray, x: np.ndarray, axis: int = -1) -> np.ndarray:
    r"""Gradient of :math:`y = \log\sum_i e^{x_i}`: the softmax of the slice, scaled by the upstream gradient.

    .. math::
        \frac{\partial y}{\partial x_j} = \frac{e^{x_j}}{\sum_i e^{x_i}} = \mathrm{softmax}(x)_j,
        \qquad \frac{\partial L}{\partial x_j} = g\, \mathrm{softmax}(x)_j,

    with :math:`g` broadcast back along the reduced ``axis``.
    """
    x = as_float(x)
    return (np.expand_dims(np.asarray(grad_out), axis) * softmax(x, axis=axis)).astype(x.dtype, copy=False)


def _ce_parts(logits: np.ndarray, target: np.ndarray,
              label_smoothing: float) -> tuple[np.ndarray, np.ndarray, int]:
    """``(log_p, q, class_axis)``: log-probabilities and the smoothed target distribution, shaped like ``logits``."""
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing}")
    class_axis = 0 if logits.ndim == 1 else 1
    n_classes = logits.shape[class_axis]
    log_p = log_softmax(logits, axis=class_axis)
    target = np.asarray(target)
    if np.issubdtype(target.dtype, np.integer):
        expected = logits.shape[:class_axis] + logits.shape[class_axis + 1:]
        if target.shape != expected:
            raise ValueError(f"class-index target has shape {target.shape}, expected {expected}")
        if target.size and (target.min() < 0 or target.max() >= n_classes):
            raise ValueError(f"class indices must lie in [0, {n_classes})")
        q = (np.expand_dims(target, class_axis) == np.arange(n_classes).reshape(
            (n_classes,) + (1,) * (logits.ndim - class_axis - 1))).astype(logits.dtype)
    else:
        if target.shape != logits.shape:
            raise ValueError(f"probability target has shape {target.shape}, expected {logits.shape}")
        q = target.astype(logits.dtype, copy=False)
    if label_smoothing:
        q = q * (1 - label_smoothing) + label_smoothing / n_classes
    return log_p, q, class_axis


def cross_entropy(logits: np.ndarray, target: np.ndarray, reduction: LossReduction = "mean",
                  label_smoothing: float = 0.0) -> np.ndarray:
    r"""Softmax cross-entropy with ``torch.nn.functional.cross_entropy``'s semantics.

    ``logits`` is ``(N, C, d1, ...)`` (or ``(C,)``); ``target`` holds class indices (an integer array
    shaped like ``logits`` without the class axis) or class probabilities (shaped like ``logits``).
    With :math:`\varepsilon` the ``label_smoothing`` the target distribution is
    :math:`q = (1 - \varepsilon)\,t + \varepsilon / C` (:math:`t` the one-hot or the probabilities), and
    each position's loss is :math:`\ell = -\sum_c q_c \log \mathrm{softmax}(z)_c`. ``"mean"`` divides the
    sum by the number of positions :math:`N d_1 \cdots` (not by :math:`N C d_1 \cdots`); ``"none"``
    returns the per-position losses.
    """
    _check_loss_reduction(reduction)
    logits = as_float(logits)
    log_p, q, class_axis = _ce_parts(logits, target, label_smoothing)
    per_position = -np.sum(q * log_p, axis=class_axis)
    if reduction == "none":
        return per_position
    return np.asarray(per_position.mean() if reduction == "mean" else per_position.sum())


def cross_entropy_backward(logits: np.ndarray, target: np.ndarray, reduction: LossReduction = "mean",
                           label_smoothing: float = 0.0, grad_out: float | np.ndarray = 1.0) -> np.ndarray:
    r"""Gradient of :func:`cross_entropy` with respect to the logits.

    With :math:`p = \mathrm{softmax}(z)` and :math:`\log p_c = z_c - \log\sum_k e^{z_k}`,
    :math:`\partial \log p_c / \partial z_j = \delta_{cj} - p_j`, so for one position

    .. math::
        \frac{\partial \ell}{\partial z_j} = -\sum_c q_c (\delta_{cj} - p_j)
            = p_j \sum_c q_c - q_j = p_j - q_j \quad (\textstyle\sum_c q_c = 1),

    the softmax minus the (smoothed) one-hot. ``"mean"`` divides by the number of positions :math:`N d_1
    \cdots`; ``grad_out`` (a scalar, or per position for ``"none"``) scales each position's gradient.
    """
    _check_loss_reduction(reduction)
    logits = as_float(logits)
    log_p, q, class_axis = _ce_parts(logits, target, label_smoothing)
    grad = np.exp(log_p) * q.sum(axis=class_axis, keepdims=True) - q
    grad_out = np.asarray(grad_out)
    if reduction == "none" and grad_out.ndim:
        grad_out = np.expand_dims(grad_out, class_axis)
    elif reduction == "mean":
        grad_out = grad_out / (logits.size // logits.shape[class_axis])
    return (grad_out * grad).astype(logits.dtype, copy=False)


def _softplus(x: np.ndarray) -> np.ndarray:
    r""":math:`\log(1 + e^x) = \max(x, 0) + \log(1 + e^{-|x|})`: never overflows."""
    return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))


def _reduce(loss: np.ndarray, reduction: str) -> np.ndarray:
    if reduction == "none":
        return loss
    return np.asarray(loss.mean() if reduction == "mean" else loss.sum())


def binary_cross_entropy_with_logits(logits: np.ndarray, target: np.ndarray, reduction: LossReduction = "mean",
                                     pos_weight: np.ndarray | None = None) -> np.ndarray:
    r"""Binary cross-entropy on logits, as ``torch.nn.functional.binary_cross_entropy_with_logits``.

    With :math:`w` the ``pos_weight`` (broadcast along the last axis; 1 when absent),

    .. math::
        \ell = -\big[w\, y \log\sigma(x) + (1 - y)\log(1 - \sigma(x))\big]
             = w\, y\, \mathrm{softplus}(-x) + (1 - y)\, \mathrm{softplus}(x),

    using :math:`\log\sigma(x) = -\mathrm{softplus}(-x)` and :math:`\log(1 - \sigma(x)) = -\mathrm{softplus}(x)`.
    Softplus is evaluated without overflow, so logits of :math:`\pm 10^4` give finite losses where
    ``log(sigmoid(x))`` gives :math:`-\infty`.
    """
    _check_loss_reduction(reduction)
    logits = as_float(logits)
    target = np.asarray(target).astype(logits.dtype, copy=False)
    w = 1 if pos_weight is None else np.asarray(pos_weight).astype(logits.dtype, copy=False)
    loss = w * target * _softplus(-logits) + (1 - target) * _softplus(logits)
    return _reduce(loss.astype(logits.dtype, copy=False), reduction)


def binary_cross_entropy_with_logits_backward(logits: np.ndarray, target: np.ndarray,
                                              reduction: LossReduction = "mean",
                                              pos_weight: np.ndarray | None = None,
                                              grad_out: float | np.ndarray = 1.0) -> np.ndarray:
    r"""Gradient of :func:`binary_cross_entropy_with_logits` with respect to the logits.

    :math:`\frac{d}{dx}\mathrm{softplus}(x) = \sigma(x)` and :math:`\frac{d}{dx}\mathrm{softplus}(-x) = -\sigma(-x)
    = \sigma(x) - 1`, so

    .. math::
        \frac{\partial \ell}{\partial x} = w y (\sigma(x) - 1) + (1 - y)\sigma(x)
            = \sigma(x)\,(w y + 1 - y) - w y,

    which is :math:`\sigma(x) - y` without ``pos_weight``. ``"mean"`` divides by the number of elements;
    ``grad_out`` (a scalar, or elementwise for ``"none"``) scales the result.
    """
    _check_loss_reduction(reduction)
    logits = as_float(logits)
    target = np.asarray(target).astype(logits.dtype, copy=False)
    w = 1 if pos_weight is None else np.asarray(pos_weight).astype(logits.dtype, copy=False)
    grad = sigmoid(logits) * (w * target + 1 - target) - w * target
    scale = np.asarray(grad_out) / logits.size if reduction == "mean" else np.asarray(grad_out)
    return (scale * grad).astype(logits.dtype, copy=False)
