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
NoiseFn = Callable[..., float]
"""The condition scale of ``f`` at a point, sum_k <|grad_k f|, |x_k|>: the size of the terms whose rounding
shows in ``f``. The oracles treat differences below ``eps`` times it as noise."""
_EPS = float(np.finfo(np.float64).eps)
_UNDERFLOW = 64 * float(np.finfo(np.float64).tiny) / _EPS
"""Below about 6e-291 values have lost precision to gradual underflow: the oracles treat them as noise."""
RELATIVE_FD_STEP = 8 * _EPS ** (1 / 3)
"""Central-difference step along a :func:`relative_direction` (about 5e-5 of each element)."""
RELATIVE_TAYLOR_STEP = 1e-2
"""First Taylor-test step along a :func:`relative_direction`; it is then halved."""


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


def relative_direction(direction: Sequence[np.ndarray], inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Scale each entry of ``direction`` by its input's magnitude (1 for zeros).

    A step along it perturbs every element relative to itself, so an element of 1e-81 beside
    ones of 1 is neither lost to rounding nor swamped: the oracles work at every input scale.
    """
    return [v * np.where(x != 0, np.abs(x), 1.0) for v, x in zip(direction, inputs, strict=True)]


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
                       h: float | None = None, noise: NoiseFn | None = None) -> DirectionalEstimate:
    r"""Richardson-extrapolated central difference of ``f`` along ``direction``, in float64.

    :math:`D(h) = (f(x + hv) - f(x - hv)) / 2h` has error :math:`O(h^2)`;
    :math:`(4 D(h/2) - D(h)) / 3` cancels that term. The error bound is the change between
    the two steps plus the rounding :math:`\epsilon\,s / h`, where :math:`s` is the larger of
    :math:`|f|` and ``noise`` at the evaluated points (see :func:`taylor_test`).
    """
    h = _step_size(inputs) if h is None else h

    def at(point: list[np.ndarray]) -> tuple[float, float]:
        value = f(*point)  # value, then noise, at the same point: a caller may evaluate both at once
        return value, max(abs(value), noise(*point) if noise else 0.0)

    def central(step: float) -> tuple[float, float]:
        (up, s_up), (down, s_down) = at(_along(inputs, direction, step)), at(_along(inputs, direction, -step))
        return (up - down) / (2 * step), max(s_up, s_down)

    d_h, s_h = central(h)
    d_half, s_half = central(h / 2)
    rounding = (_EPS * max(s_h, s_half) + _UNDERFLOW) / (h / 2)
    return DirectionalEstimate((4 * d_half - d_h) / 3, abs(d_half - d_h) + 4 * rounding)


def fd_agrees(predicted: float, estimate: DirectionalEstimate, grad_norm: float, slack: float = 0.0) -> bool:
    """Whether an analytic directional derivative agrees with a finite-difference estimate.

    ``grad_norm`` bounds ``|<g, v>|``; ``slack`` is extra room the caller can justify (a
    gradient computed below float64 may differ from the float64 one by its comparison bound).
    """
    allowed = FD_SAFETY * estimate.error + FD_RTOL * grad_norm + slack
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
                direction: Sequence[np.ndarray], *, h0: float | None = None, halvings: int = 8,
                noise: NoiseFn | None = None) -> TaylorResult:
    r"""The eps-free check: the first-order Taylor remainder must shrink like :math:`h^2` as :math:`h` halves.

    A right gradient leaves :math:`r(h) = O(h^2)`, so :math:`\log_2(r(h)/r(h/2)) \to 2`; a wrong one
    leaves :math:`h |\langle g - \nabla f, v \rangle| + O(h^2)`, order 1. No step size has to be chosen
    well: the trend over a range of steps decides.
    """
    return taylor_tests(f, inputs, [grads], direction, h0=h0, halvings=halvings, noise=noise)[0]


def taylor_tests(f: ValueFn, inputs: Sequence[np.ndarray], grad_sets: Sequence[Sequence[np.ndarray]],
                 direction: Sequence[np.ndarray], *, h0: float | None = None, halvings: int = 8,
                 noise: NoiseFn | None = None) -> list[TaylorResult]:
    """:func:`taylor_test` for several candidate gradients along one direction, evaluating ``f`` once per step."""
    f0 = f(*inputs)
    s0 = noise(*inputs) if noise else 0.0
    predictions = [dot(grads, direction) for grads in grad_sets]
    h = 1e-2 * max(1.0, max(float(np.max(np.abs(x), initial=0.0)) for x in inputs)) if h0 is None else h0
    remainders: list[list[float]] = [[] for _ in predictions]
    floors: list[list[float]] = [[] for _ in predictions]
    for _ in range(halvings + 1):
        point = _along(inputs, direction, h)
        fh = f(*point)
        s_point = noise(*point) if noise else 0.0
        for k, predicted in enumerate(predictions):
            remainders[k].append(abs(fh - f0 - h * predicted))
            floors[k].append(256 * _EPS * max(abs(fh), abs(f0), abs(h * predicted), s0, s_point) + _UNDERFLOW)
        h /= 2
    return [_orders(r, fl, halvings) for r, fl in zip(remainders, floors, strict=True)]


def _orders(remainders: list[float], floors: list[float], halvings: int) -> TaylorResult:
    orders = []
    for k in range(halvings):
        if remainders[k + 1] > floors[k + 1] and remainders[k] > floors[k]:
            orders.append(math.log2(remainders[k] / remainders[k + 1]))
    if not orders:
        return TaylorResult((), 2.0, exact=all(r <= fl for r, fl in zip(remainders, floors, strict=True)))
    tail = orders[-2:]
    return TaylorResult(tuple(orders), sum(tail) / len(tail), exact=False)
