"""``check_gradients``: a hand-derived reference against torch.autograd, element by element."""

from __future__ import annotations

import functools
import warnings
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from gradcheck_lab.core.comparison import all_finite, allowed_error, finite_or_zero
from gradcheck_lab.core.devices import resolve_device
from gradcheck_lab.core.diagnosis import diagnose_mismatch, diagnose_value, input_shapes
from gradcheck_lab.core.dtypes import dtype_name, resolve_dtype
from gradcheck_lab.core.floor import rounding_floor
from gradcheck_lab.core.kinks import KinkFinding, examine_kinks
from gradcheck_lab.core.oracle import oracle_votes, require_memory
from gradcheck_lab.core.report import OracleVotes, Report, Verdict, mismatch_message
from gradcheck_lab.core.threads import check_threads
from gradcheck_lab.core.tolerances import (
    WIDE_MOVE,
    conditioning_size,
    gradient_tolerance,
    math_tolerance,
    perturbation_size,
)
from gradcheck_lab.core.torch_state import preserved_torch_state
from gradcheck_lab.core.verdict import Judge
from gradcheck_lab.errors import (
    GradientMismatch,
    InconclusiveWarning,
    InvalidInputError,
    NonFiniteError,
    ReferenceContractError,
    ReferenceMutationWarning,
    TorchFunctionError,
)
from gradcheck_lab.gradients.inputs import (
    ReferenceFn,
    TorchFn,
    as_input_tuple,
    constant_indices,
    input_names,
    prepare_inputs,
)


@dataclass(frozen=True)
class _Side:
    """One side's results: the scalar value and the gradients of the non-constant inputs, in float64.

    ``low_precision`` names results the function returned below float64 (a reference computing in float32).
    """

    value: np.ndarray
    grads: list[np.ndarray]
    low_precision: tuple[str, ...] = ()
    mutated: tuple[str, ...] = ()

    def results(self) -> list[np.ndarray]:
        return [self.value, *self.grads]


def run_reference(reference_fn: ReferenceFn, inputs: Sequence[np.ndarray], names: Sequence[str],
                  constants: frozenset[int] = frozenset()) -> _Side:
    """Call the reference on copies and validate that it returned ``(value, grads)``.

    ``grads`` holds one gradient per input, or one per non-constant input; the entries of constant
    inputs are ignored (None is fine there). ``_Side.grads`` lists the non-constant inputs' gradients.
    """
    copies = [np.array(x, copy=True) for x in inputs]
    result = reference_fn(*copies)
    mutated = tuple(names[k] for k, (c, x) in enumerate(zip(copies, inputs, strict=True))
                    if c.shape != x.shape or not np.array_equal(c, x))
    if not isinstance(result, tuple | list) or len(result) != 2:
        raise ReferenceContractError(
            f"the reference must return (value, grads), got {type(result).__name__}"
            + (f" of length {len(result)}" if isinstance(result, tuple | list) else ""))
    value, grads = result
    low = ["value"] if _below_float64(value) else []
    value = np.asarray(value, dtype=np.float64)
    if value.size != 1:
        raise ReferenceContractError(f"the reference's value must be a scalar, got shape {value.shape}")
    variables = [k for k in range(len(inputs)) if k not in constants]
    if isinstance(grads, np.ndarray) and len(variables) == 1:
        grads = (grads,)
    if not isinstance(grads, tuple | list):
        raise ReferenceContractError(f"the reference's grads must be a tuple of arrays, got {type(grads).__name__}")
    if len(grads) == len(inputs):
        grads = [grads[k] for k in variables]
    elif len(grads) != len(variables):
        expected = f"{len(inputs)}" + (f" (or {len(variables)}, leaving out constants)" if constants else "")
        raise ReferenceContractError(
            f"the reference returned {len(grads)} gradient(s) for {len(inputs)} input(s): {expected} are needed")
    checked = []
    for k, g in zip(variables, grads, strict=True):
        if g is None:
            raise ReferenceContractError(f"the reference returned None as the gradient of {names[k]}")
        if _below_float64(g):
            low.append(names[k])
        g = np.asarray(g, dtype=np.float64)
        if g.shape != inputs[k].shape:
            raise ReferenceContractError(
                f"the reference's gradient of {names[k]} has shape {g.shape}, the input has {inputs[k].shape}")
        checked.append(g)
    return _Side(value.reshape(()), checked, tuple(low), mutated)


def _below_float64(x: Any) -> bool:
    dtype = getattr(x, "dtype", None)
    return dtype is not None and np.dtype(dtype).kind == "f" and np.dtype(dtype).itemsize < 8


def _leaf(x: np.ndarray, constant: bool, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    if constant:
        return torch.tensor(x, device=device) if x.dtype.kind in "iub" else torch.tensor(x, dtype=dtype, device=device)
    return torch.tensor(x, dtype=dtype, device=device, requires_grad=True)


def _value_leaf(x: np.ndarray, constant: bool, fresh: bool, device: torch.device) -> torch.Tensor:
    """A float64 tensor (integer data kept) without autograd; an array made for this call alone is not copied."""
    if constant and x.dtype.kind in "iub":
        return torch.tensor(x, device=device)
    if fresh and x.dtype == np.float64:
        return torch.from_numpy(x).to(device)
    return torch.tensor(x, dtype=torch.float64, device=device)


def run_torch(torch_fn: TorchFn, inputs: Sequence[np.ndarray], names: Sequence[str],
              device: torch.device, dtype: torch.dtype, constants: frozenset[int] = frozenset()) -> _Side:
    """Run ``torch_fn`` with autograd on fresh tensors and return its value and gradients in float64.

    Constant inputs are tensors without ``requires_grad`` (integer data keeps its integer dtype);
    the gradients returned are those of the other inputs, in order.
    """
    leaves = [_leaf(x, k in constants, device, dtype) for k, x in enumerate(inputs)]
    variables = [k for k in range(len(inputs)) if k not in constants]
    out = torch_fn(*leaves)
    if not isinstance(out, torch.Tensor):
        raise TorchFunctionError(f"the torch function must return a tensor, got {type(out).__name__}")
    if out.numel() != 1:
        raise TorchFunctionError(
            f"the torch function must return a scalar (one element), got shape {tuple(out.shape)}: reduce it, "
            "e.g. with .sum() or a weighted sum against an upstream gradient")
    if not out.requires_grad:
        raise TorchFunctionError("the torch function's output does not depend on any input (it has no grad_fn)")
    grads = torch.autograd.grad(out.reshape(()), [leaves[k] for k in variables], allow_unused=True)
    for k, g in zip(variables, grads, strict=True):
        if g is None:
            raise TorchFunctionError(
                f"the torch function does not depend on {names[k]}: autograd gave it no gradient "
                "(if it is data, such as labels or a mask, pass its index in constants=)")
    return _Side(out.detach().double().cpu().numpy().reshape(()),
                 [g.detach().double().cpu().numpy() for g in grads])




class _Runner:
    """Runs both sides at any point of the inputs: the main results, and the re-runs the verdict needs.

    Every call gets its own copies; torch calls start from the same RNG state (a function that draws
    random numbers sees the same stream each time) and float64 runs use float64 as torch's default dtype.
    """

    def __init__(self, reference_fn: ReferenceFn, torch_fn: TorchFn, names: Sequence[str],
                 fixed: frozenset[int], device: torch.device) -> None:
        self.reference_fn, self.torch_fn = reference_fn, torch_fn
        self.names, self.fixed, self.device = list(names), fixed, device
        self.rng_state = torch.get_rng_state()
        self.cuda_rng_state = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
        self.float64_ok = True

    def _reset_rng(self) -> None:
        torch.set_rng_state(self.rng_state)
        if self.cuda_rng_state is not None:
            torch.cuda.set_rng_state(self.cuda_rng_state, self.device)

    def reference(self, point: Sequence[np.ndarray]) -> _Side:
        return run_reference(self.reference_fn, point, self.names, self.fixed)

    def torch(self, point: Sequence[np.ndarray], dtype: torch.dtype) -> _Side:
        self._reset_rng()
        device = torch.device("cpu") if (dtype == torch.float64 and self.device.type == "mps") else self.device
        default = torch.get_default_dtype()
        if dtype == torch.float64 and default != torch.float64:
            torch.set_default_dtype(torch.float64)
        try:
            return run_torch(self.torch_fn, point, self.names, device, dtype, self.fixed)
        finally:
            if torch.get_default_dtype() != default:
                torch.set_default_dtype(default)

    def torch_float64(self, point: Sequence[np.ndarray]) -> _Side | None:
        """torch in float64 on ``point``, or None where the function cannot run in float64 (or is not finite)."""
        if not self.float64_ok:
            return None
        try:
            side = self.torch(point, torch.float64)
        except Exception:
            self.float64_ok = False
            return None
        return side if all_finite(*side.results()) else None

    def results_float64(self, point: list[np.ndarray]) -> list[np.ndarray] | None:
        side = self.torch_float64(point)
        return None if side is None else side.results()

    def results_reference(self, point: list[np.ndarray]) -> list[np.ndarray] | None:
        try:
            return self.reference(point).results()
        except Exception:
            return None

    def value(self, point: list[np.ndarray], fresh: Collection[int] = ()) -> float:
        """The float64 value at ``point``: torch's forward without autograd, or the reference's value.

        ``fresh`` lists inputs of ``point`` made for this call alone: torch wraps them without a copy.
        """
        if self.float64_ok:
            self._reset_rng()
            leaves = [_value_leaf(x, k in self.fixed, k in fresh, self.device) for k, x in enumerate(point)]
            default = torch.get_default_dtype()
            torch.set_default_dtype(torch.float64)
            try:
                with torch.no_grad():
                    return float(self.torch_fn(*leaves).reshape(()))
            except Exception:
                self.float64_ok = False
            finally:
                torch.set_default_dtype(default)
        return float(self.reference(point).value)


def _raise_nonfinite(reference: _Side, actual: _Side, names: Sequence[str]) -> None:
    """Raise :class:`NonFiniteError` naming the first NaN or Inf of the reference, else of torch."""
    for side, label in ((reference, "reference"), (actual, "torch")):
        for name, arr in [("value", side.value), *zip(names, side.grads, strict=True)]:
            if not all_finite(arr):
                idx = tuple(int(i) for i in np.argwhere(~np.isfinite(arr))[0]) if arr.ndim else ()
                what = "value" if name == "value" else "gradient of " + name
                raise NonFiniteError(f"the {label} {what} holds {float(arr[idx])!r} at {list(idx)} "
                                     "(pass allow_nonfinite=True to require matching non-finite values)")


def _condition(magnitudes: Sequence[np.ndarray], inputs: Sequence[np.ndarray]) -> float:
    """sum_k <|grad_k|, |x_k|> from ``magnitudes`` |grad_k|: the size of the terms whose rounding shows in the value."""
    return float(sum(np.vdot(g, np.abs(x)) for g, x in zip(magnitudes, inputs, strict=True)))


def check_gradients(
    reference_fn: ReferenceFn,
    torch_fn: TorchFn,
    inputs: Any,
    *,
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype = "float64",
    rtol: float | None = None,
    atol: float | None = None,
    finite_differences: bool = False,
    directions: int = 1,
    seed: int = 0,
    allow_nonfinite: bool = False,
    tf32: bool = False,
    constants: Sequence[int] = (),
    kinks: str = "strict",
) -> Report:
    """Check a hand-derived gradient against torch.autograd on ``device`` in ``dtype``.

    The inputs are rounded to ``dtype``; the reference runs on them in float64 and returns
    ``(value, grads)`` with one gradient per input (or per non-constant input); ``torch_fn`` runs
    on tensors of ``dtype`` on ``device`` and returns a scalar. ``constants`` are the indices of data
    inputs (labels, targets, masks; integer arrays allowed): passed through, never perturbed, no
    gradient needed.

    The reference is compared with torch re-run in float64 on the same inputs (the math, at float64
    resolution in every dtype) and, below float64, with torch in ``dtype`` (its own rounding), under
    :mod:`gradcheck_lab.core.tolerances`. Where float64 rounding at these inputs can explain a
    disagreement the verdict is inconclusive: the report comes back with ``verdict ==
    "inconclusive"`` and an :class:`InconclusiveWarning`. Where an element sits on a kink (one-sided
    derivatives differ) the message says so; ``kinks="subgradient"`` accepts any value between them.

    With ``finite_differences``, central differences of the float64 value along ``directions``
    random directions vote too (two evaluations each, more only to confirm a mistake both gradients
    share); they abstain where they cannot resolve the direction. Returns a :class:`Report`; raises
    :class:`GradientMismatch` on disagreement, and a typed error for inputs or outputs that cannot be
    checked (NaN/Inf fail unless ``allow_nonfinite``).
    """
    __tracebackhide__ = True
    if kinks not in ("strict", "subgradient"):
        raise InvalidInputError(f"kinks must be 'strict' or 'subgradient', got {kinks!r}")
    if directions < 1:
        raise InvalidInputError(f"directions must be at least 1, got {directions}")
    torch_dtype = resolve_dtype(dtype)
    torch_device = resolve_device(device)
    original = as_input_tuple(inputs)
    require_memory(original, oracle=finite_differences)
    all_names = input_names(reference_fn, len(original))
    fixed = constant_indices(constants, len(original))
    rounded = prepare_inputs(original, torch_dtype, all_names, fixed)
    variables = [k for k in range(len(rounded)) if k not in fixed]
    names = [all_names[k] for k in variables]
    with preserved_torch_state(torch_device, tf32=tf32), check_threads():
        runner = _Runner(reference_fn, torch_fn, all_names, fixed, torch_device)
        reference = runner.reference(rounded)
        actual = runner.torch(rounded, torch_dtype)
        truth = actual if torch_dtype == torch.float64 else runner.torch_float64(rounded)
        report, extra = _judge(runner, rounded, variables, names, reference, actual, truth, torch_device,
                               torch_dtype, rtol=rtol, atol=atol, tf32=tf32, allow_nonfinite=allow_nonfinite,
                               subgradient=kinks == "subgradient",
                               oracle=(directions, seed) if finite_differences else None)
    if reference.mutated:
        warnings.warn(f"the reference modified its input(s) {', '.join(reference.mutated)} in place; the harness "
                      "passes copies, so nothing was corrupted, but code that reuses its inputs will be",
                      ReferenceMutationWarning, stacklevel=2)
    if report.verdict == "mismatch":
        raise GradientMismatch(mismatch_message(report, extra), report=report, inputs=original)
    if report.verdict == "inconclusive":
        warnings.warn(mismatch_message(report, extra), InconclusiveWarning, stacklevel=2)
    return report


def _judge(runner: _Runner, rounded: list[np.ndarray], variables: list[int], names: list[str], reference: _Side,
           actual: _Side, truth: _Side | None, device: torch.device, dtype: torch.dtype, *, rtol: float | None,
           atol: float | None, tf32: bool, allow_nonfinite: bool, subgradient: bool,
           oracle: tuple[int, int] | None) -> tuple[Report, list[str]]:
    """The comparisons, the floor where needed, kinks and the oracle; returns the report and the kink lines.

    The math comparison (reference against torch in float64) decides. The dtype comparison (against
    torch in ``dtype``) is what the report shows as errors; it decides only where torch cannot run in
    float64. Otherwise a low-precision run beyond its a-priori bound is a note: rounded intermediates
    (a tanh that saturates to exactly 1, a float16 gradient that underflows) legitimately move it
    further than input perturbations can show, so it cannot tell a torch-side bug from the dtype's limits.
    """
    labels = ["value", *names]
    inputs = [rounded[k] for k in variables]
    # |reference gradient| serves the value's condition scale and the oracle: computed once, if at all.
    magnitudes = functools.cache(lambda: [np.abs(finite_or_zero(g)) for g in reference.grads])
    condition = functools.cache(lambda: _condition(magnitudes(), inputs))
    if truth is not None:
        deciding = Judge(labels, reference.results(), truth.results(), math_tolerance(dtype, rtol=rtol, atol=atol),
                         condition, allow_nonfinite)
        torch_at, precision = runner.results_float64, "float64"
    else:
        deciding = Judge(labels, reference.results(), actual.results(),
                         gradient_tolerance(dtype, rtol=rtol, atol=atol, tf32=tf32), condition, allow_nonfinite)
        precision = "tf32" if (tf32 and dtype == torch.float32) else dtype_name(dtype)

        def torch_at(point: list[np.ndarray]) -> list[np.ndarray] | None:
            try:
                return runner.torch(point, dtype).results()
            except Exception:
                return None
    shown = deciding
    if truth is not None and dtype != torch.float64:
        shown = Judge(labels, reference.results(), actual.results(),
                      gradient_tolerance(dtype, rtol=rtol, atol=atol, tf32=tf32), condition, allow_nonfinite)
    if not allow_nonfinite and (deciding.nonfinite or shown.nonfinite):
        _raise_nonfinite(reference, actual, names)  # the comparisons found it: say which side holds it
    if not deciding.passed and not deciding.nonfinite:
        floor = rounding_floor(runner.results_reference, torch_at, deciding.expected, deciding.actual, rounded,
                               variables, perturbation_size(precision), conditioning_size(precision))
        deciding.apply_floor(floor)
        if not deciding.passed and floor is not None and precision == "float64":
            # Still past it: an intermediate the small moves cannot re-round (a probability within
            # 1e-12 of 1) gets wider moves; see tolerances.WIDE_MOVE for why this stays sound.
            # The wider floor is adopted only if it explains every element: else the gradient is
            # wrong somewhere, and the sharper floor keeps the picture of which elements are.
            wide = rounding_floor(runner.results_reference, torch_at, deciding.expected, deciding.actual, rounded,
                                  variables, WIDE_MOVE, None, seed=1)
            if wide is not None:
                deciding.apply_floor([np.maximum(f, w) for f, w in zip(floor, wide, strict=True)])
                if any(b.any() for b in deciding.beyond()):
                    deciding.apply_floor(floor)

    beyond, unresolved = deciding.beyond(), deciding.unresolved()
    f0 = float((truth or reference).value)
    findings: list[KinkFinding] = []
    if any(b.any() or u.any() for b, u in zip(beyond[1:], unresolved[1:], strict=True)) and not deciding.nonfinite:
        disputed = [b | u for b, u in zip(beyond, unresolved, strict=True)]
        allowed = [allowed_error(e, a, deciding.tol) if d.any() else np.zeros(np.shape(e))
                 for e, a, d in zip(deciding.expected, deciding.actual, disputed, strict=True)]
        findings = examine_kinks(labels, deciding.expected, deciding.actual, allowed, disputed, runner.value, rounded,
                                 variables, f0, subgradient=subgradient, within_rounding=unresolved)
        for finding in findings:  # a convention at a kink is no rounding: inconclusive only where rounding explains it
            k = labels.index(finding.tensor)
            unresolved[k][finding.index] = finding.status == "inconclusive"
            beyond[k][finding.index] = finding.status == "rejected"
            if finding.accepted:
                deciding.excuse(k, finding.index)
                if shown is not deciding:
                    shown.excuse(k, finding.index)
        if any(f.accepted for f in findings):
            deciding.rejudge()
        if shown is not deciding:
            shown.rejudge()

    votes = None
    if oracle is not None:
        torch_grads = (truth or actual).grads
        def slack(abs_v: list[np.ndarray], reference_norm: float) -> float:
            """sum_k <bound_k, |v_k|>, term by term (the bound's arrays are never built); the relative
            term is rtol * sum_k <|reference_k|, |v_k|>, which the oracle has computed as ``reference_norm``."""
            tol = deciding.tol
            total = tol.rtol * reference_norm
            for k, a in enumerate(abs_v):
                total += (tol.atol + tol.ntol * deciding.comparisons[names[k]].scale) * float(a.sum())
                if deciding.floor is not None and tol.floor:
                    total += tol.floor * float(np.vdot(deciding.floor[k + 1], a))
            return total

        value_at = functools.partial(runner.value, fresh=frozenset(variables))  # the oracle's moves are fresh
        votes = oracle_votes(value_at, rounded, variables, f0, reference.grads, magnitudes(), torch_grads, slack,
                             reference_vs_autograd=not any(b.any() for b in beyond[1:]), condition=condition(),
                             count=oracle[0], seed=oracle[1])

    notes = [] if shown.passed or shown is deciding else [_dtype_note(shown, dtype)]
    mismatch = (any(b.any() for b in beyond) or (deciding.nonfinite and not deciding.passed)
                or (shown is not deciding and shown.nonfinite and not shown.passed)
                or (votes is not None and votes.shared_mistake))
    verdict: Verdict = "mismatch" if mismatch else "inconclusive" if any(u.any() for u in unresolved) else "passed"
    pattern = None
    if verdict == "mismatch" and not deciding.nonfinite:
        value = diagnose_value(float(deciding.expected[0]), float(deciding.actual[0]),
                               not any(b.any() for b in beyond[1:]), input_shapes(names, rounded, variables)
                               ) if beyond[0].any() else None
        gradients = diagnose_mismatch(names, deciding.expected[1:], deciding.actual[1:], beyond[1:],
                                      [(f.tensor, f.index) for f in findings], rounded, variables, runner.value, f0)
        pattern = "; ".join(t for t in (value, gradients) if t) or None
    report = _build_report(device, dtype, verdict, shown, deciding, votes, reference, findings, notes, pattern)
    extra = [f.describe() for f in findings[:3]]
    if len(findings) > 3:
        extra.append(f"... and {len(findings) - 3} more elements on kinks")
    return report, extra


def _dtype_note(shown: Judge, dtype: torch.dtype) -> str:
    name, c = max(((n, c) for n, c in shown.comparisons.items() if not c.passed), key=lambda item: item[1].ratio)
    where = "the value" if name == "value" else f"the gradient of {name}"
    return (f"torch in {dtype_name(dtype)} differs from the reference by up to {c.max_abs_error:.3g} "
            f"({c.max_rel_error:.3g} of the tensor's largest magnitude) in {where}, {c.ratio:.3g}x the a-priori "
            f"bound of a well-conditioned {dtype_name(dtype)} computation, while the float64 math agrees: a rounded "
            f"intermediate (a saturated activation, an underflow) or a precision loss on the torch side")


def _build_report(device: torch.device, dtype: torch.dtype, verdict: Verdict, shown: Judge, deciding: Judge,
                  votes: OracleVotes | None, reference: _Side, findings: list[KinkFinding],
                  extra_notes: list[str], pattern: str | None = None) -> Report:
    comparisons = shown.comparisons
    worst_name, worst = max(deciding.comparisons.items(), key=lambda item: item[1].ratio)
    notes = [f.describe() for f in findings] + extra_notes
    if reference.mutated:
        notes.append(f"the reference modifies its input(s) in place: {', '.join(reference.mutated)}")
    if reference.low_precision:
        notes.append(f"the reference returns {', '.join(reference.low_precision)} below float64")
    return Report(
        passed=verdict == "passed",
        device=str(device),
        dtype=dtype_name(dtype),
        max_abs_error=max(c.max_abs_error for c in comparisons.values()),
        max_rel_error=max(c.max_rel_error for c in comparisons.values()),
        ratio=worst.ratio,
        worst_input=worst_name,
        worst_index=worst.index,
        expected=worst.expected,
        actual=worst.actual,
        tolerance=shown.tol,
        value=comparisons["value"],
        gradients={n: c for n, c in comparisons.items() if n != "value"},
        oracle=votes,
        verdict=verdict,
        math=dict(deciding.comparisons),
        math_tolerance=deciding.tol,
        bound_terms=dict(worst.terms),
        diagnosis="; ".join(d for d in (_context_diagnosis(reference, verdict), pattern) if d) or None,
        notes=tuple(notes),
    )


def _context_diagnosis(reference: _Side, verdict: Verdict) -> str | None:
    if verdict == "passed":
        return None
    if reference.low_precision:
        return (f"the reference returns {', '.join(reference.low_precision)} in a precision below float64: "
                "computing it in float32 loses precision the check needs (compute in float64)")
    if reference.mutated:
        return f"the reference modifies its input(s) {', '.join(reference.mutated)} in place"
    return None
