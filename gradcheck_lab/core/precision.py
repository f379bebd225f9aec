"""The reference's own precision: measured apart from the floor, and judged at its own precision when declared.

A reference that computes in float32 inside a float64 check brings its own rounding (2^-24 relative, eight
orders above float64's). If that rounding were allowed to set the measured floor, a float32-sized bug would
pass; so it is measured here, before the floor, from what the reference returns:

- its results are float32 (or float16) numbers while torch's float64 results at the same inputs are not
  (it computed in float32 and cast at the end, or returned float32 arrays);
- its results do not change when the inputs are rounded to float32, while torch's float64 results do (it
  cast its inputs to float32 first, so the digits below float32's never reached it).

Either is evidence that it computes below float64: the check fails with that cause named, unless the caller
declares ``reference_dtype=``. Then the reference is judged by the rule kernel test suites apply (issue #21):
per tensor, its error against torch's float64 truth must be at most ``FACTOR`` times torch's own error when
torch runs in that dtype on the same inputs, plus ``FLOOR_ULPS`` units of that dtype's roundoff at the
tensor's scale (torch's own error can be near zero by luck: a scalar loss, a reduction computed exactly).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from gradcheck_lab.core.comparison import Comparison, compare, finite_or_zero, largest_magnitude
from gradcheck_lab.core.dtypes import dtype_name, round_to_dtype, unit_roundoff
from gradcheck_lab.core.judge import condition_scale
from gradcheck_lab.core.report import Report, Verdict
from gradcheck_lab.core.run import CheckRun, Evaluations, Outcome
from gradcheck_lab.core.tolerances import ATOL, Tolerance
from gradcheck_lab.errors import NondeterministicReferenceError

FACTOR = 2.0
"""The reference's error may be this many times torch's own error in the reference's dtype."""
FLOOR_ULPS = 4.0
"""Units of the dtype's roundoff at the tensor's scale always allowed (chains of rounded ops, a reduction)."""

_BELOW = {"float16": np.float16, "float32": np.float32}
EVIDENCE = 2
"""How many of torch's float64 results must fall off a dtype's grid to read the reference's as that dtype's."""


def _significant(reference: Sequence[np.ndarray], truth: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The elements that can show a precision: finite, nonzero on the reference's side, and above 2^-20 of
    their tensor's largest magnitude on torch's (rounding noise, such as torch's 1e-19 where the reference
    is exactly zero, shows none)."""
    es, ts = [], []
    for e, t in zip(reference, truth, strict=True):
        e, t = finite_or_zero(e).ravel(), finite_or_zero(t).ravel()
        keep = (e != 0) & (np.abs(t) > 2.0**-20 * largest_magnitude(t))
        es.append(e[keep])
        ts.append(t[keep])
    return np.concatenate(es), np.concatenate(ts)


def _exact_in(x: np.ndarray, dtype: type[np.floating]) -> np.ndarray:
    with np.errstate(over="ignore"):
        return np.asarray(x.astype(dtype).astype(np.float64) == x)


def returns_below_float64(reference: Sequence[np.ndarray], truth: Sequence[np.ndarray]) -> str | None:
    """"float16" or "float32" where the reference's results are all numbers of that dtype and torch's are not.

    Only elements that can show a precision count; at least ``EVIDENCE`` of torch's must fall off the
    dtype's grid while every one of the reference's lies on it.
    """
    e, t = _significant(reference, truth)
    for name, dtype in _BELOW.items():
        if _exact_in(e, dtype).all() and int(np.count_nonzero(~_exact_in(t, dtype))) >= EVIDENCE:
            return name
    return None


def ignores_low_digits(reference: Sequence[np.ndarray], reference_rounded: Sequence[np.ndarray] | None,
                       truth: Sequence[np.ndarray], truth_rounded: Sequence[np.ndarray] | None) -> bool:
    """Whether the reference gave bit-identical results at inputs rounded to float32 where torch's changed."""
    if reference_rounded is None or truth_rounded is None:
        return False
    same = all(np.array_equal(a, b) for a, b in zip(reference, reference_rounded, strict=True))
    moved = any(not np.array_equal(a, b) for a, b in zip(truth, truth_rounded, strict=True))
    return same and moved


def cause(found: str) -> str:
    """The headline of a check failed by a reference computing below float64."""
    return (f"the reference computes in {found}, below the float64 the check needs: its own {found} rounding "
            f"would set the floor and hide bugs of that size; compute in float64, or pass "
            f"reference_dtype='{found}' to judge it at its own precision (against torch's own {found} error)")


def judge_at_precision(names: Sequence[str], reference: Sequence[np.ndarray], truth: Sequence[np.ndarray],
                       torch_low: Sequence[np.ndarray] | None, dtype: torch.dtype, factor: float = FACTOR, *,
                       value_scale: float = 0.0) -> tuple[dict[str, Comparison], dict[str, Tolerance], float]:
    """The reference against torch's float64 ``truth`` by the factor rule, one comparison per tensor.

    ``names``, ``reference``, ``truth``, ``torch_low`` list the value first, then each gradient; the value's
    floor is taken at ``value_scale`` (its condition scale, sum_k <|grad_k|, |x_k|>) where that is larger
    than the value: a value that cancels keeps the rounding of its terms.

    Returns the comparisons and their tolerances (each with one absolute bound, ``factor`` x torch's own
    error in ``dtype`` plus the floor, as its ``atol`` term) and the error ratio: the largest over tensors
    of the reference's error over torch's own (inf where torch's own error is 0 and the reference's is
    not; 0 where both are 0).
    """
    u = unit_roundoff(dtype)
    comparisons, tolerances, ratio = {}, {}, 0.0
    for k, name in enumerate(names):
        e, t = finite_or_zero(reference[k]), finite_or_zero(truth[k])
        own = 0.0 if torch_low is None else float(np.max(np.abs(finite_or_zero(torch_low[k]) - t), initial=0.0))
        error = float(np.max(np.abs(e - t), initial=0.0))
        scale = max(largest_magnitude(t), largest_magnitude(e), value_scale if k == 0 else 0.0)
        bound = factor * own + FLOOR_ULPS * u * scale
        tol = Tolerance(rtol=0.0, atol=max(bound, ATOL), ntol=0.0, resolution=max(bound / scale, u) if scale else 1.0,
                        precision=dtype_name(dtype))
        comparisons[name], tolerances[name] = compare(reference[k], truth[k], tol), tol
        ratio = max(ratio, error / own if own else (float("inf") if error else 0.0))
    return comparisons, tolerances, ratio


def require_deterministic(run: CheckRun, evaluate: Evaluations) -> None:
    """Raise :class:`NondeterministicReferenceError` where the reference differs from itself on the same inputs.

    Its disagreement with torch would otherwise be read as rounding (a fresh draw at every moved point)."""
    __tracebackhide__ = True
    again = evaluate.results_reference([np.array(x, copy=True) for x in run.inputs])
    first = run.reference.results()
    if again is None:
        return
    for name, a, b in zip(["value", *run.names], first, again, strict=True):
        if not np.array_equal(a, b, equal_nan=True):
            where = "value" if name == "value" else f"gradient of {name}"
            diff = np.abs(finite_or_zero(a) - finite_or_zero(b))
            raise NondeterministicReferenceError(
                f"the reference is not deterministic: called twice on the same inputs, its {where} differs by up "
                f"to {float(diff.max(initial=0.0)):.3g}: uninitialized weights or random state? (seed its random "
                "numbers, or draw the weights once, outside the function)")


def computes_below_float64(run: CheckRun, evaluate: Evaluations) -> str | None:
    """"float32" or "float16" where the reference shows it computes below float64 (see the module docstring)."""
    assert run.truth is not None
    reference, truth = run.reference.results(), run.truth.results()
    found = returns_below_float64(reference, truth)
    if found is not None or run.dtype != torch.float64:
        return found
    point = [round_to_dtype(x, torch.float32) if k in run.variables else x for k, x in enumerate(run.inputs)]
    if all(np.array_equal(p, x) for p, x in zip(point, run.inputs, strict=True)):
        return None  # the inputs are float32 numbers already: nothing to tell
    informative = _informative(truth, [run.inputs[k] for k in run.variables])
    if not any(informative[1:]):
        return None  # every gradient is rounding noise next to the value (a saturated layer): nothing to tell
    moved_reference, moved_truth = evaluate.results_reference(point), evaluate.results_float64(point)
    if moved_reference is None or moved_truth is None:
        return None
    if ignores_low_digits([r for r, i in zip(reference, informative, strict=True) if i],
                          [r for r, i in zip(moved_reference, informative, strict=True) if i],
                          [t for t, i in zip(truth, informative, strict=True) if i],
                          [t for t, i in zip(moved_truth, informative, strict=True) if i]):
        return "float32"
    return None


INFORMATIVE = 2.0**-40
"""A gradient whose first-order effect on the value, sum |g_i| |x_i|, is below this fraction of the value's
magnitude carries no digits float32 rounding could remove (a layer saturated throughout): it is no evidence
of the precision the reference computes in."""


def _informative(truth: Sequence[np.ndarray], inputs: Sequence[np.ndarray]) -> list[bool]:
    """Per result (value, then each gradient): whether it can show the precision of the reference's arithmetic."""
    value = abs(float(np.asarray(truth[0]).reshape(-1)[0])) if np.size(truth[0]) else 0.0
    effects = [float(np.vdot(np.abs(finite_or_zero(g)), np.abs(x))) for g, x in zip(truth[1:], inputs, strict=True)]
    scale = max([value, *effects])
    return [True] + [effect > INFORMATIVE * scale for effect in effects]


def judged_at_declared_precision(run: CheckRun, labels: list[str]) -> Outcome:
    """A reference declared to compute in ``run.reference_dtype``: the factor rule of core.precision."""
    assert run.truth is not None and run.reference_dtype is not None
    low = None if run.torch_at_reference_dtype is None else run.torch_at_reference_dtype.results()
    condition = condition_scale([np.abs(finite_or_zero(g)) for g in run.truth.grads],
                           [run.inputs[k] for k in run.variables])
    comparisons, tolerances, ratio = judge_at_precision(labels, run.reference.results(),
                                                                  run.truth.results(), low, run.reference_dtype,
                                                                  value_scale=condition)
    verdict: Verdict = "passed" if all(c.passed for c in comparisons.values()) else "mismatch"
    name = dtype_name(run.reference_dtype)
    note = (f"the reference is judged at its declared precision, {name}: its error against torch in float64 is "
            f"{ratio:.3g}x torch's own {name} error on the same inputs (at most {FACTOR:g}x, plus "
            f"{FLOOR_ULPS:g} units of {name} roundoff at each tensor's scale)")
    worst_name, worst = max(comparisons.items(), key=lambda item: item[1].ratio)
    where = "the value" if worst_name == "value" else f"the gradient of {worst_name}"
    headline = None if verdict == "passed" else (
        f"the reference, computing in {name}, is less accurate than torch in {name} on the same inputs: its "
        f"error against torch in float64 is {ratio:.3g}x torch's own in {where}")
    report = Report(
        passed=verdict == "passed", device=str(run.device), dtype=dtype_name(run.dtype),
        max_abs_error=max(c.max_abs_error for c in comparisons.values()),
        max_rel_error=max(c.max_rel_error for c in comparisons.values()), ratio=worst.ratio,
        worst_input=run.key_of()[worst_name], worst_index=worst.index, reference_value=worst.expected,
        torch_value=worst.actual, tolerance=tolerances[worst_name], value=comparisons["value"],
        gradients=run.by_name(comparisons, gradients_only=True), verdict=verdict, math=run.by_name(comparisons),
        math_tolerance=None, bound_terms=dict(worst.terms), notes=(note,), cause=headline, error_ratio=ratio,
        labels={v: k for k, v in run.key_of().items() if k != "value"})
    return Outcome(report, [])
