r"""The oracle's vote in a check: finite differences of the float64 value along random directions, set against
the reference's and torch's gradients, abstaining where they cannot resolve a direction.

A mistake both gradients share is confirmed at wider steps and tested for kinks along the direction and for inputs
the value swallows (rounding that makes it a staircase) before it is voted; see :mod:`gradcheck_lab.core.oracle`
for the differences themselves.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from gradcheck_lab.core.comparison import largest_magnitude
from gradcheck_lab.core.oracle import (
    RELATIVE_FD_STEP,
    DirectionalEstimate,
    abstention,
    central_difference,
    dot,
    fd_agrees,
    iter_relative_directions,
    relative_magnitude,
    taylor_order,
)
from gradcheck_lab.core.report import OracleVotes

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
