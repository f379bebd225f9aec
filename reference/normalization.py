r"""Layer and batch normalization, forward and backward, with torch's semantics.

Both normalize :math:`\hat x = (x - \mu) / \sqrt{\sigma^2 + \epsilon}` with the *biased* variance
:math:`\sigma^2 = \frac1M \sum (x - \mu)^2` over :math:`M` elements, then apply
:math:`y = \gamma \hat x + \beta`. Layer norm takes the statistics over the trailing
``normalized_shape`` dimensions of each sample; batch norm over every dimension but the channels
(dimension 1), per channel.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ._arrays import as_float


def _wide(a: np.ndarray) -> np.ndarray:
    """float16 computes in float32 (as torch does on the CPU): its squares and sums overflow at 65504."""
    return a.astype(np.float32) if a.dtype.itemsize < 4 else a


def _shape(normalized_shape: int | Sequence[int]) -> tuple[int, ...]:
    if isinstance(normalized_shape, int | np.integer):
        return (int(normalized_shape),)
    return tuple(int(s) for s in normalized_shape)


def _layer_axes(x: np.ndarray, normalized_shape: int | Sequence[int]) -> tuple[int, ...]:
    shape = _shape(normalized_shape)
    if not shape or x.shape[x.ndim - len(shape):] != shape or len(shape) > x.ndim:
        raise ValueError(f"normalized_shape {shape} does not end the input shape {x.shape}")
    return tuple(range(x.ndim - len(shape), x.ndim))


def _normalize(x: np.ndarray, axes: tuple[int, ...], eps: float) -> tuple[np.ndarray, np.ndarray]:
    """(x_hat, 1/sqrt(var + eps)) with the biased variance over ``axes``, kept broadcastable."""
    mean = x.mean(axis=axes, keepdims=True)
    centered = x - mean
    rstd = 1 / np.sqrt((centered * centered).mean(axis=axes, keepdims=True) + x.dtype.type(eps))
    return centered * rstd, rstd


def layer_norm(x: np.ndarray, normalized_shape: int | Sequence[int], weight: np.ndarray | None = None,
               bias: np.ndarray | None = None, eps: float = 1e-5) -> np.ndarray:
    r"""``torch.nn.functional.layer_norm``: normalize over the trailing ``normalized_shape`` dimensions.

    ``weight`` and ``bias`` (shape ``normalized_shape``) scale and shift element-wise.
    """
    x = as_float(x)
    x_hat, _ = _normalize(_wide(x), _layer_axes(x, normalized_shape), eps)
    out = x_hat if weight is None else x_hat * weight
    return (out if bias is None else out + bias).astype(x.dtype, copy=False)


def _normalized_backward(g_hat: np.ndarray, x_hat: np.ndarray, rstd: np.ndarray,
                         axes: tuple[int, ...]) -> np.ndarray:
    """``rstd * (g - mean(g) - x_hat * mean(g * x_hat))`` over ``axes``: see :func:`layer_norm_backward`."""
    mean_g = g_hat.mean(axis=axes, keepdims=True)
    mean_gx = (g_hat * x_hat).mean(axis=axes, keepdims=True)
    return rstd * (g_hat - mean_g - x_hat * mean_gx)


def layer_norm_backward(
    grad_out: np.ndarray, x: np.ndarray, normalized_shape: int | Sequence[int], weight: np.ndarray | None = None,
    bias: np.ndarray | None = None, eps: float = 1e-5,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    r"""Gradients of a loss :math:`L` through :func:`layer_norm`.

    Within one normalized group of :math:`M` elements, :math:`\hat x_i = (x_i - \mu) r` with
    :math:`r = (\sigma^2 + \epsilon)^{-1/2}`, :math:`\partial\mu/\partial x_j = 1/M` and
    :math:`\partial\sigma^2/\partial x_j = \frac2M (x_j - \mu)` (the :math:`\mu`-term sums to zero), so

    .. math::
        \frac{\partial \hat x_i}{\partial x_j} = r\Big(\delta_{ij} - \frac1M - \frac1M \hat x_i \hat x_j\Big).

    With :math:`\hat g_i = \gamma_i \, \partial L/\partial y_i` (the upstream gradient through the scale),

    .. math::
        \frac{\partial L}{\partial x_j} = \sum_i \hat g_i \frac{\partial \hat x_i}{\partial x_j}
            = r\Big(\hat g_j - \overline{\hat g} - \hat x_j\,\overline{\hat g \hat x}\Big),

    where the bars are means over the group. Dropping the two mean terms (treating :math:`\mu` and
    :math:`\sigma` as constants) is the classic mistake. The affine parameters are shared by every
    group, so their gradients sum over the leading dimensions:

    .. math::
        \frac{\partial L}{\partial \gamma} = \sum_{\text{groups}} \frac{\partial L}{\partial y}\,\hat x,
        \qquad \frac{\partial L}{\partial \beta} = \sum_{\text{groups}} \frac{\partial L}{\partial y}.

    Returns ``(grad_x, grad_weight, grad_bias)``; the last two are None for an absent weight or bias.
    """
    dtype = as_float(x).dtype
    x, grad_out = _wide(as_float(x)), _wide(as_float(grad_out))
    axes = _layer_axes(x, normalized_shape)
    x_hat, rstd = _normalize(x, axes, eps)
    g_hat = grad_out if weight is None else grad_out * weight
    grad_x = _normalized_backward(g_hat, x_hat, rstd, axes).astype(dtype, copy=False)
    batch = tuple(range(x.ndim - len(axes)))
    grad_weight = None if weight is None else (grad_out * x_hat).sum(axis=batch).astype(dtype, copy=False)
    grad_bias = None if bias is None else grad_out.sum(axis=batch).astype(dtype, copy=False)
    return grad_x, grad_weight, grad_bias


def _channel_axes(x: np.ndarray) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The reduced axes (all but 1) and the broadcast shape of a per-channel vector."""
    if x.ndim < 2:
        raise ValueError(f"batch norm needs an input of shape (N, C, ...), got {x.shape}")
    return (0, *range(2, x.ndim)), (1, x.shape[1]) + (1,) * (x.ndim - 2)


def batch_norm(x: np.ndarray, running_mean: np.ndarray | None, running_var: np.ndarray | None,
               weight: np.ndarray | None = None, bias: np.ndarray | None = None, training: bool = False,
               momentum: float = 0.1, eps: float = 1e-5) -> np.ndarray:
    r"""``torch.nn.functional.batch_norm`` for ``(N, C)`` or ``(N, C, H, W)`` (any ``(N, C, ...)``) inputs.

    Training normalizes with the batch's statistics (biased variance) and, given the running
    buffers, updates them in place:
    :math:`\hat\mu \leftarrow (1 - m)\hat\mu + m\mu`, :math:`\hat\sigma^2 \leftarrow (1 - m)\hat\sigma^2 +
    m \frac{n}{n - 1}\sigma^2` with :math:`n` elements per channel: the running estimate uses the
    *unbiased* variance, the normalization the biased one. Eval mode normalizes with the running buffers.
    """
    dtype = as_float(x).dtype
    x = _wide(as_float(x))
    axes, vec = _channel_axes(x)
    if training:
        n = x.size // x.shape[1]
        if n < 2:
            raise ValueError(f"expected more than 1 value per channel when training, got input of shape {x.shape}")
        mean = x.mean(axis=axes, keepdims=True)
        centered = x - mean
        var = (centered * centered).mean(axis=axes, keepdims=True)
        x_hat = centered / np.sqrt(var + x.dtype.type(eps))
        if running_mean is not None:
            running_mean *= 1 - momentum
            running_mean += (momentum * mean.reshape(-1)).astype(running_mean.dtype)
        if running_var is not None:
            running_var *= 1 - momentum
            running_var += (momentum * var.reshape(-1) * (n / (n - 1))).astype(running_var.dtype)
    else:
        if running_mean is None or running_var is None:
            raise ValueError("eval mode (training=False) needs running_mean and running_var")
        x_hat = (x - running_mean.reshape(vec)) / np.sqrt(running_var.reshape(vec) + eps)
    out = x_hat if weight is None else x_hat * weight.reshape(vec)
    return (out if bias is None else out + bias.reshape(vec)).astype(dtype, copy=False)


def batch_norm_backward(
    grad_out: np.ndarray, x: np.ndarray, weight: np.ndarray | None = None, training: bool = True,
    eps: float = 1e-5, running_mean: np.ndarray | None = None, running_var: np.ndarray | None = None,
    has_bias: bool = True,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    r"""Gradients of a loss :math:`L` through :func:`batch_norm`.

    Training: per channel the statistics come from the batch's :math:`n` elements, exactly as layer
    norm's come from a group (see :func:`layer_norm_backward`), so with
    :math:`\hat g = \gamma_c\, \partial L/\partial y`

    .. math::
        \frac{\partial L}{\partial x} = r_c\Big(\hat g - \overline{\hat g} - \hat x\,\overline{\hat g \hat x}\Big),

    the means taken over the batch and spatial dimensions of the channel (the running buffers
    do not enter the output, so they add nothing). Eval: :math:`\mu` and :math:`\sigma^2` are the
    running buffers, constants, and :math:`\partial L/\partial x = \hat g\,(\hat\sigma_c^2 + \epsilon)^{-1/2}`.
    In both modes

    .. math::
        \frac{\partial L}{\partial \gamma_c} = \sum_{n,h,w} \frac{\partial L}{\partial y}\,\hat x,
        \qquad \frac{\partial L}{\partial \beta_c} = \sum_{n,h,w} \frac{\partial L}{\partial y}.

    Returns ``(grad_x, grad_weight, grad_bias)``: ``grad_weight`` is None without ``weight``,
    ``grad_bias`` None when ``has_bias`` is false.
    """
    dtype = as_float(x).dtype
    x, grad_out = _wide(as_float(x)), _wide(as_float(grad_out))
    axes, vec = _channel_axes(x)
    g_hat = grad_out if weight is None else grad_out * weight.reshape(vec)
    if training:
        x_hat, rstd = _normalize(x, axes, eps)
        grad_x = _normalized_backward(g_hat, x_hat, rstd, axes)
    else:
        if running_mean is None or running_var is None:
            raise ValueError("eval mode (training=False) needs running_mean and running_var")
        rstd = 1 / np.sqrt(running_var.reshape(vec) + eps)
        x_hat = (x - running_mean.reshape(vec)) * rstd
        grad_x = g_hat * rstd
    grad_weight = None if weight is None else (grad_out * x_hat).sum(axis=axes).astype(dtype, copy=False)
    grad_bias = grad_out.sum(axis=axes).astype(dtype, copy=False) if has_bias else None
    return grad_x.astype(dtype, copy=False), grad_weight, grad_bias
