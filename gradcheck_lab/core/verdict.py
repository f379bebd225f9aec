"""From three sets of results to a verdict: the comparisons, the measured floor, kinks and the oracle.

See :mod:`gradcheck_lab.core.tolerances` for the error model. A :class:`Judge` holds one comparison
(the math one, or the dtype one) over every tensor of a check (the value, then each gradient),
measures the rounding floor only when an element exceeds the a-priori bound, and sorts the
elements that exceed it into *beyond* (a mismatch, unless a kink excuses it) and *unresolved*
(within the floor, but the floor is above what the dtype must resolve: inconclusive).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from gradcheck_lab.core import oracle as numeric
from gradcheck_lab.core.comparison import Comparison, allowed_error, compare, finite_or_zero, largest_magnitude
from gradcheck_lab.core.kinks import OneSided, one_sided
from gradcheck_lab.core.report import OracleVotes
from gradcheck_lab.core.tolerances import Tolerance

KINK_BUDGET = 64
"""The most elements whose one-sided derivatives are measured in one check (four evaluations each)."""


@dataclass
class Judge:
    """One comparison (reference against one torch run) over every tensor of a check.

    ``expected``/``actual`` list the value then each gradient; ``names`` their labels; the value
    is judged relative to its condition scale ``condition()`` (sum_k <|grad_k|, |x_k|>, computed
    only when the value needs it), so a value that cancels is not held to a precision its terms
    never had. A NaN or Inf fails its comparison (``nonfinite``) unless ``allow_nonfinite`` and
    both sides hold the same non-finite value there.
    """

    names: list[str]
    expected: list[np.ndarray]
    actual: list[np.ndarray]
    tol: Tolerance
    condition: Callable[[], float]
    allow_nonfinite: bool = False
    floor: list[np.ndarray] | None = None
    excused: list[np.ndarray | None] = field(default_factory=list)
    comparisons: dict[str, Comparison] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.excused = [None] * len(self.expected)  # a mask only once an element is excused
        self.comparisons = self._compare(None)

    def _tolerance(self, k: int) -> tuple[Tolerance, float]:
        if k == 0:  # the value: rounding relative to its condition scale
            return replace(self.tol, gtol=self.tol.rtol), self.condition()
        return self.tol, 0.0

    def _expected(self, k: int) -> np.ndarray:
        """The reference, with excused elements (accepted kinks) replaced by torch's value."""
        excused = self.excused[k]
        return self.expected[k] if excused is None else np.where(excused, self.actual[k], self.expected[k])

    def _compare(self, floor: list[np.ndarray] | None) -> dict[str, Comparison]:
        out = {}
        for k, name in enumerate(self.names):
            if k == 0 and floor is None:  # the condition scale costs a pass over every input: only if needed
                first = compare(self._expected(0), self.actual[0], self.tol, allow_nonfinite=self.allow_nonfinite)
                if first.passed:
                    out[name] = first
                    continue
            tol, global_scale = self._tolerance(k)
            out[name] = compare(self._expected(k), self.actual[k], tol, global_scale=global_scale,
                                floor=None if floor is None else floor[k], allow_nonfinite=self.allow_nonfinite)
        return out

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.comparisons.values())

    @property
    def nonfinite(self) -> bool:
        return any(c.nonfinite for c in self.comparisons.values())

    def apply_floor(self, floor: list[np.ndarray] | None) -> None:
        """Judge again with the measured rounding floor (None: it could not be measured)."""
        self.floor = floor
        self.comparisons = self._compare(floor)

    def _masks(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(beyond, unresolved) for tensor ``k``: past the floor-widened bound; past the a-priori one only,
        where the floor exceeds what must be resolved."""
        tol, global_scale = self._tolerance(k)
        e, a = finite_or_zero(self._expected(k)), finite_or_zero(self.actual[k])
        error = np.abs(a - e)
        floor = None if self.floor is None else self.floor[k]
        beyond = error > allowed_error(e, a, tol, global_scale=global_scale, floor=floor)
        if floor is None:
            return beyond, np.zeros_like(beyond)
        apriori = error > allowed_error(e, a, tol, global_scale=global_scale)
        scale = max(largest_magnitude(e), largest_magnitude(a))
        unresolved = apriori & ~beyond & (tol.floor * floor > tol.resolution * scale)
        return beyond, unresolved

    def beyond(self) -> list[np.ndarray]:
        return [self._masks(k)[0] if not self.comparisons[name].passed else np.zeros(np.shape(e), dtype=bool)
                for k, (name, e) in enumerate(zip(self.names, self.expected, strict=True))]

    def unresolved(self) -> list[np.ndarray]:
        if self.floor is None:  # nothing is unresolved before the floor is measured
            return [np.zeros(np.shape(e), dtype=bool) for e in self.expected]
        return [self._masks(k)[1] for k in range(len(self.names))]

    def excuse(self, k: int, index: tuple[int, ...]) -> None:
        excused = self.excused[k]
        if excused is None:
            excused = self.excused[k] = np.zeros(np.shape(self.expected[k]), dtype=bool)
        excused[index] = True

    def rejudge(self) -> None:
        self.comparisons = self._compare(self.floor)


@dataclass(frozen=True)
class KinkFinding:
    """The one-sided derivatives at one disputed element, and what the reference and torch gave there."""

    tensor: str
    index: tuple[int, ...]
    sides: OneSided
    reference: float
    torch: float
    accepted: bool

    def describe(self) -> str:
        verdict = ("accepted as a subgradient (kinks='subgradient')" if self.accepted
                   else "kinks='subgradient' accepts any value between them" if self.sides.contains(
                       self.reference, 1e-9 * max(abs(self.sides.left), abs(self.sides.right), 1e-300))
                   else "the reference's value is not between them either")
        return (f"{self.tensor} {list(self.index)} sits on a kink: {self.sides.describe()}; torch's convention "
                f"gives {self.torch:.6g}, the reference {self.reference:.6g}; {verdict}")


def examine_kinks(
    judge: Judge,
    candidates: Sequence[np.ndarray],
    value_at: Callable[[list[np.ndarray]], float],
    inputs: list[np.ndarray],
    variables: Sequence[int],
    f0: float,
    *,
    subgradient: bool,
) -> list[KinkFinding]:
    """Measure one-sided derivatives at the candidate elements (largest errors first, within the budget).

    In each tensor the search stops at the first element off any kink: its disagreement stands
    whatever the smaller ones are, so a wrong gradient costs four evaluations per tensor here.

    With ``subgradient``, an element on a kink whose reference and torch values both lie between
    the one-sided derivatives (within its bound) is excused in ``judge``.
    """
    findings: list[KinkFinding] = []
    budget = KINK_BUDGET
    for k in range(1, len(judge.names)):  # gradients only: the value has no kinks of its own
        mask = candidates[k]
        if not mask.any() or budget <= 0:
            continue
        e, a = judge.expected[k], judge.actual[k]
        errors = np.where(mask, np.abs(finite_or_zero(a) - finite_or_zero(e)), -1.0)
        count = min(budget, int(mask.sum()))
        flat_errors = errors.ravel()
        top = np.argpartition(flat_errors, flat_errors.size - count)[flat_errors.size - count:]
        order = top[np.argsort(flat_errors[top])[::-1]]
        scale = max(largest_magnitude(finite_or_zero(e)), largest_magnitude(finite_or_zero(a)))
        slack = allowed_error(e, a, judge.tol)
        for flat in order:
            index = tuple(int(i) for i in np.unravel_index(int(flat), mask.shape))
            budget -= 1
            sides = one_sided(value_at, inputs, variables[k - 1], index, f0, scale)
            if sides is None:
                continue
            if not sides.kink:
                break  # a larger error off any kink decides this tensor; smaller ones cannot excuse it
            room = float(slack[index]) + 1e-9 * max(abs(sides.left), abs(sides.right))
            accepted = subgradient and sides.contains(float(e[index]), room) and sides.contains(float(a[index]), room)
            if accepted:
                judge.excuse(k, index)
            findings.append(KinkFinding(judge.names[k], index, sides, float(e[index]), float(a[index]), accepted))
    if any(f.accepted for f in findings):
        judge.rejudge()
    return findings


CONFIRM_STEPS = (16, 256)
"""A shared mistake is confirmed by differences at steps this many times larger (see :func:`_confirm`)."""
SECOND_ORDER = 1.7
"""A Taylor remainder shrinking faster than h^1.7 is a right gradient's (order 2), not a wrong one's (order 1)."""


def _confirm(along: Callable[..., float], moving: list[np.ndarray], v: list[np.ndarray], gap: float,
             predicted: float, norm: float, condition: float,
             f0: float) -> tuple[str | None, numeric.DirectionalEstimate | None]:
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
    wider = None
    for factor in CONFIRM_STEPS:
        wider = numeric.central_difference(along, moving, v, h=factor * numeric.RELATIVE_FD_STEP,
                                           noise=condition, f0=f0)
        wider_gap = wider.value - predicted
        if all(value == f0 for _, value in wider.points):
            return (f"the value is exactly {f0!r} at every step up to {factor}h along the direction while the "
                    f"gradients predict a change of {abs(predicted) * factor * numeric.RELATIVE_FD_STEP:.3g}: "
                    "below the rounding of an intermediate (a loss that rounds to a constant)"), None
        reason = numeric.abstention(wider, norm)
        if reason:
            return f"{reason} (at a step {factor}x the first)", None
        if abs(wider_gap - gap) > 0.25 * abs(gap) or numeric.fd_agrees(predicted, wider, norm):
            return (f"the differences' discrepancy with both gradients is {gap:.3g} at step h but {wider_gap:.3g} "
                    f"at {factor}h: rounding inside the function (an intermediate far larger than its value), "
                    "not a shared mistake"), None
        order = numeric.taylor_order(wider, f0, predicted)
        if factor == CONFIRM_STEPS[0] and order > SECOND_ORDER:
            return (f"the Taylor remainder of the gradients shrinks like h^{order:.2f} at {factor}h (h^2 for a right "
                    "gradient, h for a wrong one): the differences' discrepancy is noise"), None
    return None, wider


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
        contribution = np.abs(g * d).ravel()
        largest += [(-float(contribution[i]), k, int(i)) for i in np.argsort(contribution)[-SWALLOW_PROBES:]]
        with np.errstate(divide="ignore"):
            distance = np.where(contribution >= abs(gap) / 4, np.abs(np.log(contribution / abs(gap))), np.inf)
        closest += [(float(distance[i]), k, int(i)) for i in np.argsort(distance)[:SWALLOW_PROBES]
                    if np.isfinite(distance[i])]
    candidates = list(dict.fromkeys((k, i) for _, k, i in sorted(largest)[:SWALLOW_PROBES] + sorted(closest)[
        :SWALLOW_PROBES]))

    def moved_by(k: int, i: int, step: float) -> float:
        moved = np.array(moving[k], copy=True)
        moved.flat[i] += step
        return along(*[moved if j == k else m for j, m in enumerate(moving)])

    base = along(*moving)
    for k, i in candidates:
        first = abs(float(v[k].flat[i])) * numeric.RELATIVE_FD_STEP
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
    directions, abs_v = numeric.relative_directions(moving, count, seed)
    # |<g, v>| <= sum |g| |v|: the largest the directional derivative can be along any such v.
    reference_norm = float(sum(np.vdot(g, a) for g, a in zip(reference_magnitudes, abs_v, strict=True)))
    norm = max(reference_norm, float(sum(np.vdot(np.abs(g), a) for g, a in zip(torch_grads, abs_v, strict=True))))
    slack = torch_slack(abs_v, reference_norm)
    for v in directions:
        estimate = numeric.central_difference(along, moving, v, h=numeric.RELATIVE_FD_STEP, noise=condition, f0=f0,
                                              richardson=False)
        reason = numeric.abstention(estimate, norm)
        if reason:
            reasons.append(reason)
            continue
        predicted_ref, predicted_torch = numeric.dot(reference_grads, v), numeric.dot(torch_grads, v)
        ref_agrees = numeric.fd_agrees(predicted_ref, estimate, norm)
        torch_agrees = numeric.fd_agrees(predicted_torch, estimate, norm, slack)
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
                numeric.taylor_order(estimate, f0, predicted_ref),
                numeric.taylor_order(estimate, f0, predicted_torch),
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
