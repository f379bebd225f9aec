r"""What forward-mode and second-order checks share: their vectors, torch calls, the judgement of products, and
the second-order diagnoses (a regularizer's lambda*v, a missing cross term, a Gauss-Newton matrix).

:func:`judge_products` judges any list of products (a forward's output and its JVP; a Hessian) as a first-order
check judges gradients: the reference against torch re-run in float64 on the same dtype-rounded inputs, under
:mod:`gradcheck_lab.core.tolerances` by :class:`~gradcheck_lab.core.verdict.Judge`, with the measured rounding floor
(moving the inputs, never the tangents or vectors) where an element exceeds the a-priori bound, and an
inconclusive verdict where rounding can explain the disagreement.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from gradcheck_lab.core.comparison import all_finite, compare
from gradcheck_lab.core.diagnosis import FIT, constant_factor
from gradcheck_lab.core.dtypes import dtype_name, round_to_dtype
from gradcheck_lab.core.judge import Judge
from gradcheck_lab.core.report import ByName, Report, Verdict, mismatch_message
from gradcheck_lab.core.tolerances import (
    gradient_tolerance,
    math_tolerance,
)
from gradcheck_lab.core.verdict import measure_floor
from gradcheck_lab.errors import GradientMismatch, InconclusiveWarning, InvalidInputError, NonFiniteError

Evaluation = Callable[[list[np.ndarray]], list[np.ndarray]]


def draw_vectors(shapes: Sequence[tuple[int, ...]], seed: int, salt: int) -> tuple[np.ndarray, ...]:
    """Tangents or vectors the harness uses when none are given: standard normal, seeded, float64."""
    rng = np.random.default_rng([seed, salt])
    return tuple(rng.standard_normal(s) for s in shapes)



def validate_vectors(name: str, given: Any, inputs: Sequence[np.ndarray], variables: Sequence[int],
                     names: Sequence[str], dtype: torch.dtype) -> list[np.ndarray]:
    """``tangents=``/``vectors=``: one finite real array per non-constant input, shaped like it; rounded to ``dtype``.

    Raises:
        InvalidInputError: not a tuple of the right length, a wrong shape (named, with the input's), NaN/Inf.
    """
    __tracebackhide__ = True
    if isinstance(given, np.ndarray) and len(variables) == 1:
        given = (given,)
    if not isinstance(given, tuple | list) or len(given) != len(variables):
        raise InvalidInputError(f"{name} must be a tuple of {len(variables)} array(s), one per non-constant input "
                                f"({', '.join(names[k] for k in variables)}), got {type(given).__name__}"
                                + (f" of length {len(given)}" if isinstance(given, tuple | list) else ""))
    out = []
    for slot, (k, v) in enumerate(zip(variables, given, strict=True)):
        arr = v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)
        if arr.dtype.kind not in "fiu":
            raise InvalidInputError(f"{name}[{slot}] has dtype {arr.dtype}: give a real floating array")
        if arr.shape != inputs[k].shape:
            raise InvalidInputError(f"{name}[{slot}] has shape {arr.shape}, but {names[k]} has shape "
                                    f"{inputs[k].shape}: give one array shaped like each non-constant input")
        if not all_finite(arr.astype(np.float64)):
            raise InvalidInputError(f"{name}[{slot}] holds NaN or Inf: give finite arrays")
        out.append(round_to_dtype(arr.astype(np.float64), dtype))
    return out



def leaves(point: Sequence[np.ndarray], fixed: frozenset[int], device: torch.device,
           dtype: torch.dtype) -> list[torch.Tensor]:
    """Fresh tensors for one torch call: integer data kept, everything else in ``dtype``."""
    return [torch.tensor(x, device=device) if k in fixed and x.dtype.kind in "iub"
            else torch.tensor(x, dtype=dtype, device=device) for k, x in enumerate(point)]




@contextlib.contextmanager

def default_dtype(dtype: torch.dtype) -> Iterator[None]:
    """torch's default dtype set to ``dtype`` when that is float64 (a float64 check builds float64 constants)."""
    previous = torch.get_default_dtype()
    if dtype == torch.float64:
        torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        if torch.get_default_dtype() != previous:
            torch.set_default_dtype(previous)



def judge_products(labels: Sequence[str], reference: list[np.ndarray], truth: list[np.ndarray],
                   shown_torch: list[np.ndarray] | None, reference_at: Evaluation, truth_at: Evaluation,
                   point: list[np.ndarray], variables: Sequence[int], device: torch.device, dtype: torch.dtype,
                   *, rtol: float | None, atol: float | None,
                   keys: Sequence[str] | None = None) -> tuple[Report, list[bool]]:
    """Judge the reference's results against torch's, as a first-order check judges gradients.

    ``labels`` name the results in messages, ``keys`` in the report (``report.gradients[key]``, the label
    still resolving with a DeprecationWarning; default: the labels);
    ``reference``/``truth`` list float64 results (the reference; torch in float64 on the same rounded point),
    ``shown_torch`` torch's results in ``dtype`` (None in float64); ``reference_at``/``truth_at`` recompute either
    side at a moved point (for the measured floor: only the ``variables`` of ``point`` move). Returns the
    :class:`Report` (no diagnosis yet) and, per label, whether any of its elements is past the bound.

    Raises:
        NonFiniteError: a NaN or Inf on either side.
    """
    __tracebackhide__ = True
    for side, results in (("reference", reference), ("torch", truth)):
        for label, arr in zip(labels, results, strict=True):
            if not all_finite(arr):
                raise NonFiniteError(f"the {side}'s {label} holds NaN or Inf")
    labels = list(labels)
    deciding = Judge(labels, reference, truth, math_tolerance(dtype, rtol=rtol, atol=atol), lambda: 0.0)
    shown = deciding if shown_torch is None else Judge(
        labels, reference, shown_torch, gradient_tolerance(dtype, rtol=rtol, atol=atol), lambda: 0.0)

    def safe(at: Evaluation) -> Callable[[list[np.ndarray]], list[np.ndarray] | None]:
        def run(moved: list[np.ndarray]) -> list[np.ndarray] | None:
            try:
                results = at(moved)
            except Exception:
                return None
            return results if all_finite(*results) else None
        return run

    if not deciding.passed:
        measure_floor(deciding, safe(reference_at), safe(truth_at), point, variables, "float64")  # as check_gradients
    beyond = [bool(b.any()) for b in deciding.beyond()]
    unresolved = any(u.any() for u in deciding.unresolved())
    verdict: Verdict = "mismatch" if any(beyond) else "inconclusive" if unresolved else "passed"
    notes = []
    if shown is not deciding and not shown.passed:
        notes.append(f"torch in {dtype_name(dtype)} differs from the reference beyond the a-priori bound of a "
                     f"well-conditioned {dtype_name(dtype)} computation while the float64 math agrees: a rounded "
                     "intermediate or a precision loss on the torch side")
    worst_name, worst = max(deciding.comparisons.items(), key=lambda item: item[1].ratio)
    comparisons = shown.comparisons
    first = labels[0] if labels[0] == "value" else None
    key_of = dict(zip(labels, labels if keys is None else keys, strict=True))
    label_of = {key: label for label, key in key_of.items() if key != label}
    empty = compare(np.zeros(0), np.zeros(0), shown.tol)
    report = Report(
        passed=verdict == "passed", device=str(device), dtype=dtype_name(dtype),
        max_abs_error=max(c.max_abs_error for c in comparisons.values()),
        max_rel_error=max(c.max_rel_error for c in comparisons.values()),
        ratio=worst.ratio, worst_input=key_of[worst_name], worst_index=worst.index, reference_value=worst.expected,
        torch_value=worst.actual, tolerance=shown.tol, value=comparisons[first] if first else empty,
        gradients=ByName(((key_of[n], c) for n, c in comparisons.items() if n != first), label_of),
        verdict=verdict, math=ByName(((key_of[n], c) for n, c in deciding.comparisons.items()), label_of),
        math_tolerance=deciding.tol, bound_terms=dict(worst.terms), notes=tuple(notes),
        labels={key: label for key, label in label_of.items() if key != "value"})
    return report, beyond



def reworded(text: str, labels: Sequence[str]) -> str:
    """The shared message builder says "the gradient of <name>"; a product's label is its own subject."""
    for label in labels:
        text = text.replace(f"the gradient of {label}", label)
    return text



def conclude(report: Report, labels: Sequence[str], original: tuple[Any, ...]) -> Report:
    """Raise :class:`GradientMismatch` for a mismatch, warn for an inconclusive verdict, else return ``report``."""
    __tracebackhide__ = True
    if report.diagnosis:
        report = replace(report, diagnosis=reworded(report.diagnosis, labels))
    if report.verdict == "mismatch":
        raise GradientMismatch(reworded(mismatch_message(report), labels), report=report, inputs=original)
    if report.verdict == "inconclusive":
        warnings.warn(reworded(mismatch_message(report), labels), InconclusiveWarning, stacklevel=3)
    return report



def fits(a: np.ndarray, b: np.ndarray) -> bool:
    scale = max(float(np.max(np.abs(a), initial=0.0)), float(np.max(np.abs(b), initial=0.0)))
    return a.shape == b.shape and scale > 0 and float(np.max(np.abs(a - b), initial=0.0)) <= FIT * scale


def regularizer_pattern(r: np.ndarray, t: np.ndarray, v: np.ndarray,
                        shapes: Sequence[tuple[str, tuple[int, ...]]]) -> str | None:
    r"""``r = a t + b v`` with ``b != 0``: a term :math:`\lambda v` (an L2 regularizer's) wrong, or the rest scaled.

    ``r``, ``t``, ``v`` are flattened products and vectors (for a full Hessian: the matrices and the identity).
    """
    basis = np.stack([t, v], axis=1)
    if np.linalg.matrix_rank(basis, tol=FIT * float(np.max(np.abs(basis), initial=1.0))) < 2:
        return None
    (a, b), *_ = np.linalg.lstsq(basis, r, rcond=None)
    if not fits(r, a * t + b * v) or abs(b) <= FIT * max(abs(a), 1.0):
        return None
    if abs(a - 1) <= 1e-6:
        what = "missing" if b < 0 else "added where torch has none, or counted twice"
        return (f"it differs from torch's by {b:.6g} times the vectors: a regularizer's term lambda*v (the Hessian "
                f"of lambda/2 ||x||^2) {what}, lambda = {abs(b):.6g}?")
    lam = b / (1 - a)
    factor = constant_factor(r - lam * v, t - lam * v, shapes) or f"{a:.6g} times torch's"
    return (f"apart from a term {lam:.6g}*v that matches (a regularizer's), it is {factor}: the data term is "
            "scaled, the regularizer is not")


def cross_term_pattern(r: Sequence[np.ndarray], t: Sequence[np.ndarray], partials: Sequence[Sequence[np.ndarray]],
                       names: Sequence[str]) -> str | None:
    """A block of ``r`` missing torch's cross term from another input's vector (``partials[j][k]``: torch's Hv
    of block ``k`` with only vector ``j`` nonzero), or holding only its own diagonal block."""
    for k in range(len(r)):
        if fits(r[k], t[k]):
            continue
        for j in range(len(r)):
            p = partials[j][k]
            if j != k and np.any(p) and fits(r[k], t[k] - p):
                return (f"the product for {names[k]} misses the cross term d2f/d{names[k]}d{names[j]} times the "
                        f"vector of {names[j]}")
        if np.any(t[k] - partials[k][k]) and fits(r[k], partials[k][k]):
            return (f"the product for {names[k]} holds only its diagonal block: the cross terms with the other "
                    "inputs are missing")
    return None


def gauss_newton_pattern(reference_form: Callable[[np.ndarray], float], hessian: np.ndarray) -> str | None:
    """The reference's curvature is non-negative along torch's direction of most negative curvature.

    ``hessian`` is torch's (square, flattened); ``reference_form(u)`` the reference's :math:`u^\\top H u`.
    """
    sym = (hessian + hessian.T) / 2
    eigenvalues, vectors = np.linalg.eigh(sym)
    scale = float(np.max(np.abs(eigenvalues), initial=0.0))
    if scale == 0 or eigenvalues[0] >= -FIT * 1e3 * scale:
        return None
    u = vectors[:, 0]
    form = reference_form(u)
    if form < -FIT * 1e3 * scale:
        return None
    return (f"positive semi-definite where torch's Hessian is not (along torch's eigenvector of eigenvalue "
            f"{eigenvalues[0]:.4g} the reference's curvature is {form:.4g}): a Gauss-Newton (or Fisher) matrix handed "
            "in as the Hessian? It leaves out the second derivatives of the model weighted by the residuals")
