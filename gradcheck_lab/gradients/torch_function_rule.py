r"""The rule :func:`~gradcheck_lab.gradients.torch_function.check_torch_function` judges by, its report and message.

For every judged tensor (the output, each input's gradient, and for ``order=2`` the double backward) three
results exist on the same dtype-rounded inputs: the truth :math:`t` (the torch reference in float64), the
torch reference in the dtype :math:`r`, and the candidate in the dtype :math:`c`. With
:math:`S = \max_i |t_i|` (the largest magnitude among the other tensors where :math:`t` is exactly zero, so the
scale never collapses to noise), the candidate passes when

.. math::
    \max_i |c_i - t_i| \le \text{factor} \cdot \max_i |r_i - t_i| + \text{FLOOR\_ULPS}[\text{dtype}] \cdot
    \varepsilon \, S

(FlashAttention's test rule, with factor 2, plus a resolution floor of a few units in the last place of the
dtype at the tensor's scale; :math:`\varepsilon` is the dtype's machine epsilon). The floor is needed because
torch's own error can be near zero by luck (a scalar loss rounded close to its true value, a reduction that
happens to be exact): a right kernel is then no better than the dtype's own rounding of its result.

The error ratio of a tensor is :math:`\max|c - t| / \max(\max|r - t|,\ u S)`: the candidate's error over torch's
own, where torch's own is never counted below the half-ulp rounding :math:`u S` (:math:`u = \varepsilon/2`)
that any result stored in the dtype carries. Right kernels accumulating in float32 sit near 1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from gradcheck_lab.core.comparison import largest_magnitude
from gradcheck_lab.core.diagnosis import diagnose_one
from gradcheck_lab.core.dtypes import dtype_name, unit_roundoff
from gradcheck_lab.errors import DtypeOverflowError, NonFiniteError

Verdict = Literal["passed", "inconclusive", "mismatch"]

FLOOR_ULPS: dict[torch.dtype, float] = {torch.bfloat16: 2.0, torch.float16: 2.0, torch.float32: 8.0}
"""The resolution floor, in units of the dtype's machine epsilon at the tensor's scale (see the module docstring).

It covers what a right kernel may differ from torch by beyond twice torch's own error: the final rounding of each
result to the dtype (a result one ulp away from torch's, where torch's own error is near 0 by luck) and the
accumulation in the kernel's own order. A kernel accumulating in float32 for a 16-bit dtype adds nothing visible to
the first (float32 is 2^13 to 2^16 times finer); for float32 the accumulator has the dtype's own
precision, and a sequential sum over a thousand elements is a few ulps from torch's blocked one.
Measured with ``python -m gradcheck_lab.cases.torch_function_cases 100`` (100 seeds per case and dtype, CPU): the
right kernels (fused cross-entropy over 32768 classes, its online-softmax variant, LayerNorm over 1024 features,
a mean squared error) need at most 0.44 ulps beyond twice torch's error in bfloat16, float16 and float32;
LayerNorm summing one element at a time in float32 needs 4.9 in float32. The nearest twins hide only below 2.8
ulps (LayerNorm's missing variance term, bfloat16) and 5.3 ulps (LayerNorm summing in float16, float16); in float32
every twin is at least 10^5 ulps off.
"""


@dataclass(frozen=True)
class TensorErrors:
    """One judged tensor: both errors against the float64 truth, the bound, and the worst element.

    ``scale`` is the truth's largest magnitude (or the fallback); ``error_ratio`` is ``candidate_error`` over
    ``max(reference_error, u * scale)``; ``index`` is the candidate's worst element, where ``truth``,
    ``candidate`` and ``reference`` (torch in the dtype) are read; ``bound_ratio`` is the candidate's error over
    its bound (<= 1 passes). In float64 (torch's own error is 0 there) ``bound`` and ``bound_ratio`` are the
    library's float64 bound and ratio at the element furthest past it instead.
    """

    name: str
    shape: tuple[int, ...]
    scale: float
    reference_error: float
    candidate_error: float
    bound: float
    floor: float
    error_ratio: float
    bound_ratio: float
    index: tuple[int, ...]
    truth: float
    candidate: float
    reference: float
    passed: bool


@dataclass(frozen=True)
class TorchFunctionReport:
    """The outcome of one :func:`~gradcheck_lab.gradients.torch_function.check_torch_function`.

    ``error_ratio`` is the largest over ``tensors`` of the candidate's error over torch's own (see
    :class:`TensorErrors`); ``ratio`` the largest candidate error over its bound (<= 1 passes);
    ``worst_tensor`` names the tensor with the largest ``ratio``.
    """

    passed: bool
    verdict: Verdict
    device: str
    dtype: str
    order: int
    factor: float
    error_ratio: float
    ratio: float
    worst_tensor: str
    tensors: dict[str, TensorErrors] = field(default_factory=dict)
    diagnosis: str | None = None
    notes: tuple[str, ...] = ()

    @property
    def max_abs_error(self) -> float:
        """The candidate's largest error against the truth, over every tensor."""
        return max((t.candidate_error for t in self.tensors.values()), default=0.0)

    @property
    def max_rel_error(self) -> float:
        """The candidate's largest error relative to its tensor's scale, over every tensor."""
        return max((t.candidate_error / t.scale if t.scale else 0.0 for t in self.tensors.values()), default=0.0)

    def summary(self) -> str:
        status = {"passed": "passed", "inconclusive": "INCONCLUSIVE", "mismatch": "FAILED"}[self.verdict]
        if self.dtype == "float64":  # torch's own error is 0 there: it is the truth
            return (f"{status} on {self.device}/float64: candidate error up to {self.error_ratio:.3g} half-ulps of "
                    f"float64 at each tensor's scale (worst: {self.worst_tensor}), {self.ratio:.3g} of the library's "
                    "float64 bound")
        return (f"{status} on {self.device}/{self.dtype}: candidate error up to {self.error_ratio:.3g}x torch's own "
                f"{self.dtype} error (worst: {self.worst_tensor}), {self.ratio:.3g} of the bound "
                f"({self.factor:g}x torch's error + {FLOOR_ULPS[getattr(torch, self.dtype)]:g} ulps)")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for entry in data["tensors"].values():
            entry["index"] = list(entry["index"])
            entry["shape"] = list(entry["shape"])
        return data


def scales(truth: Sequence[np.ndarray]) -> list[float]:
    """Each tensor's largest magnitude; an exactly zero tensor takes the largest of the others."""
    own = [largest_magnitude(t) for t in truth]
    fallback = max(own, default=0.0)
    return [s if s > 0 else fallback for s in own]


def judge_low_precision(labels: Sequence[str], truth: Sequence[np.ndarray], reference: Sequence[np.ndarray],
                        candidate: Sequence[np.ndarray], dtype: torch.dtype, factor: float,
                        rtol: float | None, atol: float | None) -> list[TensorErrors]:
    """The factor rule of the module docstring, tensor by tensor."""
    u = unit_roundoff(dtype)
    relative_floor = FLOOR_ULPS[dtype] * 2 * u if rtol is None else rtol
    out = []
    for name, t, r, c, scale in zip(labels, truth, reference, candidate, scales(truth), strict=True):
        reference_error = float(np.max(np.abs(r - t), initial=0.0))
        index, candidate_error = worst_element(t, c)
        floor = relative_floor * scale + (atol or 0.0)
        bound = factor * reference_error + floor
        yardstick = max(reference_error, u * scale)
        ratio = candidate_error / yardstick if yardstick > 0 else (0.0 if candidate_error == 0 else math.inf)
        over = candidate_error / bound if bound > 0 else (0.0 if candidate_error == 0 else math.inf)
        out.append(TensorErrors(name, tuple(t.shape), scale, reference_error, candidate_error, bound, floor, ratio,
                                over, index, at(t, index), at(c, index), at(r, index), candidate_error <= bound))
    return out


def worst_element(truth: np.ndarray, candidate: np.ndarray) -> tuple[tuple[int, ...], float]:
    """The index of the candidate's largest error against the truth, and that error (``()``, 0 when empty)."""
    if truth.size == 0:
        return (), 0.0
    error = np.abs(candidate - truth)
    flat = int(np.argmax(error))
    return tuple(int(i) for i in np.unravel_index(flat, truth.shape)), float(error.flat[flat])


def at(x: np.ndarray, index: tuple[int, ...]) -> float:
    """``x[index]`` as a float (0 for an empty array)."""
    return float(x[index]) if x.size else 0.0


def raise_nonfinite(labels: Sequence[str], truth: Sequence[np.ndarray], reference: Sequence[np.ndarray] | None,
                    candidate: Sequence[np.ndarray], dtype: torch.dtype) -> None:
    """The typed errors that come instead of a verdict: a non-finite truth, an overflow in the dtype, a
    candidate that is NaN or Inf where the truth is finite."""
    __tracebackhide__ = True
    for name, t in zip(labels, truth, strict=True):
        if not np.all(np.isfinite(t)):
            index = _first(~np.isfinite(t))
            raise NonFiniteError(f"the reference in float64 (the truth) gives {at(t, index)!r} in {name} at "
                                 f"{list(index)}: these inputs are outside the function's domain; restrict them")
    biggest = float(torch.finfo(dtype).max)
    for name, t in zip(labels, truth, strict=True):
        if t.size and largest_magnitude(t) > biggest:
            index = _first(np.abs(t) > biggest)
            raise DtypeOverflowError(f"{name} overflows {dtype_name(dtype)}: the float64 truth is {at(t, index)!r} "
                                     f"at {list(index)}, past its largest value {biggest:g}; scale the inputs down or "
                                     "check in a wider dtype")
    for name, t, r in zip(labels, truth, reference or [], strict=False):
        if not np.all(np.isfinite(r)):
            index = _first(~np.isfinite(r))
            raise DtypeOverflowError(f"the torch reference in {dtype_name(dtype)} overflows in {name}: it gives "
                                     f"{at(r, index)!r} at {list(index)} where the float64 truth is "
                                     f"{at(t, index)!r}, so {dtype_name(dtype)} cannot judge this input; scale the "
                                     "inputs or check in a wider dtype")
    for name, t, c in zip(labels, truth, candidate, strict=True):
        if not np.all(np.isfinite(c)):
            index = _first(~np.isfinite(c))
            raise NonFiniteError(f"the candidate's {name.removeprefix('the ')} holds {at(c, index)!r} at "
                                 f"{list(index)} where the float64 truth is {at(t, index)!r} (and torch in "
                                 f"{dtype_name(dtype)} is finite): an overflow or a division by zero in the candidate")


def _first(mask: np.ndarray) -> tuple[int, ...]:
    return tuple(int(i) for i in np.argwhere(mask)[0]) if mask.ndim else ()


def diagnosis(tensors: Sequence[TensorErrors], truth: Sequence[np.ndarray], candidate: Sequence[np.ndarray],
              shapes: Sequence[tuple[str, tuple[int, ...]]]) -> str | None:
    """How the failing tensors are wrong, where one of :mod:`gradcheck_lab.core.diagnosis`'s patterns fits.

    A candidate in a low precision carries its dtype's rounding, far above the float64 fit those patterns
    ask for; so a constant factor is first snapped to a whole number or its reciprocal, and taken as the
    candidate when it explains the candidate within its bound.
    """
    labels = [t.name for t in tensors]
    found = []
    for k, errors in enumerate(tensors):
        if errors.passed:
            continue
        c, t = np.asarray(candidate[k]), np.asarray(truth[k])
        wrong = np.abs(c - t) > errors.bound
        snapped = _snapped_factor(c, t)
        if snapped is not None and float(np.max(np.abs(c - snapped * t), initial=0.0)) <= errors.bound:
            c = snapped * t
        text = diagnose_one(k, [*candidate[:k], c, *candidate[k + 1:]], truth, labels, wrong, shapes)
        if text and text.startswith("only ") and wrong.mean() > 0.1:
            text = None  # "only some elements": a hint for a few (a boundary, an index), not for a broad error
        if text:
            found.append(f"{errors.name}: {text}")
    return "; ".join(found[:3]) or None


def _snapped_factor(c: np.ndarray, t: np.ndarray) -> float | None:
    """The least-squares factor of ``c`` over ``t``, rounded to the nearest whole number or reciprocal (not 1)."""
    tt = float(np.vdot(t, t))
    if tt == 0:
        return None
    factor = float(np.vdot(c, t)) / tt
    if factor == 0 or not math.isfinite(factor):
        return None
    snapped = float(round(factor)) if abs(factor) >= 1 else 1.0 / round(1.0 / factor)
    return None if snapped in (0.0, 1.0) else snapped


def mismatch_message(report: TorchFunctionReport) -> str:
    """The failure message: which tensor, the worst element, both errors, their ratio, the bound and why."""
    failing = sorted((t for t in report.tensors.values() if not t.passed), key=lambda t: -t.bound_ratio)
    worst = failing[0] if failing else report.tensors[report.worst_tensor]
    low = report.dtype != "float64"
    own = f"torch's own {report.dtype} error" if low else "the float64 bound"
    lines = [f"the candidate's {worst.name.removeprefix('the ')} is wrong on {report.device}/{report.dtype}"
             + (f" (order {report.order})" if report.order > 1 else "")
             + f": its error against the float64 truth is {worst.candidate_error:.3e}, {worst.error_ratio:.3g}x "
             + (f"torch's own {report.dtype} error ({worst.reference_error:.3e})" if low else
                f"float64's rounding at its scale ({worst.scale:.3e})")]
    lines.append(f"  worst element {list(worst.index)}: candidate {worst.candidate!r}, "
                 + (f"torch reference in {report.dtype} {worst.reference!r}, " if low else "")
                 + f"float64 truth {worst.truth!r}")
    if low:
        share = worst.floor / worst.scale if worst.scale else 0.0
        lines.append(f"  bound: {report.factor:g} x {worst.reference_error:.3e} ({own}) + floor {worst.floor:.3e} "
                     f"({share:.2e} of the tensor's scale {worst.scale:.3e}) = {worst.bound:.3e}")
    else:
        lines.append(f"  bound at that element: {worst.bound:.3e} (the library's float64 error model, as in "
                     "check_gradients)")
    if len(failing) > 1:
        lines.append("  also wrong: " + ", ".join(f"{t.name.removeprefix('the ')} ({t.error_ratio:.3g}x)"
                                                  for t in failing[1:]))
    per = "candidate error / torch's own" if low else "candidate error in half-ulps of float64 at its scale"
    lines.append(f"  every tensor, {per}: " + ", ".join(
        f"{t.name.removeprefix('the ')} {t.error_ratio:.3g}x" for t in report.tensors.values()))
    if report.diagnosis:
        lines.append(f"  diagnosis: {report.diagnosis}")
    lines += [f"  note: {n}" for n in report.notes]
    return "\n".join(lines)
