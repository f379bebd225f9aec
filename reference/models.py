r"""Composed models people learn backpropagation on, derived end to end.

Each function returns ``(loss, grads)`` with one gradient per argument, the form
:func:`gradcheck_lab.check_gradients` takes.
"""

from __future__ import annotations

import numpy as np

from ._arrays import as_float, sum_to_shape
from .activations import relu, relu_backward, sigmoid, sigmoid_backward
from .conv import conv2d, conv2d_backward, max_pool2d, max_pool2d_backward
from .linear import linear, linear_backward
from .losses import cross_entropy, cross_entropy_backward, mse, mse_backward


def linear_regression(
    w: np.ndarray, b: np.ndarray, x: np.ndarray, y: np.ndarray
) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    r"""Linear regression :math:`\hat y = x w + b` with the mean squared error.

    ``x`` is ``(n, d)``; ``w`` is ``(d,)`` (or ``(d, k)``); ``b`` broadcasts to
    :math:`\hat y` (a scalar, ``(1,)`` or ``(k,)``); ``y`` has the shape of :math:`\hat y`.
    With :math:`r = \hat y - y` over :math:`N` elements and :math:`L = \frac1N \sum r^2`,
    :math:`g = \partial L / \partial \hat y = \frac{2}{N} r`, and the chain rule gives

    .. math::
        \frac{\partial L}{\partial w} = x^\top g, \quad
        \frac{\partial L}{\partial b} = \sum_{\text{broadcast}} g, \quad
        \frac{\partial L}{\partial x} = g\, w^\top, \quad
        \frac{\partial L}{\partial y} = -g.

    The bias gradient is the *sum* of :math:`g` over the samples it was broadcast to;
    the mean already sits in :math:`g` as the :math:`1/N`.
    """
    w, b, x, y = (as_float(a) for a in (w, b, x, y))
    pred = x @ w + b
    loss = mse(pred, y)
    g = mse_backward(pred, y)
    grad_w = x.T @ g
    grad_b = sum_to_shape(g, b.shape)
    grad_x = np.multiply.outer(g, w) if w.ndim == 1 else g @ w.T
    return loss, (grad_w, grad_b, grad_x, -g)


def sigmoid_mse(
    weight: np.ndarray, x: np.ndarray, y: np.ndarray
) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    r"""Linear (no bias) -> sigmoid -> MSE: :math:`L = \mathrm{mean}((\sigma(x W^\top) - y)^2)`.

    Forward: :math:`z = x W^\top`, :math:`p = \sigma(z)`, :math:`L = \frac1N \sum (p - y)^2`.
    Backward, one link at a time:

    .. math::
        g_p = \frac{2}{N}(p - y), \qquad
        g_z = g_p \odot p \odot (1 - p), \qquad
        \frac{\partial L}{\partial W} = g_z^\top x, \qquad
        \frac{\partial L}{\partial x} = g_z W, \qquad
        \frac{\partial L}{\partial y} = -g_p.

    ``x`` is ``(..., in_features)``, ``weight`` ``(out_features, in_features)`` and ``y``
    ``(..., out_features)``.
    """
    weight, x, y = (as_float(a) for a in (weight, x, y))
    p = sigmoid(linear(x, weight))
    loss = mse(p, y)
    grad_p = mse_backward(p, y)
    grad_z = sigmoid_backward(grad_p, p)
    grad_x, grad_weight, _ = linear_backward(grad_z, x, weight, has_bias=False)
    return loss, (grad_weight, grad_x, -grad_p)


def mlp_classifier(
    w1: np.ndarray, b1: np.ndarray, w2: np.ndarray, b2: np.ndarray, x: np.ndarray, target: np.ndarray
) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    r"""Linear -> ReLU -> Linear -> cross-entropy (class indices, mean over the batch).

    ``x`` is ``(N, D)``, ``w1`` ``(H, D)``, ``b1`` ``(H,)``, ``w2`` ``(C, H)``, ``b2`` ``(C,)``, ``target``
    ``(N,)`` integer classes. Forward: :math:`h = x W_1^\top + b_1`, :math:`a = \max(h, 0)`,
    :math:`z = a W_2^\top + b_2`, :math:`L = \frac1N \sum_n -\log \mathrm{softmax}(z_n)_{t_n}`. Backward:

    .. math::
        g_z = \tfrac1N (\mathrm{softmax}(z) - \mathrm{onehot}(t)), \quad
        G_{W_2} = g_z^\top a, \quad g_{b_2} = \textstyle\sum_n g_z, \quad g_a = g_z W_2,

    .. math::
        g_h = g_a \odot [h > 0], \quad G_{W_1} = g_h^\top x, \quad g_{b_1} = \textstyle\sum_n g_h,
        \quad g_x = g_h W_1.

    Returns ``(loss, (grad_w1, grad_b1, grad_w2, grad_b2, grad_x))``: no gradient for the integer target.
    """
    w1, b1, w2, b2, x = (as_float(a) for a in (w1, b1, w2, b2, x))
    h = linear(x, w1, b1)
    a = relu(h)
    z = linear(a, w2, b2)
    loss = cross_entropy(z, target)
    grad_z = cross_entropy_backward(z, target)
    grad_a, grad_w2, _ = linear_backward(grad_z, a, w2, has_bias=False)
    grad_h = relu_backward(grad_a, h)
    grad_x, grad_w1, _ = linear_backward(grad_h, x, w1, has_bias=False)
    return loss, (grad_w1, grad_h.sum(axis=0), grad_w2, grad_z.sum(axis=0), grad_x)


def conv_classifier(
    conv_weight: np.ndarray, conv_bias: np.ndarray, fc_weight: np.ndarray, fc_bias: np.ndarray, x: np.ndarray,
    target: np.ndarray,
) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    r"""3x3 conv (padding 1) -> ReLU -> 2x2 max pool -> flatten -> Linear -> cross-entropy (class indices, mean).

    ``x`` is ``(N, C, H, W)`` with even ``H`` and ``W``, ``conv_weight`` ``(F, C, 3, 3)``, ``conv_bias``
    ``(F,)``, ``fc_weight`` ``(K, F H W / 4)``, ``fc_bias`` ``(K,)``, ``target`` ``(N,)`` integer classes.
    Forward: :math:`h = W_c \star x + b_c`, :math:`a = \max(h, 0)`, :math:`p = \mathrm{maxpool}_2(a)`,
    :math:`f = \mathrm{flatten}(p)`, :math:`z = f W_f^\top + b_f`, :math:`L = \mathrm{CE}(z, t)`. Backward,
    one link at a time:

    .. math::
        g_z = \tfrac1N(\mathrm{softmax}(z) - \mathrm{onehot}(t)), \quad
        G_{W_f} = g_z^\top f, \quad g_{b_f} = \textstyle\sum_n g_z, \quad g_p = \mathrm{unflatten}(g_z W_f),

    .. math::
        g_a = \text{each window's } g_p \text{ routed to its (first) maximum}, \quad
        g_h = g_a \odot [h > 0], \quad (g_x, G_{W_c}, g_{b_c}) = \mathrm{conv2d\_backward}(g_h).

    Returns ``(loss, (grad_conv_weight, grad_conv_bias, grad_fc_weight, grad_fc_bias, grad_x))``.
    """
    conv_weight, conv_bias, fc_weight, fc_bias, x = (as_float(a) for a in (conv_weight, conv_bias, fc_weight,
                                                                          fc_bias, x))
    h = conv2d(x, conv_weight, conv_bias, padding=1)
    a = relu(h)
    p = max_pool2d(a, 2)
    f = p.reshape(p.shape[0], -1)
    z = linear(f, fc_weight, fc_bias)
    loss = cross_entropy(z, target)
    grad_z = cross_entropy_backward(z, target)
    grad_f, grad_fc_weight, _ = linear_backward(grad_z, f, fc_weight, has_bias=False)
    grad_a = max_pool2d_backward(grad_f.reshape(p.shape), a, 2)
    grad_h = relu_backward(grad_a, h)
    grad_x, grad_conv_weight, grad_conv_bias = conv2d_backward(grad_h, x, conv_weight, has_bias=True, padding=1)
    assert grad_conv_bias is not None
    return loss, (grad_conv_weight, grad_conv_bias, grad_fc_weight, grad_z.sum(axis=0), grad_x)
