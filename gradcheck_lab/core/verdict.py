"""From the results of a check to its verdict: the comparisons, the measured floor, kinks and the oracle.

See :mod:`gradcheck_lab.core.tolerances` for the error model. :func:`judge` takes one
:class:`~gradcheck_lab.core.run.CheckRun` (what both sides returned on the rounded inputs, and the check's
settings) and an :class:`~gradcheck_lab.core.run.Evaluations` (how to run either side again at moved inputs,
for the floor, kinks and the oracle) and returns an :class:`~gradcheck_lab.core.run.Outcome`: the
:class:`~gradcheck_lab.core.report.Report` with the lines about kinks its message shows. The reference's own
precision and determinism are checked first (:mod:`gradcheck_lab.core.precision`).

A :class:`~gradcheck_lab.core.judge.Judge` holds one comparison (the math one, or the dtype one) over
every tensor of a check (the value, then each gradient), takes the rounding floor once it is measured, and
sorts the elements that exceed the bound into *beyond* (a mismatch, unless a kink excuses it) and
*unresolved* (within the floor, but the floor is above what the dtype must resolve: inconclusive).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import numpy as np
import torch

from gradcheck_lab.core import precision
from gradcheck_lab.core.comparison import allowed_error, finite_or_zero
from gradcheck_lab.core.diagnosis import diagnose_mismatch, diagnose_value, input_shapes
from gradcheck_lab.core.dtypes import dtype_name
from gradcheck_lab.core.floor import rerounded_agreement, rounding_floor
from gradcheck_lab.core.judge import Judge, condition_scale
from gradcheck_lab.core.kinks import KinkFinding, examine_kinks
from gradcheck_lab.core.report import OracleVotes, Report, Verdict
from gradcheck_lab.core.run import CheckRun, Evaluations, Outcome, Point, SideResults
from gradcheck_lab.core.tolerances import (
    WIDE_MOVE,
    conditioning_size,
    gradient_tolerance,
    math_tolerance,
    perturbation_size,
)
from gradcheck_lab.core.votes import oracle_votes
from gradcheck_lab.errors import NonFiniteError


def judge(run: CheckRun, evaluate: Evaluations) -> Outcome:
    """The comparisons, the floor where needed, kinks and the oracle: the verdict of one check.

    The math comparison (reference against torch in float64) decides. The dtype comparison (against
    torch in ``dtype``) is what the report shows as errors; it decides only where torch cannot run in
    float64. Otherwise a low-precision run beyond its a-priori bound is a note: rounded intermediates
    (a tanh that saturates to exactly 1, a float16 gradient that underflows) legitimately move it
    further than input perturbations can show, so it cannot tell a torch-side bug from the dtype's limits.

    Raises:
        NonFiniteError: NaN or Inf on either side (unless ``run.allow_nonfinite``).
    """
    __tracebackhide__ = True
    reference, dtype = run.reference, run.dtype
    labels = ["value", *run.names]
    if run.reference_dtype is not None and run.truth is not None:
        return precision.judged_at_declared_precision(run, labels)
    inputs = [run.inputs[k] for k in run.variables]
    # |reference gradient| serves the value's condition scale and the oracle: computed once, if at all.
    magnitudes = functools.cache(lambda: [np.abs(finite_or_zero(g)) for g in reference.grads])
    condition = functools.cache(lambda: condition_scale(magnitudes(), inputs))
    dtype_tolerance = gradient_tolerance(dtype, rtol=run.rtol, atol=run.atol, tf32=run.tf32)
    torch_at: Callable[[Point], list[np.ndarray] | None]
    if run.truth is not None:
        deciding = Judge(labels, reference.results(), run.truth.results(),
                         math_tolerance(dtype, rtol=run.rtol, atol=run.atol), condition, run.allow_nonfinite)
        torch_at, arithmetic = evaluate.results_float64, "float64"
    else:
        deciding = Judge(labels, reference.results(), run.torch_side.results(), dtype_tolerance, condition,
                         run.allow_nonfinite)
        arithmetic = "tf32" if (run.tf32 and dtype == torch.float32) else dtype_name(dtype)
        torch_at = functools.partial(_in_dtype, evaluate, dtype)
    shown = deciding
    if run.truth is not None and dtype != torch.float64:
        shown = Judge(labels, reference.results(), run.torch_side.results(), dtype_tolerance, condition,
                      run.allow_nonfinite)
    if not run.allow_nonfinite and (deciding.nonfinite or shown.nonfinite):
        raise_nonfinite(reference, run.torch_side, run.names)  # the comparisons found it: say which side holds it
    if not deciding.passed and not deciding.nonfinite:
        precision.require_deterministic(run, evaluate)
    if not deciding.passed and not deciding.nonfinite and run.truth is not None:
        found = precision.computes_below_float64(run, evaluate)
        if found is not None:  # its own rounding must not set the floor: the check fails, the cause named
            beyond = deciding.beyond()
            pattern = diagnose_mismatch(run.names, deciding.expected[1:], deciding.actual[1:], beyond[1:], [],
                                        run.inputs, run.variables)
            report = _build_report(run, "mismatch", shown, deciding, None, [], [], pattern,
                                   cause=precision.cause(found))
            return Outcome(report, [])
    if not deciding.passed and not deciding.nonfinite:
        measure_floor(deciding, evaluate.results_reference, torch_at, run.inputs, run.variables, arithmetic)

    f0 = float((run.truth or reference).value)
    clear = deciding.passed and deciding.floor is None  # nothing past the a-priori bound: no mask to draw
    beyond, unresolved = (_clear(deciding), _clear(deciding)) if clear else (deciding.beyond(), deciding.unresolved())
    findings = [] if clear else _kinks(run, evaluate, deciding, shown, beyond, unresolved, f0)
    rerounded = 0 if clear else _rerounded(run, evaluate, torch_at, deciding, beyond, unresolved, findings)
    gradients_beyond = not clear and any(b.any() for b in beyond[1:])

    votes = None
    if run.oracle is not None:
        def value_at(point: Point) -> float:  # a moved input is made for the call; an unmoved one is the check's own
            return evaluate.value(point, fresh=frozenset(k for k in run.variables if point[k] is not run.inputs[k]))

        votes = oracle_votes(value_at, run.inputs, run.variables, f0, reference.grads, magnitudes(),
                             (run.truth or run.torch_side).grads, functools.partial(_slack, deciding),
                             reference_vs_autograd=not gradients_beyond, condition=condition(),
                             count=run.oracle[0], seed=run.oracle[1])

    notes = [] if shown.passed or shown is deciding else [_dtype_note(shown, dtype)]
    if rerounded:
        notes.append(f"{rerounded} element(s) past the bound here agree with torch at points moved by 2^-14 to 2^-10 "
                     "of themselves: a rounded intermediate feeding a cancellation (a saturated tanh or sigmoid, "
                     "say), which these inputs cannot tell from a wrong formula")
    mismatch = (gradients_beyond or beyond[0].any() or (deciding.nonfinite and not deciding.passed)
                or (shown is not deciding and shown.nonfinite and not shown.passed)
                or (votes is not None and votes.shared_mistake))
    inconclusive = not clear and any(u.any() for u in unresolved)
    verdict: Verdict = "mismatch" if mismatch else "inconclusive" if inconclusive else "passed"
    pattern = None
    if verdict == "mismatch" and not deciding.nonfinite:
        value = diagnose_value(float(deciding.expected[0]), float(deciding.actual[0]), not gradients_beyond,
                               input_shapes(run.names, run.inputs, run.variables)) if beyond[0].any() else None
        gradients = diagnose_mismatch(run.names, deciding.expected[1:], deciding.actual[1:], beyond[1:],
                                      [(f.tensor, f.index) for f in findings], run.inputs, run.variables,
                                      evaluate.value, f0)
        pattern = "; ".join(t for t in (value, gradients) if t) or None
    report = _build_report(run, verdict, shown, deciding, votes, findings, notes, pattern)
    extra = [f.describe() for f in findings[:3]]
    if len(findings) > 3:
        extra.append(f"... and {len(findings) - 3} more elements on kinks")
    return Outcome(report, extra)


def _clear(deciding: Judge) -> list[np.ndarray]:
    """A mask per tensor with no element set."""
    return [np.zeros(np.shape(e), dtype=bool) for e in deciding.expected]


def _in_dtype(evaluate: Evaluations, dtype: torch.dtype, point: Point) -> list[np.ndarray] | None:
    return evaluate.results_torch(point, dtype)


def measure_floor(deciding: Judge, reference_at: Callable[[Point], list[np.ndarray] | None],
                   torch_at: Callable[[Point], list[np.ndarray] | None], inputs: list[np.ndarray],
                   variables: Sequence[int], precision: str) -> None:
    """Measure the rounding floor and judge ``deciding`` again with it (see :mod:`gradcheck_lab.core.floor`)."""
    measured = rounding_floor(reference_at, torch_at, deciding.expected, deciding.actual, inputs, variables,
                              perturbation_size(precision), conditioning_size(precision))
    floor = None if measured is None else measured.levels
    deciding.apply_floor(floor, () if measured is None else measured.scales)
    if not deciding.passed and floor is not None and precision == "float64":
        # Still past it: an intermediate the small moves cannot re-round (a probability within
        # 1e-12 of 1) gets wider moves; see tolerances.WIDE_MOVE for why this stays sound.
        # The wider floor is adopted only if it explains every element: else the gradient is
        # wrong somewhere, and the sharper floor keeps the picture of which elements are.
        wide = rounding_floor(reference_at, torch_at, deciding.expected, deciding.actual, inputs, variables,
                              WIDE_MOVE, None, seed=1)
        if wide is not None:
            deciding.apply_floor([np.maximum(f, w) for f, w in zip(floor, wide.levels, strict=True)])
            if any(b.any() for b in deciding.beyond()):
                deciding.apply_floor(floor)


def _kinks(run: CheckRun, evaluate: Evaluations, deciding: Judge, shown: Judge, beyond: list[np.ndarray],
           unresolved: list[np.ndarray], f0: float) -> list[KinkFinding]:
    """Examine the disputed gradient elements for kinks; apply the findings to the masks and the judges.

    A kink is a convention, not rounding: an element found on one is beyond its bound unless accepted
    (``kinks="subgradient"``; an accepted one is excused on both judges), and inconclusive only where the
    measured floor explains it and it does not sit exactly on its kink (a branch flipped by rounding).
    """
    if deciding.nonfinite or not any(b.any() or u.any() for b, u in zip(beyond[1:], unresolved[1:], strict=True)):
        return []
    disputed = [b | u for b, u in zip(beyond, unresolved, strict=True)]
    allowed = [allowed_error(e, a, deciding.tol) if d.any() else np.zeros(np.shape(e))
               for e, a, d in zip(deciding.expected, deciding.actual, disputed, strict=True)]
    findings = examine_kinks(deciding.names, deciding.expected, deciding.actual, allowed, disputed, evaluate.value,
                             run.inputs, run.variables, f0, subgradient=run.subgradient, within_rounding=unresolved)
    for finding in findings:  # a convention at a kink is no rounding: inconclusive only where rounding explains it
        k = deciding.names.index(finding.tensor)
        unresolved[k][finding.index] = finding.status == "inconclusive"
        beyond[k][finding.index] = finding.status == "rejected"
        if finding.accepted:
            for one in {id(deciding): deciding, id(shown): shown}.values():
                one.excuse(k, finding.index)
    if any(f.accepted for f in findings):
        deciding.rejudge()
    if shown is not deciding:
        shown.rejudge()
    return findings


def _rerounded(run: CheckRun, evaluate: Evaluations, torch_at: Callable[[Point], list[np.ndarray] | None],
               deciding: Judge, beyond: list[np.ndarray], unresolved: list[np.ndarray],
               findings: list[KinkFinding]) -> int:
    """Gradient elements past the bound, not on a kink, that agree at some point nearby: made inconclusive.

    See :func:`~gradcheck_lab.core.floor.rerounded_agreement`; returns how many elements it moved.
    """
    if deciding.nonfinite or not any(b.any() for b in beyond[1:]):
        return 0
    candidates = [np.zeros(np.shape(beyond[0]), dtype=bool)] + [b.copy() for b in beyond[1:]]
    for finding in findings:  # a kink is a convention, judged by the kink search
        candidates[deciding.names.index(finding.tensor)][finding.index] = False

    def agree(k: int, expected: np.ndarray, actual: np.ndarray) -> np.ndarray:
        error = np.abs(finite_or_zero(actual) - finite_or_zero(expected))
        return np.asarray(error <= allowed_error(expected, actual, deciding.tol))

    agreed = rerounded_agreement(evaluate.results_reference, torch_at, candidates, run.inputs, run.variables, agree)
    for k, moved in enumerate(agreed):
        beyond[k] &= ~moved
        unresolved[k] |= moved
    return int(sum(int(m.sum()) for m in agreed))


def _slack(deciding: Judge, abs_v: list[np.ndarray], reference_norm: float) -> float:
    """sum_k <bound_k, |v_k|>: the bound of each gradient summed against |v| (the oracle's room for torch).

    The relative term is rtol * sum_k <|reference_k|, |v_k|>, which the oracle has computed as
    ``reference_norm``; it is passed whole with the first tensor, the others adding their other terms.
    """
    tol, total = deciding.tol, 0.0
    for k, a in enumerate(abs_v):
        phi = None if deciding.floor is None else float(np.vdot(deciding.floor[k + 1], a))
        scale = deciding.comparisons[deciding.names[k + 1]].scale
        total += float(tol.bound(reference_norm if k == 0 else 0.0, scale=scale, floor=phi, weight=float(a.sum())))
    return total


def raise_nonfinite(reference: SideResults, torch_side: SideResults, names: Sequence[str]) -> None:
    """Raise :class:`NonFiniteError` naming the first NaN or Inf of the reference, else of torch."""
    __tracebackhide__ = True
    for side, label in ((reference, "reference"), (torch_side, "torch")):
        for name, arr in [("value", side.value), *zip(names, side.grads, strict=True)]:
            if not np.isfinite(arr).all():
                idx = tuple(int(i) for i in np.argwhere(~np.isfinite(arr))[0]) if arr.ndim else ()
                what = "value" if name == "value" else "gradient of " + name
                raise NonFiniteError(f"the {label} {what} holds {float(arr[idx])!r} at {list(idx)} "
                                     "(pass allow_nonfinite=True to require matching non-finite values)")


def _dtype_note(shown: Judge, dtype: torch.dtype) -> str:
    name, c = max(((n, c) for n, c in shown.comparisons.items() if not c.passed), key=lambda item: item[1].ratio)
    where = "the value" if name == "value" else f"the gradient of {name}"
    return (f"torch in {dtype_name(dtype)} differs from the reference by up to {c.max_abs_error:.3g} "
            f"({c.max_rel_error:.3g} of the tensor's largest magnitude) in {where}, {c.ratio:.3g}x the a-priori "
            f"bound of a well-conditioned {dtype_name(dtype)} computation, while the float64 math agrees: a rounded "
            f"intermediate (a saturated activation, an underflow) or a precision loss on the torch side")


def _build_report(run: CheckRun, verdict: Verdict, shown: Judge, deciding: Judge, votes: OracleVotes | None,
                  findings: list[KinkFinding], extra_notes: list[str], pattern: str | None = None,
                  cause: str | None = None) -> Report:
    reference = run.reference
    comparisons = shown.comparisons
    worst_name, worst = max(deciding.comparisons.items(), key=lambda item: item[1].ratio)
    notes = [f.describe() for f in findings] + extra_notes
    if reference.mutated:
        notes.append(f"the reference modifies its input(s) in place: {', '.join(reference.mutated)}")
    if reference.low_precision:
        notes.append(f"the reference returns {', '.join(reference.low_precision)} below float64")
    return Report(
        passed=verdict == "passed",
        device=str(run.device),
        dtype=dtype_name(run.dtype),
        max_abs_error=max(c.max_abs_error for c in comparisons.values()),
        max_rel_error=max(c.max_rel_error for c in comparisons.values()),
        ratio=worst.ratio,
        worst_input=run.key_of()[worst_name],
        worst_index=worst.index,
        reference_value=worst.expected,
        torch_value=worst.actual,
        tolerance=shown.tol,
        value=comparisons["value"],
        gradients=run.by_name(comparisons, gradients_only=True),
        oracle=votes,
        verdict=verdict,
        math=run.by_name(deciding.comparisons),
        math_tolerance=deciding.tol,
        bound_terms=dict(worst.terms),
        diagnosis="; ".join(d for d in (_context_diagnosis(reference, verdict), pattern) if d) or None,
        notes=tuple(notes),
        cause=cause,
        labels={v: k for k, v in run.key_of().items() if k != "value"},
    )


def _context_diagnosis(reference: SideResults, verdict: Verdict) -> str | None:
    if verdict == "passed":
        return None
    if reference.low_precision:  # (a reference whose results are float32 numbers is failed with its cause)
        return (f"the reference returns {', '.join(reference.low_precision)} in a precision below float64: "
                "computing it in float32 loses precision the check needs (compute in float64)")
    if reference.mutated:
        return f"the reference modifies its input(s) {', '.join(reference.mutated)} in place"
    return None
