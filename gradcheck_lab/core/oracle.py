r"""Gradient oracles that need no autograd: central differences and the Taylor remainder test.

Both work along random directions :math:`v` (one entry per element of every input, unit
norm overall), so their cost is a handful of function calls whatever the input size.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from gradcheck_lab.core.comparison import largest_magnitude
from gradcheck_lab.core.report import OracleVotes
from gradcheck_lab.core.tolerances import FD_RTOL, FD_SAFETY
from gradcheck_lab.errors import ResourceError

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


CONFIRM_STEPS = (16, 256)
"""A shared mistake is confirmed by differences at steps this many times larger (see :func:`_confirm`)."""
SECOND_ORDER = 1.7
"""A Taylor remainder shrinking faster than h^1.7 is a right gradient's (order 2), not a wrong one's (order 1)."""


def _confirm(along: Callable[..., float], moving: list[np.ndarray], v: list[np.ndarray], gap: float,
             predicted: float, norm: float, condition: float,
             f0: float) -> tuple[str | None, DirectionalEstimate | None]:
    """Whether a discrepancy ``gap`` between the differences and both gradients is a shared mistake.

    Returns ``(reason, None)`` when it is not (the oracle abstains for ``reason``), else ``(None, the
    last wider estimate)``. A wrong gradient's discrepancy along ``v`` is the same at every step.
    The first estimate (two evaluations) has no error estimate of its own; rounding of an
    intermediate far larger than the value (``x + 1e10 - 1e10``) also biases differences like a
    slope when the step is comparable to that intermediate's ulp, invisibly to any error estimate
    at that step, and the bias changes (shrinks like 1/step) when the step grows. So the discrepancy
    must stay within a quarter of itself at steps 16x and 256x larger, where Richardson-extrapolated
    differences (four evaluations each, spent only here) must reject the gradients too, with no
    kink, noise or lack of convergence in sight.
    """
    reason = _kink_along(along, moving, v, condition, f0)
    if reason:
        return reason, None
    wider = None
    for factor in CONFIRM_STEPS:
        wider = central_difference(along, moving, v, h=factor * RELATIVE_FD_STEP,
                                           noise=condition, f0=f0)
        wider_gap = wider.value - predicted
        if all(value == f0 for _, value in wider.points):
            return (f"the value is exactly {f0!r} at every step up to {factor}h along the direction while the "
                    f"gradients predict a change of {abs(predicted) * factor * RELATIVE_FD_STEP:.3g}: "
                    "below the rounding of an intermediate (a loss that rounds to a constant)"), None
        reason = abstention(wider, norm)
        if reason:
            return f"{reason} (at a step {factor}x the first)", None
        if abs(wider_gap - gap) > 0.25 * abs(gap) or fd_agrees(predicted, wider, norm):
            return (f"the differences' discrepancy with both gradients is {gap:.3g} at step h but {wider_gap:.3g} "
                    f"at {factor}h: rounding inside the function (an intermediate far larger than its value), "
                    "not a shared mistake"), None
        order = taylor_order(wider, f0, predicted)
        if factor == CONFIRM_STEPS[0] and order > SECOND_ORDER:
            return (f"the Taylor remainder of the gradients shrinks like h^{order:.2f} at {factor}h (h^2 for a right "
                    "gradient, h for a wrong one): the differences' discrepancy is noise"), None
    return None, wider


def _kink_along(along: Callable[..., float], moving: list[np.ndarray], v: list[np.ndarray], condition: float,
                f0: float) -> str | None:
    """Why the differences along ``v`` may cross a kink, or None: the one-sided slopes along its positive and
    its negative entries apart.

    At kinks of separate elements (relu at exact zeros) the central difference misses the gradient by
    half the gap of one-sided slopes along v+ minus half that along v-; the gap along v itself is their
    sum, which cancels where the jumps have mixed signs (relu(x) * g with g of both signs). So a
    discrepancy a kink explains shows as a gap along v+ or along v-, at least as large as itself.
    """
    part = [np.maximum(d, 0.0, out=np.empty(np.shape(d))) for d in v]  # then, in the same arrays, the negative ones
    for sign in (1, -1):
        if sign < 0:
            for p, d in zip(part, v, strict=True):
                np.minimum(d, 0.0, out=p)
        if not any(np.any(p) for p in part):
            continue
        estimate = central_difference(along, moving, part, h=RELATIVE_FD_STEP, noise=condition, f0=f0)
        if estimate.abstain:
            return f"{estimate.abstain} (along the direction's entries of one sign)"
    return None


SWALLOW_PROBES = 3
"""Elements probed by :func:`_swallowed` for each of its two orders (largest, and closest to the discrepancy)."""
SWALLOW_REACH = 16.0
"""How far :func:`_swallowed` moves an element: up to this many times its tensor's largest magnitude."""


def _swallowed(along: Callable[..., float], moving: list[np.ndarray], v: list[np.ndarray],
               grads: Sequence[np.ndarray], gap: float) -> str | None:
    """Why a confirmed discrepancy may be rounding that swallows an input whole, or None.

    ``x0 + 1e12 - 1e12`` with ``x0 ~ 1e-4`` loses ``x0`` to rounding: at every step the differences
    take (all far below the ulp of 1e12) the value does not move at all, no error estimate sees
    noise, and the gradients' slope of 1 looks like a shared mistake. Moving the element alone, by
    steps growing 4x from the differences' up to :data:`SWALLOW_REACH` times its tensor's largest
    magnitude, tells it apart: the value stays exactly constant (or moves at once, next to a grid
    point), jumps, and is exactly constant again just past the jump, by more than its rounding could
    hide: a staircase, rounding to a grid. A function that truly ignores the element never moves;
    one with a kink ahead (a flat stretch, then a slope) or that depends on the element keeps
    moving past the first change. Only the staircase abstains.
    """
    # A wholly swallowed element's predicted contribution |g_i v_i| is about the discrepancy ``gap``
    # (the differences see none of it); a partly swallowed one's is larger (they see it with an error).
    # So the probes are the largest contributions, and those closest to the gap on a log scale.
    largest: list[tuple[float, int, int]] = []
    closest: list[tuple[float, int, int]] = []
    for k, (g, d) in enumerate(zip(grads, v, strict=True)):
        # One buffer, worked in place (a 50M-element input must not cost several copies here).
        work = np.multiply(g, d, out=np.empty(np.shape(d))).reshape(-1)
        np.abs(work, out=work)
        probes = min(SWALLOW_PROBES, work.size)
        largest += [(-float(work[i]), k, int(i)) for i in np.argpartition(work, work.size - probes)[-probes:]]
        far = work < abs(gap) / 4
        with np.errstate(divide="ignore"):
            work /= abs(gap)
            np.log(work, out=work)
        np.abs(work, out=work)
        work[far] = np.inf
        del far
        near = np.argpartition(work, probes - 1)[:probes] if work.size > probes else np.arange(work.size)
        closest += [(float(work[i]), k, int(i)) for i in near if np.isfinite(work[i])]
        del work
    candidates = list(dict.fromkeys((k, i) for _, k, i in sorted(largest)[:SWALLOW_PROBES] + sorted(closest)[
        :SWALLOW_PROBES]))

    def moved_by(k: int, i: int, step: float) -> float:
        moved = np.array(moving[k], copy=True)
        moved.flat[i] += step
        return along(*[moved if j == k else m for j, m in enumerate(moving)])

    base = along(*moving)
    for k, i in candidates:
        first = abs(float(v[k].flat[i])) * RELATIVE_FD_STEP
        if first == 0.0:
            continue
        step, slope = first, abs(float(grads[k].flat[i]))
        limit = SWALLOW_REACH * max(largest_magnitude(moving[k]), first)
        while step <= limit and (value := moved_by(k, i, step)) == base:
            step *= 4
        if step > limit:
            continue  # never moves: the function ignores the element, and the discrepancy stands
        for _ in range(3):  # flat just past the first change, or a level or two on (it may sit at a cell's edge)
            past = step * (1 + 2.0**-8)
            resolvable = slope * (past - step) > 64 * float(np.finfo(np.float64).eps) * max(abs(base), abs(value))
            if resolvable and moved_by(k, i, past) == value:
                index = [int(a) for a in np.unravel_index(i, moving[k].shape)]
                return (f"the value is a staircase in element {index} of a moving input: exactly constant over a "
                        f"step of {past - step:.3g} at {step:.3g} where the gradients predict a change of "
                        f"{slope * (past - step):.3g}. Rounding inside the function (an intermediate far larger "
                        "than the input) swallows the input at the differences' steps: not a shared mistake")
            step *= 4
            if step > limit:
                break
            value = moved_by(k, i, step)
    return None


def _abs_dot(g: np.ndarray, a: np.ndarray, block: int = 1 << 20) -> float:
    """sum |g| a, in blocks (no full-size |g|)."""
    g, a = np.asarray(g).reshape(-1), np.asarray(a).reshape(-1)
    return float(sum(np.vdot(np.abs(g[i:i + block]), a[i:i + block]) for i in range(0, g.size, block)))


ORACLE_MEMORY = 6
"""The oracle's peak extra memory, in multiples of the moving inputs' bytes (see :func:`oracle_memory`)."""


def oracle_memory(inputs: Sequence[np.ndarray]) -> int:
    """Bytes the oracle may need beyond its inputs: |v|, one direction, a moved point, the function's own
    intermediates at it, and the work buffers of a confirmation, each the size of the inputs in float64."""
    return ORACLE_MEMORY * sum(8 * int(np.size(x)) for x in inputs)


CHECK_MEMORY = 6
"""A passing check's peak extra memory, in multiples of its inputs as float64 (measured: 6.0x at 4M elements)."""


def available_memory() -> int | None:
    """Bytes the system can give without swapping (``MemAvailable``), or None where it cannot tell."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def require_memory(inputs: Sequence[object], *, oracle: bool, available: int | None = None) -> None:
    """Refuse, before any work, a check whose inputs cannot fit in the memory free on this machine.

    Args:
        inputs: the check's inputs (anything ``np.size`` measures).
        oracle: whether finite differences vote too (they need :data:`ORACLE_MEMORY` more).
        available: free bytes (default: the system's ``MemAvailable``; nothing is refused where unknown).

    Raises:
        ResourceError: the check needs more than ``available``.
    """
    __tracebackhide__ = True
    free = available_memory() if available is None else available
    if free is None:
        return
    size = sum(8 * int(np.size(x)) for x in inputs if isinstance(x, np.ndarray | float | int))
    need = (CHECK_MEMORY + (ORACLE_MEMORY if oracle else 0)) * size
    if need > free:
        extra = f" (finite differences alone need {ORACLE_MEMORY * size / 2**30:.3g} GiB)" if oracle else ""
        fix = "check a smaller input, or pass finite_differences=False" if oracle else "check a smaller input"
        raise ResourceError(f"this check needs about {need / 2**30:.3g} GiB beyond its inputs ({size / 2**30:.3g} GiB "
                            f"as float64){extra}, but only {free / 2**30:.3g} GiB are free: {fix}")


def oracle_votes(
    value_at: Callable[[list[np.ndarray]], float],
    inputs: list[np.ndarray],
    variables: Sequence[int],
    f0: float,
    reference_grads: Sequence[np.ndarray],
    reference_magnitudes: Sequence[np.ndarray],
    torch_grads: Sequence[np.ndarray],
    torch_slack: Callable[[list[np.ndarray], float], float],
    *,
    reference_vs_autograd: bool,
    condition: float,
    count: int,
    seed: int,
) -> OracleVotes:
    """Finite differences of the float64 value along ``count`` random directions, each element moved
    relative to itself (so inputs of 1e-8 and 1e4 are both resolved; constants never move).

    Two evaluations a direction (a central difference); a discrepancy with both gradients is
    confirmed at wider, Richardson-extrapolated steps (:func:`_confirm`) before it counts. A direction
    the estimate cannot resolve abstains instead of voting. ``value_at`` is called on points whose
    moving inputs are arrays made for that call alone; ``reference_magnitudes`` are the reference
    gradients' absolute values. ``torch_slack(|v|, sum_k <|reference_k|, |v_k|>)`` is the torch
    gradient's own comparison bound carried through the direction, sum_k <bound_k, |v_k|>.
    """
    moving = [inputs[k] for k in variables]

    def along(*xs: np.ndarray) -> float:
        point = list(inputs)
        for k, x in zip(variables, xs, strict=True):
            point[k] = x
        return value_at(point)

    ref_votes: list[bool] = []
    torch_votes: list[bool] = []
    reasons: list[str] = []
    taylor = (2.0, 2.0)
    first: tuple[float, float, float] | None = None
    abs_v = relative_magnitude(moving)
    # |<g, v>| <= sum |g| |v|: the largest the directional derivative can be along any such v.
    reference_norm = float(sum(np.vdot(g, a) for g, a in zip(reference_magnitudes, abs_v, strict=True)))
    norm = max(reference_norm, sum(_abs_dot(g, a) for g, a in zip(torch_grads, abs_v, strict=True)))
    slack = torch_slack(abs_v, reference_norm)
    for v in iter_relative_directions(abs_v, count, seed):  # one direction in memory at a time
        estimate = central_difference(along, moving, v, h=RELATIVE_FD_STEP, noise=condition, f0=f0,
                                              richardson=False)
        reason = abstention(estimate, norm)
        if reason:
            reasons.append(reason)
            continue
        predicted_ref, predicted_torch = dot(reference_grads, v), dot(torch_grads, v)
        ref_agrees = fd_agrees(predicted_ref, estimate, norm)
        torch_agrees = fd_agrees(predicted_torch, estimate, norm, slack)
        if ref_agrees and torch_agrees and not reference_vs_autograd:
            # The direction cannot tell them apart (their difference is orthogonal to it, or below what the
            # differences resolve: a tensor of zeros moved by equal steps, a gradient whose rows sum to 0).
            reasons.append(f"the reference and autograd predict {predicted_ref:.6g} and {predicted_torch:.6g} along "
                           "the direction, both within the differences' resolution: the direction cannot tell the "
                           "two gradients apart")
            continue
        if not ref_agrees and not torch_agrees:
            reason, wider = _confirm(along, moving, v, estimate.value - predicted_ref, predicted_ref, norm, condition,
                                     f0)
            reason = reason or _swallowed(along, moving, v, reference_grads, estimate.value - predicted_ref)
            if reason:
                reasons.append(reason)
                continue
            estimate = wider or estimate  # it has the steps the Taylor orders need
        ref_votes.append(ref_agrees)
        torch_votes.append(torch_agrees)
        if first is None:
            first = (estimate.value, predicted_ref, predicted_torch)
            taylor = (
                taylor_order(estimate, f0, predicted_ref),
                taylor_order(estimate, f0, predicted_torch),
            )
    return OracleVotes(
        reference_vs_autograd=reference_vs_autograd,
        reference_vs_fd=all(ref_votes) if ref_votes else None,
        autograd_vs_fd=all(torch_votes) if torch_votes else None,
        taylor_order_reference=taylor[0],
        taylor_order_autograd=taylor[1],
        directions=count,
        abstained=reasons[0] if reasons and not ref_votes else None,
        estimate=None if first is None else first[0],
        predicted_reference=None if first is None else first[1],
        predicted_autograd=None if first is None else first[2],
    )
