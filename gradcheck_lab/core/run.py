"""What a check ran: each side's results, how to run the sides again, and the settings a verdict reads."""

from __future__ import annotations

import functools
from collections.abc import Collection
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from gradcheck_lab.core.comparison import Comparison
from gradcheck_lab.core.report import ByName, Report


@dataclass(frozen=True)
class SideResults:
    """One side's results: the scalar value and the gradients of the non-constant inputs, in float64.

    ``low_precision`` names results the function returned below float64 (a reference computing in
    float32); ``mutated`` the inputs it modified in place.
    """

    value: np.ndarray
    grads: list[np.ndarray]
    low_precision: tuple[str, ...] = ()
    mutated: tuple[str, ...] = ()

    def results(self) -> list[np.ndarray]:
        return [self.value, *self.grads]


Point = list[np.ndarray]


class Evaluations(Protocol):
    """Runs the sides again at moved inputs (a full input list, float64): what the floor, kinks and oracle need."""

    def results_reference(self, point: Point) -> list[np.ndarray] | None:
        """The reference's ``[value, *grads]`` at ``point``, or None where it fails."""

    def results_float64(self, point: Point) -> list[np.ndarray] | None:
        """torch's ``[value, *grads]`` in float64 at ``point``, or None where it cannot run in float64."""

    def results_torch(self, point: Point, dtype: torch.dtype) -> list[np.ndarray] | None:
        """torch's ``[value, *grads]`` in ``dtype`` at ``point``, or None where it fails."""

    def value(self, point: Point, fresh: Collection[int] = ()) -> float:
        """The float64 value at ``point`` (``fresh``: inputs made for this call alone)."""


@dataclass(frozen=True)
class CheckRun:
    """Everything a verdict is computed from: the rounded inputs, the three runs, and the check's settings.

    ``inputs`` is the full input list (rounded to ``dtype``), ``variables`` the indices of the differentiated
    ones, ``names`` their display labels; ``reference`` and ``torch_side`` ran on ``inputs`` (torch in ``dtype`` on
    ``device``), ``truth`` is torch in float64 (None where it cannot run in float64). ``oracle`` is
    ``(directions, seed)`` when finite differences vote. ``reference_dtype`` is the precision the caller
    declared the reference computes in, and ``torch_at_reference_dtype`` torch run in it on ``inputs`` (see
    :mod:`gradcheck_lab.core.precision`).
    """

    inputs: list[np.ndarray]
    variables: list[int]
    names: list[str]
    reference: SideResults
    torch_side: SideResults
    truth: SideResults | None
    device: torch.device
    dtype: torch.dtype
    rtol: float | None = None
    atol: float | None = None
    tf32: bool = False
    allow_nonfinite: bool = False
    subgradient: bool = False
    oracle: tuple[int, int] | None = None
    reference_dtype: torch.dtype | None = None
    torch_at_reference_dtype: SideResults | None = None
    keys: list[str] | None = None

    def key_of(self) -> dict[str, str]:
        """Display label -> plain name (the report's keys; ``keys``, or the labels themselves where not given)."""
        return self._key_of

    @functools.cached_property
    def _key_of(self) -> dict[str, str]:  # (read several times per report: made once)
        return dict(zip(["value", *self.names], ["value", *(self.keys or self.names)], strict=True))

    def by_name(self, comparisons: dict[str, Comparison], *, gradients_only: bool = False) -> ByName:
        """``comparisons`` (keyed by label) keyed by plain name; the labels still resolve (deprecated)."""
        key_of = self.key_of()
        return ByName({key_of[n]: c for n, c in comparisons.items() if not (gradients_only and n == "value")},
                      labels={key_of[n]: n for n in self.names})


@dataclass(frozen=True)
class Outcome:
    """The report, and the lines about elements on kinks that its message shows."""

    report: Report
    kinks: list[str]
