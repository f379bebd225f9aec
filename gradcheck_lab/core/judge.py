"""One comparison over every tensor of a gradient check: the value, then each gradient.

A :class:`Judge` compares the reference with one torch run (:func:`~gradcheck_lab.core.comparison.compare`
on each tensor), takes the measured rounding floor once it is known, excuses elements accepted on kinks, and
sorts the elements past their bound into *beyond* and *unresolved* (see :mod:`gradcheck_lab.core.verdict`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from gradcheck_lab.core.comparison import Comparison, allowed_error, compare, finite_or_zero, largest_magnitude
from gradcheck_lab.core.tolerances import Tolerance


def condition_scale(magnitudes: Sequence[np.ndarray], inputs: Sequence[np.ndarray]) -> float:
    """sum_k <|grad_k|, |x_k|> from ``magnitudes`` |grad_k|: the size of the terms whose rounding shows in the value."""
    return float(sum(np.vdot(g, np.abs(x)) for g, x in zip(magnitudes, inputs, strict=True)))


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
    nearby: list[float] = field(default_factory=list)
    excused: list[np.ndarray | None] = field(default_factory=list)
    comparisons: dict[str, Comparison] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.excused = [None] * len(self.expected)  # a mask only once an element is excused
        self.comparisons = self._compare(None)

    def _tolerance(self, k: int) -> tuple[Tolerance, float]:
        if k == 0:  # the value: rounding relative to its condition scale
            return replace(self.tol, gtol=self.tol.rtol), self.condition()
        return self.tol, 0.0

    def judged_expected(self, k: int) -> np.ndarray:
        """The reference, with excused elements (accepted kinks) replaced by torch's value."""
        excused = self.excused[k]
        return self.expected[k] if excused is None else np.where(excused, self.actual[k], self.expected[k])

    def _compare(self, floor: list[np.ndarray] | None) -> dict[str, Comparison]:
        out = {}
        for k, name in enumerate(self.names):
            if k == 0 and floor is None:  # the condition scale costs a pass over every input: only if needed
                first = compare(self.judged_expected(0), self.actual[0], self.tol, allow_nonfinite=self.allow_nonfinite)
                if first.passed:
                    out[name] = first
                    continue
            tol, global_scale = self._tolerance(k)
            out[name] = compare(self.judged_expected(k), self.actual[k], tol, global_scale=global_scale,
                                floor=None if floor is None else floor[k], allow_nonfinite=self.allow_nonfinite)
        return out

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.comparisons.values())

    @property
    def nonfinite(self) -> bool:
        return any(c.nonfinite for c in self.comparisons.values())

    def apply_floor(self, floor: list[np.ndarray] | None, nearby: Sequence[float] = ()) -> None:
        """Judge again with the measured rounding floor (None: it could not be measured).

        ``nearby`` holds each tensor's largest magnitude around the input (see
        :class:`~gradcheck_lab.core.floor.MeasuredFloor`): the scale what must be resolved is measured against,
        so that a gradient exactly zero here is not judged against its own rounding noise.
        """
        self.floor = floor
        if nearby:
            self.nearby = list(nearby)
        self.comparisons = self._compare(floor)

    def _masks(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(beyond, unresolved) for tensor ``k``: past the floor-widened bound; past the a-priori one only,
        where the floor exceeds what must be resolved."""
        tol, global_scale = self._tolerance(k)
        e, a = finite_or_zero(self.judged_expected(k)), finite_or_zero(self.actual[k])
        error = np.abs(a - e)
        floor = None if self.floor is None else self.floor[k]
        beyond = error > allowed_error(e, a, tol, global_scale=global_scale, floor=floor)
        if floor is None:
            return beyond, np.zeros_like(beyond)
        apriori = error > allowed_error(e, a, tol, global_scale=global_scale)
        scale = max(largest_magnitude(e), largest_magnitude(a))
        if self.nearby and scale <= tol.floor * largest_magnitude(floor):
            # The whole tensor is rounding noise here (a gradient exactly zero at an extremum or a symmetry):
            # what must be resolved is measured against the function's scale for it nearby, not the noise.
            scale = max(scale, self.nearby[k])
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
