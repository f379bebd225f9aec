r"""The affine layer :math:`y = x W^\top + b` in torch's weight layout."""

from __future__ import annotations

import numpy as np

from ._arrays import as_float


def linear(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
    r"""Compute ``x @ weight.T + bias``.

    ``x`` has shape ``(..., in_features)``, ``weight`` ``(out_features, in_features)``
    (torch's ``nn.Linear`` layout) and ``bias`` ``(out_features,)``; the result has shape
    ``(..., out_features)``.
    """
    x, weight = as_float(x), as_float(weight)
    if weight.ndim != 2 or x.shape[-1:] != weight.shape[1:]:
        raise ValueError(f"x of shape {x.shape} does not fit weight of shape {weight.shape}")
    out = x @ weight.T
    return out if bias is None else out + as_float(bias)


def linear_backward(
    grad_out: np.ndarray, x: np.ndarray, weight: np.ndarray, has_bias: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    r"""Gradients of a loss :math:`L` through ``y = x @ weight.T + bias``.

    Flatten the leading dimensions of ``x`` into a batch of :math:`B` rows. Element-wise,
    :math:`y_{bo} = \sum_i x_{bi} W_{oi} + b_o`, so

    .. math::
        \frac{\partial L}{\partial x_{bi}} = \sum_o \frac{\partial L}{\partial y_{bo}} W_{oi}
            \;\Rightarrow\; G_x = G_y W,

    .. math::
        \frac{\partial L}{\partial W_{oi}} = \sum_b \frac{\partial L}{\partial y_{bo}} x_{bi}
            \;\Rightarrow\; G_W = G_y^\top X \quad (\text{shape of } W\text{, not } X^\top G_y),

    .. math::
        \frac{\partial L}{\partial b_o} = \sum_b \frac{\partial L}{\partial y_{bo}}
            \quad (\text{a sum over the batch, not a mean}).

    Returns ``(grad_x, grad_weight, grad_bias)``; ``grad_bias`` is None when ``has_bias``
    is false.
    """
    grad_out, x, weight = as_float(grad_out), as_float(x), as_float(weight)
    grad_rows = grad_out.reshape(-1, weight.shape[0])
    x_rows = x.reshape(-1, weight.shape[1])
    grad_x = (grad_rows @ weight).reshape(x.shape)
    grad_weight = grad_rows.T @ x_rows
    grad_bias = grad_rows.sum(axis=0) if has_bias else None
    return grad_x, grad_weight, grad_bias
