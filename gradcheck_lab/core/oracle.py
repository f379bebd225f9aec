r"""Gradient oracles that need no autograd: central differences and the Taylor remainder test.

Both work along random directions :math:`v` (one entry per element of every input, unit
norm overall), so their cost is a handful of function calls whatever the input size.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from gradcheck_lab.core.tolerances import FD_RTOL, FD_SAFETY

ValueFn = Callable[..., float]
NoiseFn = Callable[..., float]
"""The condition scale of ``f`` at a point, sum_k <|grad_k f|, |x_k|>: the size of the terms whose rounding
shows in ``f``. The oracles treat differences below ``eps`` times it as noise."""
_EPS = float(np.finfo(np.float64).eps)
_UNDERFLOW = 64 * float(np.finfo(np.float64).tiny) / _EPS
"""Below about 6e-291 values have lost precision to gradual underflow: the oracles treat them as noise."""
RELATIVE_FD_STEP = 8 * _EPS ** (1 / 3)
"""Central-difference step along a :func:`relative_direction` (about 5e-5 of each element)."""


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


def relative_magnitude(inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """|v| of every :func:`relative_directions` direction: m_i = |x_i| / sqrt(N) (1 / sqrt(N) where x_i = 0)."""
    total = sum(x.size for x in inputs)
    magnitude = [np.abs(x, out=np.empty(np.shape(x))) for x in inputs]  # arrays, 0-d ones too
    for m in magnitude:
        m[m == 0] = 1.0
        m *= 1 / math.sqrt(total)
    return magnitude


def iter_relative_directions(magnitude: Sequence[np.ndarray], count: int, seed: int = 0) -> Iterator[list[np.ndarray]]:
    """The directions of :func:`relative_directions`, one at a time (one direction in memory, not ``count``)."""
    rng = np.random.default_rng(seed)
    total = sum(m.size for m in magnitude)
    for _ in range(count):
        signs = np.unpackbits(rng.integers(0, 256, size=(total + 7) // 8, dtype=np.uint8))[:total].view(np.int8)
        signs *= 2
        signs -= 1  # bit 1 -> +1, bit 0 -> -1, in one byte each (a masked negation is 10x slower)
        parts, start = [], 0
        for m in magnitude:
            parts.append(m * signs[start:start + m.size].reshape(m.shape))
            start += m.size
        del signs
        yield parts


def relative_directions(inputs: Sequence[np.ndarray], count: int,
                        seed: int = 0) -> tuple[list[list[np.ndarray]], list[np.ndarray]]:
    """:func:`relative_direction` of each of :func:`random_directions`, and their common magnitude.

    Entry i of every such direction is +-m_i, with m_i = |x_i| / sqrt(N) (1 / sqrt(N) where x_i = 0):
    only the signs are random. So ``|v|`` is computed once and each direction costs one product (the
    same values, from the same bits, as the two functions composed).
    """
    magnitude = relative_magnitude(inputs)
    return list(iter_relative_directions(magnitude, count, seed)), magnitude


def _along(inputs: Sequence[np.ndarray], direction: Sequence[np.ndarray], h: float) -> list[np.ndarray]:
    """The point x + h v, in fresh arrays (one allocation each)."""
    points = [np.multiply(v, h, out=np.empty(np.shape(v))) for v in direction]
    for point, x in zip(points, inputs, strict=True):
        point += x
    return points


def _step_size(inputs: Sequence[np.ndarray]) -> float:
    scale = max(1.0, max(float(np.max(np.abs(x), initial=0.0)) for x in inputs))
    return float(_EPS ** (1 / 3) * scale * 8)


def dot(grads: Sequence[np.ndarray], direction: Sequence[np.ndarray]) -> float:
    """The directional derivative :math:`\\sum_k \\langle g_k, v_k \\rangle` an analytic gradient predicts."""
    return float(sum(np.vdot(g, v) for g, v in zip(grads, direction, strict=True)))


@dataclass(frozen=True)
class DirectionalEstimate:
    """A finite-difference directional derivative, a bound on its own error, and whether to trust it.

    ``abstain`` says why the estimate cannot vote (a kink along the direction, no convergence,
    rounding above the signal), or is None. ``points`` holds ``(h, f(x + h v))`` for every step
    evaluated, so the Taylor remainders of candidate gradients come for free.
    """

    value: float
    error: float
    abstain: str | None = None
    rounding: float = 0.0
    points: tuple[tuple[float, float], ...] = ()


def central_difference(f: ValueFn, inputs: Sequence[np.ndarray], direction: Sequence[np.ndarray],
                       h: float | None = None, noise: NoiseFn | float | None = None,
                       f0: float | None = None, richardson: bool = True) -> DirectionalEstimate:
    r"""Richardson-extrapolated central difference of ``f`` along ``direction``, in float64.

    :math:`D(h) = (f(x + hv) - f(x - hv)) / 2h` has error :math:`O(h^2)`;
    :math:`(4 D(h/2) - D(h)) / 3` cancels that term. The error bound is the change between the
    two steps plus the rounding :math:`\epsilon\,s / h`, where :math:`s` is the larger of
    :math:`|f|` and ``noise`` (the condition scale of ``f``: a float, or a function of the point).

    With ``f0 = f(x)``, the one-sided differences tell a kink from curvature: for a smooth ``f``
    their gap :math:`D_+(h) - D_-(h) = h f''` halves with ``h``; across a kink it stays the jump
    in slope. The estimate then abstains (see :func:`abstention`).

    Without ``richardson``: two evaluations, :math:`D(h)` alone, its error the rounding only (its
    truncation, h^2 times the third derivative over 6, is ~1e-9 relative at the default relative
    step), and no kink test.
    """
    h = _step_size(inputs) if h is None else h

    def scale_at(point: list[np.ndarray], value: float) -> float:
        if noise is None:
            return abs(value)
        return max(abs(value), noise if isinstance(noise, float | int) else noise(*point))

    values: dict[float, float] = {}
    scale = abs(f0) if f0 is not None else 0.0
    if not richardson:
        for step in (h, -h):
            point = _along(inputs, direction, step)
            values[step] = f(*point)
            scale = max(scale, scale_at(point, values[step]))
        rounding = (_EPS * scale + _UNDERFLOW) / h
        finite = all(math.isfinite(v) for v in values.values())
        return DirectionalEstimate((values[h] - values[-h]) / (2 * h), 4 * rounding,
                                   None if finite else "the function is not finite along the direction",
                                   rounding, tuple(sorted(values.items())))
    for step in (h, -h, h / 2, -h / 2):
        point = _along(inputs, direction, step)
        values[step] = f(*point)
        scale = max(scale, scale_at(point, values[step]))
    d_h = (values[h] - values[-h]) / (2 * h)
    d_half = (values[h / 2] - values[-h / 2]) / h
    rounding = visible = (_EPS * scale + _UNDERFLOW) / (h / 2)
    estimate = (4 * d_half - d_h) / 3
    truncation = abs(d_half - d_h)
    if f0 is not None and math.isfinite(f0):
        # Rounding inside f that neither its inputs nor its value show (an intermediate of 1e10
        # added and removed) is measured: the fourth difference of the five values cancels f's
        # Taylor polynomial up to 0.75 h^4 f^(4) / 12, so what remains is noise, sqrt(70) draws of
        # it. Taken whole as the noise of one value it overstates the noise ~8x: abstaining is safe.
        fourth = values[h] + values[-h] - 4 * (values[h / 2] + values[-h / 2]) + 6 * f0
        rounding = max(rounding, abs(fourth) / (h / 2))
    abstain = None
    if not all(math.isfinite(v) for v in values.values()):
        abstain = "the function is not finite along the direction"
    elif f0 is not None:
        gap_h = (values[h] - f0) / h - (f0 - values[-h]) / h
        gap_half = (values[h / 2] - f0) / (h / 2) - (f0 - values[-h / 2]) / (h / 2)
        # Smooth: the gap halves. Kink: it stays. Both must stand above the rounding the value and its terms
        # show (the fourth difference is no noise measure here: a kink's is its gap times h). Hidden rounding
        # taken for a kink only makes the estimate abstain.
        if abs(gap_half) > 0.75 * abs(gap_h) and abs(gap_half) > 16 * visible:
            abstain = (f"the one-sided slopes differ by {abs(gap_half):.3g} along the direction whatever the step: "
                       "a kink (a point where the function is not differentiable) lies on it")
    points = tuple(sorted(values.items()))
    return DirectionalEstimate(estimate, truncation + 4 * rounding, abstain, rounding, points)


def abstention(estimate: DirectionalEstimate, grad_norm: float) -> str | None:
    """Why an estimate cannot judge gradients whose directional derivative is at most ``grad_norm``, or None.

    An oracle that cannot resolve the direction must abstain, not vote against: at a kink, where
    the differences have not converged (the change between the two steps is a tenth of the signal
    or more), or where rounding is a tenth of the signal or more (cancellation).
    """
    if estimate.abstain:
        return estimate.abstain
    if grad_norm == 0:
        return None
    if FD_SAFETY * estimate.rounding * 4 > 0.1 * grad_norm:
        return (f"rounding in the function's value ({estimate.rounding:.2g} per unit step) is above a tenth of "
                f"the signal ({grad_norm:.2g}): its value cancels at this input")
    if estimate.error > 0.1 * grad_norm:
        return (f"the differences did not converge (steps h and h/2 differ by {estimate.error:.2g} against a "
                f"signal of {grad_norm:.2g}): strong curvature or a kink near the input")
    return None


def fd_agrees(predicted: float, estimate: DirectionalEstimate, grad_norm: float, slack: float = 0.0) -> bool:
    """Whether an analytic directional derivative agrees with a finite-difference estimate.

    ``grad_norm`` bounds ``|<g, v>|``; ``slack`` is extra room the caller can justify (a
    gradient computed below float64 may differ from the float64 one by its comparison bound).
    """
    allowed = FD_SAFETY * estimate.error + FD_RTOL * grad_norm + slack
    return abs(predicted - estimate.value) <= allowed


def taylor_order(estimate: DirectionalEstimate, f0: float, predicted: float) -> float:
    r"""The observed order of the first-order Taylor remainder at the estimate's steps.

    :math:`r(h) = |f(x + hv) - f(x) - h \langle g, v \rangle|` shrinks like :math:`h^2` for a right
    gradient and like :math:`h` for a wrong one; the order is :math:`\log_2 (r(h) / r(h/2))`,
    averaged over both signs of ``h``. Remainders at rounding level read as order 2 (exact).
    """
    steps = dict(estimate.points)
    orders = []
    for sign in (1.0, -1.0):
        h = max(abs(s) for s in steps) * sign
        if h / 2 not in steps:  # a two-point estimate: no second step
            continue
        r_h = abs(steps[h] - f0 - h * predicted)
        r_half = abs(steps[h / 2] - f0 - h / 2 * predicted)
        floor = 256 * estimate.rounding * abs(h)
        if r_h > floor and r_half > floor:
            orders.append(math.log2(r_h / r_half))
    return sum(orders) / len(orders) if orders else 2.0


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
