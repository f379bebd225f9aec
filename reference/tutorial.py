r"""The small worked examples tutorials teach autograd with, derived by hand.

Each returns ``(value, grads)`` with one gradient per argument.
"""

from __future__ import annotations

import numpy as np

from ._arrays import as_float


def mean_of_squares(x: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray]]:
    r""":math:`f(x) = \frac1N \sum_i x_i^2`, so :math:`\partial f / \partial x_i = 2 x_i / N`."""
    x = as_float(x)
    return np.asarray(np.mean(x**2)), (2 * x / x.size,)


def sum_of_two_squares(x1: np.ndarray, x2: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    r""":math:`f = \sum (x_1^2 + x_2^2)` over same-shaped arrays.

    :math:`\nabla_{x_1} f = 2 x_1` and :math:`\nabla_{x_2} f = 2 x_2`.
    """
    x1, x2 = as_float(x1), as_float(x2)
    return np.asarray(np.sum(x1**2 + x2**2)), (2 * x1, 2 * x2)


def square_plus_twice(x1: np.ndarray, x2: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    r""":math:`f = \sum (x_1^2 + 2 x_2)`: :math:`\nabla_{x_1} f = 2 x_1` and :math:`\nabla_{x_2} f = 2` everywhere."""
    x1, x2 = as_float(x1), as_float(x2)
    return np.asarray(np.sum(x1**2 + 2 * x2)), (2 * x1, np.full_like(x2, 2.0))


def residual_chain(
    x: np.ndarray, w: np.ndarray, y: np.ndarray
) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    r"""The residual chain :math:`L = \sum (x w - y)^2` over same-shaped arrays.

    With :math:`r = x w - y` and :math:`L = \sum r^2`, :math:`\partial L / \partial r = 2 r`, and
    :math:`\partial r / \partial x = w`, :math:`\partial r / \partial w = x`,
    :math:`\partial r / \partial y = -1`, so

    .. math::
        \nabla_x L = 2 r w, \qquad \nabla_w L = 2 r x, \qquad \nabla_y L = -2 r.
    """
    x, w, y = as_float(x), as_float(w), as_float(y)
    r = x * w - y
    return np.asarray(np.sum(r**2)), (2 * r * w, 2 * r * x, -2 * r)
