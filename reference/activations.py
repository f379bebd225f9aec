r"""The logistic sigmoid and its backward pass."""

from __future__ import annotations

import numpy as np

from ._arrays import as_float


def sigmoid(x: np.ndarray) -> np.ndarray:
    r"""Numerically stable logistic sigmoid :math:`\sigma(x) = 1 / (1 + e^{-x})`.

    The naive formula overflows ``exp(-x)`` for large negative ``x``. Writing
    :math:`z = e^{-|x|} \in (0, 1]`, which never overflows,

    .. math::
        \sigma(x) = \frac{1}{1 + z} \quad (x \ge 0), \qquad
        \sigma(x) = \frac{z}{1 + z} \quad (x < 0),

    so ``sigmoid(-1000) == 0`` and ``sigmoid(1000) == 1`` without a warning. A floating
    input keeps its dtype; an integer input is computed in float64.
    """
    x = as_float(x)
    z = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + z), z / (1 + z)).astype(x.dtype, copy=False)


def sigmoid_backward(grad_out: np.ndarray, out: np.ndarray) -> np.ndarray:
    r"""Gradient of a loss :math:`L` with respect to the sigmoid's input.

    With :math:`y = \sigma(x)`, differentiating :math:`y = (1 + e^{-x})^{-1}` gives

    .. math::
        \frac{dy}{dx} = \frac{e^{-x}}{(1 + e^{-x})^2} = \sigma(x)\,(1 - \sigma(x)) = y (1 - y),

    and the chain rule, elementwise, gives

    .. math::
        \frac{\partial L}{\partial x} = \frac{\partial L}{\partial y} \cdot y (1 - y).

    It takes the *output* ``out = sigmoid(x)``, not ``x``: evaluating the derivative at
    the pre-activation (``x * (1 - x)``) is the classic bug.
    """
    out = as_float(out)
    return grad_out * out * (1 - out)
