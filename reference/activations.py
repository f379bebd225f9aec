r"""Activations (sigmoid, tanh, ReLU, leaky ReLU, GELU, softmax, log-softmax) and their backward passes."""

from __future__ import annotations

import math

import numpy as np

from ._arrays import as_float, shift_by_max


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


# --- tanh, relu, leaky_relu, gelu, softmax, log_softmax ---

_SQRT_HALF = 0.7071067811865476  # 1 / sqrt(2)
_INV_SQRT_2PI = 0.3989422804014327  # 1 / sqrt(2 pi)
_GELU_TANH_K = 0.7978845608028654  # sqrt(2 / pi)
_GELU_TANH_C = 0.044715
_GELU_CLIP = 100.0
"""Beyond |x| = 100 the Gaussian density and tanh's slope are exactly 0 in float64: clipping there
keeps x**2 and x**3 from overflowing without changing a single result."""

_erfc = np.frompyfunc(math.erfc, 1, 1)


def _erfc64(x: np.ndarray) -> np.ndarray:
    """``erfc`` elementwise in float64 through :func:`math.erfc` (correct to an ulp or two, no SciPy)."""
    return np.asarray(_erfc(np.asarray(x, dtype=np.float64)), dtype=np.float64)


def tanh(x: np.ndarray) -> np.ndarray:
    r""":math:`\tanh(x)`, stable everywhere (it saturates to :math:`\pm 1`)."""
    return np.tanh(as_float(x))


def tanh_backward(grad_out: np.ndarray, out: np.ndarray) -> np.ndarray:
    r"""Gradient through :math:`y = \tanh(x)`, from the output.

    .. math::
        \frac{dy}{dx} = 1 - \tanh^2(x) = 1 - y^2
        \quad\Rightarrow\quad
        \frac{\partial L}{\partial x} = \frac{\partial L}{\partial y}\,(1 - y^2).
    """
    out = as_float(out)
    return (grad_out * (1 - out * out)).astype(out.dtype, copy=False)


def relu(x: np.ndarray) -> np.ndarray:
    r""":math:`\max(x, 0)`; keeps ``x``'s dtype and, as torch does, propagates NaN."""
    return np.maximum(as_float(x), 0)


def relu_backward(grad_out: np.ndarray, x: np.ndarray) -> np.ndarray:
    r"""Gradient through :math:`y = \max(x, 0)`.

    .. math::
        \frac{dy}{dx} = \begin{cases} 1 & x > 0 \\ 0 & x \le 0 \end{cases}

    At the kink :math:`x = 0` the one-sided derivatives are 0 and 1; torch takes 0, and so do we.
    As torch does, the gradient passes where ``x`` is NaN (only :math:`x \le 0` blocks it).
    """
    x = as_float(x)
    passes = ~(x <= 0)
    with np.errstate(invalid="ignore"):  # 0 * Inf: set to 0 below
        grad = np.multiply(grad_out, passes, dtype=np.result_type(grad_out, x))  # 8x faster than np.where
    if not np.isfinite(np.sum(grad)):  # a blocked NaN or Inf must give 0, not NaN (0 * Inf)
        grad[~passes] = 0
    return grad.astype(x.dtype, copy=False)


def leaky_relu(x: np.ndarray, negative_slope: float = 0.01) -> np.ndarray:
    r""":math:`x` for :math:`x > 0`, else :math:`a x` with :math:`a` the ``negative_slope``."""
    x = as_float(x)
    return np.where(x > 0, x, x * negative_slope).astype(x.dtype, copy=False)


def leaky_relu_backward(grad_out: np.ndarray, x: np.ndarray, negative_slope: float = 0.01) -> np.ndarray:
    r"""Gradient through the leaky ReLU.

    .. math::
        \frac{dy}{dx} = \begin{cases} 1 & x > 0 \\ a & x \le 0 \end{cases}

    At the kink :math:`x = 0` torch takes the slope :math:`a` (its test is ``x > 0``), and so do we.
    """
    x = as_float(x)
    return np.where(x > 0, grad_out, grad_out * negative_slope).astype(x.dtype, copy=False)


def _check_approximate(approximate: str) -> None:
    if approximate not in ("none", "tanh"):
        raise ValueError(f"approximate must be 'none' or 'tanh', got {approximate!r}")


def _gelu_tanh_parts(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Clipped ``x``, ``s = sigmoid(2u)`` and ``1 - s = sigmoid(-2u)`` for ``u = k (x + c x^3)``.

    Computed in float32 at least: the cube of 100 overflows float16.
    """
    xc = np.clip(x, -_GELU_CLIP, _GELU_CLIP).astype(np.promote_types(x.dtype, np.float32))
    two_u = 2 * _GELU_TANH_K * (xc + _GELU_TANH_C * xc * xc * xc)
    return xc, sigmoid(two_u), sigmoid(-two_u)


def gelu(x: np.ndarray, approximate: str = "none") -> np.ndarray:
    r"""Gaussian error linear unit, exact or with torch's tanh approximation.

    Exact: :math:`x\,\Phi(x)` with :math:`\Phi(x) = \tfrac12 \operatorname{erfc}(-x/\sqrt2)`; the
    ``erfc`` form keeps full relative precision for negative :math:`x` where :math:`1 + \operatorname{erf}`
    would cancel. Tanh: :math:`\tfrac12 x (1 + \tanh u)` with :math:`u = \sqrt{2/\pi}(x + 0.044715 x^3)`,
    written as :math:`x\,\sigma(2u)` since :math:`1 + \tanh u = 2\sigma(2u)`.
    """
    _check_approximate(approximate)
    x = as_float(x)
    if approximate == "tanh":
        _, s, _ = _gelu_tanh_parts(x)
        return (x * s).astype(x.dtype, copy=False)
    x64 = x.astype(np.float64)
    return (x64 * 0.5 * _erfc64(-x64 * _SQRT_HALF)).astype(x.dtype, copy=False)


def gelu_backward(grad_out: np.ndarray, x: np.ndarray, approximate: str = "none") -> np.ndarray:
    r"""Gradient through the GELU.

    Exact: with :math:`\varphi(x) = e^{-x^2/2} / \sqrt{2\pi}` the Gaussian density, the product rule gives

    .. math::
        \frac{d}{dx}\, x\Phi(x) = \Phi(x) + x\,\varphi(x).

    Tanh: with :math:`s = \sigma(2u)`, :math:`1 + \tanh u = 2s` and :math:`1 - \tanh^2 u = 4 s (1 - s)`, so

    .. math::
        \frac{d}{dx}\, \tfrac12 x (1 + \tanh u)
            = \tfrac12 (1 + \tanh u) + \tfrac12 x (1 - \tanh^2 u)\, u'
            = s + 2 x\, s (1 - s)\, \sqrt{2/\pi}\,(1 + 3 \cdot 0.044715\, x^2).

    Both are multiplied elementwise by ``grad_out``. For :math:`|x| > 100` the second terms are exactly 0
    in float64, so ``x`` is clipped there and nothing overflows.
    """
    _check_approximate(approximate)
    x = as_float(x)
    if approximate == "tanh":
        xc, s, one_minus_s = _gelu_tanh_parts(x)
        slope = s + 2 * xc * s * one_minus_s * _GELU_TANH_K * (1 + 3 * _GELU_TANH_C * xc * xc)
        return (grad_out * slope).astype(x.dtype, copy=False)
    x64 = np.clip(x.astype(np.float64), -_GELU_CLIP, _GELU_CLIP)
    slope = 0.5 * _erfc64(-x64 * _SQRT_HALF) + x64 * _INV_SQRT_2PI * np.exp(-0.5 * x64 * x64)
    return (grad_out * slope).astype(x.dtype, copy=False)


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    r""":math:`\mathrm{softmax}(x)_i = e^{x_i - m} / \sum_j e^{x_j - m}` along ``axis``.

    :math:`m` is the maximum *of each slice along* ``axis``: every exponent is at most 0 (no overflow)
    and the largest term of each sum is 1 (no 0/0). A maximum over the whole array would underflow
    slices far below it to 0/0.
    """
    e = np.exp(shift_by_max(x, axis))
    return e / e.sum(axis=axis, keepdims=True)


def softmax_backward(grad_out: np.ndarray, out: np.ndarray, axis: int = -1) -> np.ndarray:
    r"""Gradient through :math:`y = \mathrm{softmax}(x)`, from the output.

    The Jacobian is :math:`\partial y_i / \partial x_j = y_i(\delta_{ij} - y_j)`: it is full, not
    diagonal. Its transpose applied to :math:`g = \partial L / \partial y` is

    .. math::
        \frac{\partial L}{\partial x_j} = \sum_i g_i\, y_i (\delta_{ij} - y_j)
            = y_j \Big(g_j - \sum_i g_i y_i\Big),

    one dot product per slice along ``axis``, never the :math:`n \times n` matrix.
    """
    out = as_float(out)
    return (out * (grad_out - np.sum(grad_out * out, axis=axis, keepdims=True))).astype(out.dtype, copy=False)


def log_softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    r""":math:`\log \mathrm{softmax}(x)_i = (x_i - m) - \log \sum_j e^{x_j - m}`, :math:`m` the slice maximum.

    Computed directly, never as ``log(softmax(x))``, which is :math:`-\infty` where softmax underflows.
    """
    shifted = shift_by_max(x, axis)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def log_softmax_backward(grad_out: np.ndarray, out: np.ndarray, axis: int = -1) -> np.ndarray:
    r"""Gradient through :math:`y = \log\mathrm{softmax}(x)`, from the output.

    :math:`y_i = x_i - \log\sum_k e^{x_k}`, so :math:`\partial y_i / \partial x_j = \delta_{ij} - p_j`
    with :math:`p = \mathrm{softmax}(x) = e^{y}`, and

    .. math::
        \frac{\partial L}{\partial x_j} = \sum_i g_i (\delta_{ij} - p_j) = g_j - e^{y_j} \sum_i g_i.
    """
    out = as_float(out)
    return (grad_out - np.exp(out) * np.sum(grad_out, axis=axis, keepdims=True)).astype(out.dtype, copy=False)
