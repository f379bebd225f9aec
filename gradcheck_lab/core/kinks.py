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
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from gradcheck_lab.core.comparison import finite_or_zero, largest_magnitude

_EPS = float(np.finfo(np.float64).eps)
STEP = 2.0**-20
"""Relative step: small enough that no other kink lies within it, large enough for float64 differences."""
CONFIRM = 16
"""A kink's gap in slopes must hold at a step this many times larger (see :func:`one_sided`)."""


@dataclass(frozen=True)
class OneSided:
    """The one-sided derivatives of the checked function in one input element."""

    left: float
    right: float
    kink: bool
    error: float = 0.0
    """How far rounding can move each extrapolated one-sided derivative."""

    def contains(self, value: float, slack: float) -> bool:
        """Whether ``value`` lies between the one-sided derivatives (within ``slack`` and their own error)."""
        low, high = min(self.left, self.right), max(self.left, self.right)
        return low - slack - self.error <= value <= high + slack + self.error

    def describe(self) -> str:
        return f"one-sided derivatives {self.left:.6g} (from the left) and {self.right:.6g} (from the right)"


def one_sided(f: Callable[[list[np.ndarray]], float], inputs: Sequence[np.ndarray], which: int,
              index: tuple[int, ...], f0: float, gradient_scale: float) -> OneSided | None:
    """One-sided derivatives of ``f`` (a scalar function of the full input list) in ``inputs[which][index]``.

    ``gradient_scale`` (the tensor's largest gradient magnitude) sets how large a gap in slopes
    counts as a kink rather than rounding. A kink's gap is the jump in slope whatever the step;
    rounding hidden inside ``f`` (an intermediate far larger than its value) makes a gap that
    shrinks like 1/step, so a gap is a kink only if it holds, within a quarter, at a step
    ``CONFIRM`` times larger too. Returns None where ``f`` is not finite nearby.
    """
    x = inputs[which]
    scale = max(abs(float(x[index])), float(np.max(np.abs(x), initial=0.0)) * 2.0**-10, 2.0**-30)
    h = STEP * scale
    first = _sides(f, inputs, which, index, f0, h)
    if first is None:
        return None
    left, right, rounding = first
    gap = abs(right - left)
    kink = gap > max(64 * rounding, 1e-6 * gradient_scale)
    if kink:
        wider = _sides(f, inputs, which, index, f0, CONFIRM * h)
        kink = wider is not None and abs(abs(wider[1] - wider[0]) - gap) <= 0.25 * gap
    return OneSided(left, right, kink, 3 * rounding)  # Richardson: 2 D(h/2) - D(h) triples D's rounding


def _sides(f: Callable[[list[np.ndarray]], float], inputs: Sequence[np.ndarray], which: int,
           index: tuple[int, ...], f0: float, h: float) -> tuple[float, float, float] | None:
    """(left, right, rounding): Richardson one-sided derivatives from steps h and h/2 (None: not finite)."""
    x = inputs[which]
    values = {}
    for step in (h, h / 2, -h / 2, -h):
        point = list(inputs)
        moved = np.array(x, copy=True)
        moved[index] += step
        point[which] = moved
        values[step] = f(point)
    if not all(np.isfinite(v) for v in (*values.values(), f0)):
        return None
    right = 2 * (values[h / 2] - f0) / (h / 2) - (values[h] - f0) / h
    left = 2 * (f0 - values[-h / 2]) / (h / 2) - (f0 - values[-h]) / h
    rounding = 8 * _EPS * max(abs(f0), *(abs(v) for v in values.values())) / (h / 2)
    return left, right, rounding


KINK_BUDGET = 64
"""The most elements whose one-sided derivatives are measured in one check (four evaluations each)."""


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
    names: Sequence[str],
    expected: Sequence[np.ndarray],
    actual: Sequence[np.ndarray],
    slack: Sequence[np.ndarray],
    candidates: Sequence[np.ndarray],
    value_at: Callable[[list[np.ndarray]], float],
    inputs: list[np.ndarray],
    variables: Sequence[int],
    f0: float,
    *,
    subgradient: bool,
) -> list[KinkFinding]:
    """Measure one-sided derivatives at the candidate elements (largest errors first, within the budget).

    Args:
        names, expected, actual: the labels, reference and torch results (the value, then each gradient).
        slack: per tensor, the per-element allowed error (what the bound allows between the two sides).
        candidates: per tensor, a boolean mask of the disputed elements.
        value_at: the checked scalar function of the full input list.
        inputs, variables, f0: the full input list, which of them are differentiated, and the value there.
        subgradient: whether a value between the one-sided derivatives is accepted.

    Returns:
        One finding per element found on a kink; ``accepted`` where ``subgradient`` holds and both the
        reference and torch lie between the one-sided derivatives (within the element's slack). Nothing
        is mutated: the caller excuses accepted findings.

    In each tensor the search stops at the first element off any kink: its disagreement stands
    whatever the smaller ones are, so a wrong gradient costs four evaluations per tensor here.
    """
    findings: list[KinkFinding] = []
    budget = KINK_BUDGET
    for k in range(1, len(names)):  # gradients only: the value has no kinks of its own
        mask = candidates[k]
        if not mask.any() or budget <= 0:
            continue
        e, a = expected[k], actual[k]
        errors = np.where(mask, np.abs(finite_or_zero(a) - finite_or_zero(e)), -1.0)
        count = min(budget, int(mask.sum()))
        flat_errors = errors.ravel()
        top = np.argpartition(flat_errors, flat_errors.size - count)[flat_errors.size - count:]
        order = top[np.argsort(flat_errors[top])[::-1]]
        scale = max(largest_magnitude(finite_or_zero(e)), largest_magnitude(finite_or_zero(a)))
        for flat in order:
            index = tuple(int(i) for i in np.unravel_index(int(flat), mask.shape))
            budget -= 1
            sides = one_sided(value_at, inputs, variables[k - 1], index, f0, scale)
            if sides is None:
                continue
            if not sides.kink:
                break  # a larger error off any kink decides this tensor; smaller ones cannot excuse it
            room = float(slack[k][index]) + 1e-9 * max(abs(sides.left), abs(sides.right))
            accepted = subgradient and sides.contains(float(e[index]), room) and sides.contains(float(a[index]), room)
            findings.append(KinkFinding(names[k], index, sides, float(e[index]), float(a[index]), accepted))
    return findings
