r"""Kinks: points where a function's one-sided derivatives differ (relu at 0, ties in a max, abs at 0).

There the gradient is a convention: torch picks one value (relu'(0) = 0, the first of tied maxima),
a hand derivation may pick another, and both are right in the sense of subgradients. For an element
whose reference and torch gradients disagree, moving that one input element by :math:`\pm h` and
:math:`\pm h/2` gives the one-sided derivatives

.. math::
    D_+ = \lim_{h \downarrow 0} \frac{f(x + h e_i) - f(x)}{h}, \qquad
    D_- = \lim_{h \downarrow 0} \frac{f(x) - f(x - h e_i)}{h},

each extrapolated from the two steps (Richardson: :math:`2 D(h/2) - D(h)` cancels the
:math:`O(h)` term). A smooth function has :math:`D_+ = D_-`; at a kink they differ by the jump in
slope, whatever the step.

Every disputed element is examined, in order of its error, until the first one off any kink (its
disagreement stands whatever the smaller ones are). Where the elements examined one by one share a
pattern (the reference gives one one-sided derivative, torch the other), the rest are tested in
groups: moving a group together along random positive weights :math:`w` must change the value at
:math:`\sum_i w_i r_i` from one side and :math:`\sum_i w_i t_i` from the other; a group that does
not is halved until its elements are examined one by one. Tied elements (equal input values at a
kink) are judged together too: moving them all at once changes the value at one-sided slopes the
gradient summed over the tie must lie between (a max-pool backward giving every tied maximum the
full gradient counts it twice).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from gradcheck_lab.core.comparison import finite_or_zero, largest_magnitude

_EPS = float(np.finfo(np.float64).eps)
STEP = 2.0**-20
"""Relative step: small enough that no other kink lies within it, large enough for float64 differences."""
CONFIRM = 16
"""A kink's gap in slopes must hold at a step this many times larger (see :func:`one_sided`)."""
ONE_BY_ONE = 8
"""Elements of a tensor examined one by one before the rest are tested in groups."""
KINK_BUDGET = 4096
"""The most elements examined one by one in one check (six evaluations each); groups cost four a test."""

ValueAt = Callable[[list[np.ndarray]], float]
Status = Literal["accepted", "rejected", "inconclusive"]


@dataclass(frozen=True)
class OneSided:
    """The one-sided derivatives of the checked function in one input element (or along a group's direction)."""

    left: float
    right: float
    kink: bool
    error: float = 0.0
    """How far rounding can move each extrapolated one-sided derivative."""
    reach: float = 0.0
    """How far (in the element's units) float64 rounding of the function's terms can move the kink."""

    def contains(self, value: float, slack: float) -> bool:
        """Whether ``value`` lies between the one-sided derivatives, endpoints included (within ``slack``,
        their own rounding error and 1e-9 of their size)."""
        low, high = min(self.left, self.right), max(self.left, self.right)
        room = slack + self.error + 1e-9 * max(abs(low), abs(high))
        return low - room <= value <= high + room

    def describe(self) -> str:
        return f"one-sided derivatives {self.left:.6g} (from the left) and {self.right:.6g} (from the right)"


def _step_scale(x: np.ndarray, value: float, input_scale: float) -> float:
    """The element's scale: its magnitude, floored at 2^-10 of the inputs' (a zero element moves too)."""
    return max(abs(value), float(largest_magnitude(np.abs(x))) * 2.0**-10, input_scale * 2.0**-10, 2.0**-30)


def _moved(inputs: Sequence[np.ndarray], which: int, flat: np.ndarray, weights: np.ndarray,
           step: float) -> list[np.ndarray]:
    point = list(inputs)
    moved = np.array(inputs[which], dtype=np.float64, copy=True)
    moved.reshape(-1)[flat] += step * weights
    point[which] = moved
    return point


def _sides(f: ValueAt, inputs: Sequence[np.ndarray], which: int, flat: np.ndarray, weights: np.ndarray,
           f0: float, h: float, noise: float) -> tuple[float, float, float] | None:
    """(left, right, rounding): Richardson one-sided derivatives along ``weights`` on the elements ``flat``,
    from steps h and h/2 (None: not finite). ``noise`` is the size of the function's terms."""
    values = {step: f(_moved(inputs, which, flat, weights, step)) for step in (h, h / 2, -h / 2, -h)}
    if not all(np.isfinite(v) for v in (*values.values(), f0)):
        return None
    right = 2 * (values[h / 2] - f0) / (h / 2) - (values[h] - f0) / h
    left = 2 * (f0 - values[-h / 2]) / (h / 2) - (f0 - values[-h]) / h
    rounding = 8 * _EPS * max(abs(f0), noise, *(abs(v) for v in values.values())) / (h / 2)
    return left, right, rounding


def one_sided(f: ValueAt, inputs: Sequence[np.ndarray], which: int, index: tuple[int, ...], f0: float,
              gradient_scale: float, noise: float = 0.0, input_scale: float = 0.0, *,
              relative: bool = False) -> OneSided | None:
    """One-sided derivatives of ``f`` (a scalar function of the full input list) in ``inputs[which][index]``.

    ``gradient_scale`` (the tensor's largest gradient magnitude) sets how large a gap in slopes
    counts as a kink rather than rounding; ``noise`` is the size of the function's terms (its
    rounding is ``eps`` times that), ``input_scale`` the inputs' largest magnitude (the step's floor
    where the element and its tensor are zero). A kink's gap is the jump in slope whatever the
    step; rounding hidden inside ``f`` (an intermediate far larger than its value) makes a gap that
    shrinks like 1/step, so a gap is a kink only if it holds, within a quarter, at a step
    ``CONFIRM`` times larger too. With ``relative``, a nonzero element moves relative to itself alone (a
    probability of 1e-12 stays positive). Returns None where ``f`` is not finite nearby.
    """
    x = inputs[which]
    value = float(x[index])
    h = STEP * (abs(value) if relative and value else _step_scale(x, value, input_scale))
    flat = np.array([np.ravel_multi_index(index, x.shape) if x.ndim else 0])
    one = np.ones(1)
    first = _sides(f, inputs, which, flat, one, f0, h, noise)
    if first is None:
        return None
    left, right, rounding = first
    gap = abs(right - left)
    kink = gap > max(64 * rounding, 1e-6 * gradient_scale)
    if kink:  # plain one-sided differences at CONFIRM h: two evaluations (their O(h) error is far below a quarter)
        wide = CONFIRM * h
        ends = [f(_moved(inputs, which, flat, one, step)) for step in (wide, -wide)]
        wider_gap = ((ends[0] - f0) - (f0 - ends[1])) / wide
        kink = bool(np.isfinite(wider_gap)) and abs(abs(wider_gap) - gap) <= 0.25 * gap
    reach = 4 * _EPS * max(abs(f0), noise) / gap if gap else float("inf")
    return OneSided(left, right, kink, 3 * rounding, reach)  # Richardson: 2 D(h/2) - D(h) triples D's rounding


@dataclass(frozen=True)
class KinkFinding:
    """The one-sided derivatives at one disputed element, what the reference and torch gave there, and the outcome.

    ``status``: "accepted" (kinks='subgradient' and both values between the one-sided derivatives, their
    tie's sums too), "rejected", or "inconclusive" (the disagreement is within float64 rounding and the
    element within rounding of the kink: the two sides may take different branches by rounding alone).
    """

    tensor: str
    index: tuple[int, ...]
    sides: OneSided
    reference: float
    torch: float
    status: Status
    between: bool = True
    """Whether the reference's value lies between the one-sided derivatives."""
    tie: str | None = None
    """Why the tie this element belongs to rejects it (the gradient summed over the tie), if it does."""

    @property
    def accepted(self) -> bool:
        return self.status == "accepted"

    def describe(self) -> str:
        if self.status == "accepted":
            verdict = "accepted as a subgradient (kinks='subgradient')"
        elif self.status == "inconclusive":
            verdict = (f"the element lies within {self.sides.reach:.3g} of the kink (float64 rounding of the "
                       "function's terms over the jump in slope), and rounding explains the disagreement: torch and "
                       "the reference may take different branches by rounding alone (inconclusive)")
        elif not self.between:
            verdict = "the reference's value is not between them either"
        elif self.tie:
            verdict = self.tie
        else:
            verdict = "kinks='subgradient' accepts any value between them"
        return (f"{self.tensor} {list(self.index)} sits on a kink: {self.sides.describe()}; torch's convention "
                f"gives {self.torch:.6g}, the reference {self.reference:.6g}; {verdict}")


@dataclass
class _Tensor:
    """What examining one tensor needs: its values, the results and slack at its elements, the step scales."""

    name: str
    which: int
    x: np.ndarray
    e: np.ndarray
    a: np.ndarray
    slack: np.ndarray
    scale: float
    within_rounding: np.ndarray | None


def _pattern(sides: OneSided, e: float, a: float, room: float) -> tuple[str, str] | None:
    """Which one-sided derivative the reference and torch each equal ("left"/"right"), if both are endpoints."""
    def side(value: float) -> str | None:
        for name, end in (("left", sides.left), ("right", sides.right)):
            if abs(value - end) <= room + sides.error + 1e-9 * abs(end):
                return name
        return None
    pair = (side(e), side(a))
    return (pair[0], pair[1]) if pair[0] and pair[1] and pair[0] != pair[1] else None


def examine_kinks(
    names: Sequence[str],
    expected: Sequence[np.ndarray],
    actual: Sequence[np.ndarray],
    slack: Sequence[np.ndarray],
    candidates: Sequence[np.ndarray],
    value_at: ValueAt,
    inputs: list[np.ndarray],
    variables: Sequence[int],
    f0: float,
    *,
    subgradient: bool,
    within_rounding: Sequence[np.ndarray] | None = None,
) -> list[KinkFinding]:
    """Measure one-sided derivatives at the candidate elements, largest errors first.

    Args:
        names, expected, actual: the labels, reference and torch results (the value, then each gradient).
        slack: per tensor, the per-element allowed error (what the bound allows between the two sides).
        candidates: per tensor, a boolean mask of the disputed elements.
        value_at: the checked scalar function of the full input list.
        inputs, variables, f0: the full input list, which of them are differentiated, and the value there.
        subgradient: whether a value between the one-sided derivatives is accepted.
        within_rounding: per tensor, the disputed elements whose disagreement float64 rounding explains
            (the measured floor); on a kink they end inconclusive rather than rejected.

    Returns:
        One finding per element found on a kink: "accepted" where ``subgradient`` holds and both the
        reference and torch lie between the one-sided derivatives (within the element's slack) and
        their sums over any tie the element belongs to lie between the tie's one-sided derivatives;
        else "inconclusive" where rounding explains it, else "rejected". Nothing is mutated: the caller
        excuses accepted findings and leaves inconclusive ones unresolved.

    In each tensor the search stops at the first element off any kink: its disagreement stands
    whatever the smaller ones are, so a wrong gradient costs six evaluations per tensor here.
    """
    input_scale = max((largest_magnitude(np.abs(np.asarray(x, dtype=np.float64))) for x in inputs
                       if np.issubdtype(np.asarray(x).dtype, np.floating)), default=0.0)
    noise = abs(f0) + sum(float(np.vdot(np.maximum(np.abs(finite_or_zero(e)), np.abs(finite_or_zero(a))),
                                        np.abs(inputs[v])))
                          for e, a, v in zip(expected[1:], actual[1:], variables, strict=True))
    findings: list[KinkFinding] = []
    budget = [KINK_BUDGET]
    for k in range(1, len(names)):  # gradients only: the value has no kinks of its own
        mask = candidates[k]
        if not mask.any() or budget[0] <= 0:
            continue
        e, a = finite_or_zero(expected[k]), finite_or_zero(actual[k])
        tensor = _Tensor(names[k], variables[k - 1], np.asarray(inputs[variables[k - 1]]), e, a, np.asarray(slack[k]),
                         max(largest_magnitude(e), largest_magnitude(a)),
                         None if within_rounding is None else np.asarray(within_rounding[k]))
        flat = np.flatnonzero(mask)
        errors = np.abs(a.reshape(-1)[flat] - e.reshape(-1)[flat])
        order = flat[np.argsort(-errors, kind="stable")]
        found = _examine_tensor(tensor, order, value_at, inputs, f0, noise, input_scale, budget, subgradient)
        findings += _judge_ties(tensor, found, value_at, inputs, f0, noise, input_scale)
    return findings


def _examine_tensor(t: _Tensor, order: np.ndarray, f: ValueAt, inputs: list[np.ndarray], f0: float,
                    noise: float, input_scale: float, budget: list[int], subgradient: bool) -> list[KinkFinding]:
    """Findings in one tensor: one by one, then in groups where a pattern holds (see the module's docstring)."""
    x = inputs[t.which]
    found: list[KinkFinding] = []
    patterns: set[tuple[str, str] | None] = set()

    def one(flat: int) -> bool:
        """Examine one element; False where it is off any kink (the tensor's search stops)."""
        budget[0] -= 1
        index = tuple(int(i) for i in np.unravel_index(flat, x.shape))
        sides = one_sided(f, inputs, t.which, index, f0, t.scale, noise, input_scale)
        if sides is None:
            return True  # not finite nearby: nothing to say, the element stays disputed
        if not sides.kink:
            return False
        e, a, room = float(t.e[index]), float(t.a[index]), float(t.slack[index])
        found.append(_finding(t, index, sides, e, a, room, subgradient))
        patterns.add(_pattern(sides, e, a, room))
        return True

    pending = list(order)
    while pending and len(found) < ONE_BY_ONE:
        if budget[0] <= 0 or not one(int(pending.pop(0))):
            return found
    rng = np.random.default_rng(len(pending))
    groups = [np.array(pending, dtype=np.int64)] if pending else []
    while groups:
        group = groups.pop(0)
        pattern = next(iter(patterns)) if len(patterns) == 1 else None
        if len(group) > 2 and pattern is not None:
            accepted = _group_follows(t, group, pattern, f, inputs, f0, noise, input_scale, rng, subgradient)
            if accepted is not None:
                found += accepted
                continue
            half = len(group) // 2
            groups[:0] = [group[:half], group[half:]]
            continue
        for flat in group:
            if budget[0] <= 0 or not one(int(flat)):
                return found
    return found


def _finding(t: _Tensor, index: tuple[int, ...], sides: OneSided, e: float, a: float, room: float,
             subgradient: bool) -> KinkFinding:
    between = sides.contains(e, room)
    status: Status = "accepted" if subgradient and between and sides.contains(a, room) else "rejected"
    if status == "rejected" and t.within_rounding is not None and bool(t.within_rounding[index]) and not _exact(
            t, index):
        status = "inconclusive"
    return KinkFinding(t.name, index, sides, e, a, status, between)


def _exact(t: _Tensor, index: tuple[int, ...]) -> bool:
    """Whether the element sits on its kink by its exact input value: zero, or tied with another element.

    There both sides evaluate the kink itself and differ by convention; elsewhere a disagreement the
    rounding floor explains is a branch that rounding of an intermediate (a cancelling pre-activation)
    flips on one side: the two sides take different branches by rounding alone.
    """
    value = t.x[index]
    return bool(value == 0) or int(np.count_nonzero(t.x == value)) > 1


def _group_follows(t: _Tensor, group: np.ndarray, pattern: tuple[str, str], f: ValueAt, inputs: list[np.ndarray],
                   f0: float, noise: float, input_scale: float, rng: np.random.Generator,
                   subgradient: bool) -> list[KinkFinding] | None:
    """Findings for every element of ``group`` if moving them together along random positive weights changes the
    value at the slopes the pattern predicts (the reference's values from one side, torch's from the other);
    else None. Four evaluations."""
    x = inputs[t.which]
    values = np.asarray(x, dtype=np.float64).reshape(-1)[group]
    scales = np.maximum(np.abs(values), _step_scale(x, 0.0, input_scale))
    weights = scales * rng.uniform(0.5, 1.5, group.size)
    sides = _sides(f, inputs, t.which, group, weights, f0, STEP, noise)
    if sides is None:
        return None
    left, right, rounding = sides
    e, a, slack = (arr.reshape(-1)[group] for arr in (t.e, t.a, t.slack))
    by_side = {pattern[0]: float(np.dot(weights, e)), pattern[1]: float(np.dot(weights, a))}
    room = 64 * rounding + float(np.dot(weights, slack)) + 1e-9 * float(np.dot(weights, np.abs(e) + np.abs(a)))
    if abs(by_side["left"] - left) > room or abs(by_side["right"] - right) > room:
        return None
    out = []
    for flat, ei, ai in zip(group, e, a, strict=True):
        index = tuple(int(i) for i in np.unravel_index(int(flat), x.shape))
        one = {pattern[0]: float(ei), pattern[1]: float(ai)}
        element = OneSided(one["left"], one["right"], True, 3 * rounding, 0.0)
        out.append(_finding(t, index, element, float(ei), float(ai), float(t.slack.reshape(-1)[flat]), subgradient))
    return out


def _judge_ties(t: _Tensor, found: list[KinkFinding], f: ValueAt, inputs: list[np.ndarray], f0: float,
                noise: float, input_scale: float) -> list[KinkFinding]:
    """Judge every tie among the findings: elements of the tensor with equal input values, moved together.

    Moving all of them at once changes the value at one-sided slopes the gradient summed over the tie
    must lie between, for the reference and for torch; a tie whose sums do not rejects its elements.
    """
    x = np.asarray(inputs[t.which], dtype=np.float64).reshape(-1)
    verdicts: dict[float, str | None] = {}
    for finding in found:
        value = float(x[np.ravel_multi_index(finding.index, t.e.shape) if t.e.ndim else 0])
        if value not in verdicts:
            verdicts[value] = _tie_verdict(t, np.flatnonzero(x == value), value, f, inputs, f0, noise, input_scale)
    out = []
    for finding in found:
        value = float(x[np.ravel_multi_index(finding.index, t.e.shape) if t.e.ndim else 0])
        reason = verdicts[value]
        out.append(replace(finding, status="rejected", tie=reason) if reason else finding)
    return out


def _tie_verdict(t: _Tensor, tie: np.ndarray, value: float, f: ValueAt, inputs: list[np.ndarray], f0: float,
                 noise: float, input_scale: float) -> str | None:
    """Why the gradient summed over ``tie`` is not between the tie's one-sided slopes, or None."""
    if tie.size < 2:
        return None
    x = inputs[t.which]
    h = STEP * _step_scale(x, value, input_scale)
    sides = _sides(f, inputs, t.which, tie, np.ones(tie.size), f0, h, noise)
    if sides is None:
        return None
    left, right, rounding = sides
    group = OneSided(left, right, True, 3 * rounding)
    room = float(t.slack.reshape(-1)[tie].sum())
    sums = {"the reference": float(t.e.reshape(-1)[tie].sum()), "torch": float(t.a.reshape(-1)[tie].sum())}
    wrong = [who for who, total in sums.items() if not group.contains(total, room)]
    if not wrong:
        return None
    told = ", ".join(f"{who} {sums[who]:.6g}" for who in wrong)
    return (f"it is one of {tie.size} tied elements (input value {value:.6g}): moving them together changes the value "
            f"at one-sided slopes {left:.6g} and {right:.6g}, but the gradient summed over the tie is {told} "
            "(a tie counted more than once?)")
