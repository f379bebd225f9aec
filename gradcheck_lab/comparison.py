"""The one comparison helper every check goes through, so a failure always reads the same."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gradcheck_lab.tolerances import Tolerance


@dataclass(frozen=True)
class Comparison:
    """How ``actual`` compares with ``expected`` under a tolerance.

    ``max_rel_error`` is the largest error relative to the tensor's largest magnitude;
    ``ratio`` is the largest error over its allowed bound (<= 1 passes); ``index`` is the
    element with the largest ratio; ``nonfinite`` describes a NaN/Inf problem, if any.
    """

    passed: bool
    max_abs_error: float
    max_rel_error: float
    ratio: float
    index: tuple[int, ...]
    expected: float
    actual: float
    nonfinite: str | None = None


def allowed_error(expected: np.ndarray, actual: np.ndarray, tol: Tolerance, *, global_scale: float = 0.0,
                  noise: np.ndarray | None = None) -> np.ndarray:
    """The per-element bound of :mod:`gradcheck_lab.tolerances`; non-finite entries count as zero."""
    return _bound(np.abs(finite_or_zero(expected)), np.abs(finite_or_zero(actual)), tol, global_scale, noise)


def _bound(abs_expected: np.ndarray, abs_actual: np.ndarray, tol: Tolerance, global_scale: float,
           noise: np.ndarray | None) -> np.ndarray:
    scale = max(float(abs_expected.max(initial=0.0)), float(abs_actual.max(initial=0.0)))
    bound = abs_expected * tol.rtol
    bound += tol.atol + tol.ntol * scale + tol.gtol * global_scale
    if noise is not None and tol.noise:
        bound += tol.noise * finite_or_zero(noise)
    return bound


def finite_or_zero(x: np.ndarray) -> np.ndarray:
    """``x`` with NaN and Inf replaced by 0 (and no copy when there are none)."""
    x = np.asarray(x, dtype=np.float64)
    return x if np.isfinite(x).all() else np.where(np.isfinite(x), x, 0.0)


def compare(
    expected: np.ndarray,
    actual: np.ndarray,
    tol: Tolerance,
    *,
    global_scale: float = 0.0,
    noise: np.ndarray | None = None,
    allow_nonfinite: bool = False,
) -> Comparison:
    """Compare two same-shaped float64 arrays element by element (see :mod:`gradcheck_lab.tolerances`).

    Non-finite values fail unless ``allow_nonfinite``, and then only where both sides hold
    the same value (NaN with NaN, +Inf with +Inf).
    """
    expected = np.asarray(expected, dtype=np.float64)
    actual = np.asarray(actual, dtype=np.float64)
    if expected.shape != actual.shape:
        raise ValueError(f"cannot compare shapes {expected.shape} and {actual.shape}")
    finite_e, finite_a = np.isfinite(expected), np.isfinite(actual)
    bad = ~(finite_e & finite_a)
    if bad.any():
        same = (np.isnan(expected) & np.isnan(actual)) | (expected == actual)
        if not allow_nonfinite or (bad & ~same).any():
            where = np.argwhere(bad & ~same if allow_nonfinite else bad)[0]
            index = tuple(int(i) for i in where)
            e, a = float(expected[index]), float(actual[index])
            both = "; both sides are non-finite there" if not (finite_e[index] or finite_a[index]) else ""
            return Comparison(False, float("inf"), float("inf"), float("inf"), index, e, a,
                              nonfinite=f"non-finite value at {index}: expected {e!r}, got {a!r}{both}")
        expected = np.where(bad, 0.0, expected)
        actual = np.where(bad, 0.0, actual)
    error = np.abs(actual - expected)
    abs_expected, abs_actual = np.abs(expected), np.abs(actual)
    scale = max(float(abs_expected.max(initial=0.0)), float(abs_actual.max(initial=0.0)))
    bound = _bound(abs_expected, abs_actual, tol, global_scale, noise)
    ratios = np.divide(error, bound, out=np.zeros_like(error), where=error > 0)
    ratios[(error > 0) & (bound == 0)] = np.inf
    flat = int(np.argmax(ratios)) if ratios.size else 0
    index = tuple(int(i) for i in np.unravel_index(flat, ratios.shape)) if ratios.size else ()
    max_abs = float(error.max(initial=0.0))
    return Comparison(
        passed=bool(np.all(error <= bound)),
        max_abs_error=max_abs,
        max_rel_error=max_abs / scale if scale > 0 else 0.0,
        ratio=float(ratios.max(initial=0.0)),
        index=index,
        expected=float(expected[index]) if ratios.size else 0.0,
        actual=float(actual[index]) if ratios.size else 0.0,
    )
