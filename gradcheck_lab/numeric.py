r"""Gradient oracles that need no autograd: central differences and the Taylor remainder test.

Both work along random directions :math:`v` (one entry per element of every input, unit
norm overall), so their cost is a handful of function calls whatever the input size.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from gradcheck_lab.tolerances import FD_RTOL, FD_SAFETY

ValueFn = Callable[..., float]
_EPS = float(np.finfo(np.float64).eps)


def random_directions(shapes: Sequence[tuple[int, ...]], count: int, seed: int = 0) -> list[list[np.ndarray]]:
    """``count`` random unit directions over inputs of ``shapes``: random signs, drawn as bits (cheap at any size)."""
    rng = np.random.default_rng(seed)
    total = sum(math.prod(s) for s in shapes)
    directions = []
    for _ in range(count):
        signs = np.unpackbits(rng.integers(0, 256, size=(total + 7) // 8, dtype=np.uint8))[:total]
        flat = (signs.astype(np.float64) * 2 - 1) / math.sqrt(total)
        parts, start = [], 0
        for shape in shapes:
            size = math.prod(shape)
            parts.append(flat[start:start + size].reshape(shape))
            start += size
        directions.append(parts)
    return directions


def _along(inputs: Sequence[np.ndarray], direction: Sequence[np.ndarray], h: float) -> list[np.ndarray]:
    return [x + h * v for x, v in zip(inputs, direction, strict=True)]


def _step_size(inputs: Sequence[np.ndarray]) -> float:
    scale = max(1.0, max(float(np.max(np.abs(x), initial=0.0)) for x in inputs))
    return _EPS ** (1 / 3) * scale * 8


def dot(grads: Sequence[np.ndarray], direction: Sequence[np.ndarray]) -> float:
    """The directional derivative :math:`\\sum_k \\langle g_k, v_k \\rangle` an analytic gradient predicts."""
    return float(sum(np.vdot(g, v) for g, v in zip(grads, direction, strict=True)))


@dataclass(frozen=True)
class DirectionalEstimate:
    """A finite-difference directional derivative and a bound on its own error."""

    value: float
    error: float


def central_difference(f: ValueFn, inputs: Sequence[np.ndarray], direction: Sequence[np.ndarray],
                       h: float | None = None) -> DirectionalEstimate:
    r"""Richardson-extrapolated central difference of ``f`` along ``direction``, in float64.

    :math:`D(h) = (f(x + hv) - f(x - hv)) / 2h` has error :math:`O(h^2)`;
    :math:`(4 D(h/2) - D(h)) / 3` cancels that term. The error bound is the change between
    the two steps plus the rounding :math:`\epsilon |f| / h`.
    """
    h = _step_size(inputs) if h is None else h

    def central(step: float) -> tuple[float, float]:
        up, down = f(*_along(inputs, direction, step)), f(*_along(inputs, direction, -step))
        return (up - down) / (2 * step), max(abs(up), abs(down))

    d_h, f_h = central(h)
    d_half, f_half = central(h / 2)
    rounding = _EPS * max(f_h, f_half) / (h / 2)
    return DirectionalEstimate((4 * d_half - d_h) / 3, abs(d_half - d_h) + 4 * rounding)


def fd_agrees(predicted: float, estimate: DirectionalEstimate, grad_norm: float, rtol: float = FD_RTOL) -> bool:
    """Whether an analytic directional derivative agrees with a finite-difference estimate.

    ``rtol`` (relative to ``grad_norm``) is widened for gradients computed below float64.
    """
    allowed = FD_SAFETY * estimate.error + max(rtol, FD_RTOL) * grad_norm
    return abs(predicted - estimate.value) <= allowed


@dataclass(frozen=True)
class TaylorResult:
    r"""Observed convergence orders of :math:`r(h) = |f(x + hv) - f(x) - h \langle g, v \rangle|`.

    ``order`` is the order at the smallest steps that are still above rounding noise (about 2
    for a right gradient, about 1 for a wrong one); ``exact`` means every remainder was at
    noise level (a right gradient of a function linear along ``v``).
    """

    orders: tuple[float, ...]
    order: float
    exact: bool

    @property
    def passed(self) -> bool:
        return self.exact or self.order > 1.5


def taylor_test(f: ValueFn, inputs: Sequence[np.ndarray], grads: Sequence[np.ndarray],
                direction: Sequence[np.ndarray], *, h0: float | None = None, halvings: int = 8) -> TaylorResult:
    r"""The eps-free check: the first-order Taylor remainder must shrink like :math:`h^2` as :math:`h` halves.

    A right gradient leaves :math:`r(h) = O(h^2)`, so :math:`\log_2(r(h)/r(h/2)) \to 2`; a wrong one
    leaves :math:`h |\langle g - \nabla f, v \rangle| + O(h^2)`, order 1. No step size has to be chosen
    well: the trend over a range of steps decides.
    """
    f0 = f(*inputs)
    predicted = dot(grads, direction)
    h = 1e-2 * max(1.0, max(float(np.max(np.abs(x), initial=0.0)) for x in inputs)) if h0 is None else h0
    remainders, floors = [], []
    for _ in range(halvings + 1):
        fh = f(*_along(inputs, direction, h))
        remainders.append(abs(fh - f0 - h * predicted))
        floors.append(256 * _EPS * max(abs(fh), abs(f0), abs(h * predicted)))
        h /= 2
    orders = []
    for k in range(halvings):
        if remainders[k + 1] > floors[k + 1] and remainders[k] > floors[k]:
            orders.append(math.log2(remainders[k] / remainders[k + 1]))
    if not orders:
        return TaylorResult((), 2.0, exact=all(r <= fl for r, fl in zip(remainders, floors, strict=True)))
    tail = orders[-2:]
    return TaylorResult(tuple(orders), sum(tail) / len(tail), exact=False)
