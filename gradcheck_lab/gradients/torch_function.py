r"""``check_torch_function``: a torch implementation with its own backward, judged in the dtype it runs in.

The candidate (a custom ``torch.autograd.Function``'s ``apply``, a fused or Triton kernel, a
``torch.compile``'d function) and the reference (the torch composition it replaces) run on the same
dtype-rounded inputs, each on its own copies. The truth is the reference run in float64 (on the CPU where the
device has no float64). Below float64 the candidate's error against the truth, tensor by tensor, may be at
most ``factor`` times torch's own error in the dtype plus a resolution floor
(:mod:`gradcheck_lab.gradients.torch_function_rule`): the candidate never runs in float64, so kernels that exist
only in low precision are checked. In float64, where torch's own error is 0, the decision is the library's
float64 one: the error model of :mod:`gradcheck_lab.core.tolerances` with the measured rounding floor, as in
:func:`~gradcheck_lab.gradients.check.check_gradients` (an input where float64 rounding could explain the
difference is inconclusive).
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from gradcheck_lab.core import arguments
from gradcheck_lab.core.devices import resolve_device
from gradcheck_lab.core.dtypes import dtype_name, resolve_dtype, round_to_dtype
from gradcheck_lab.core.judge import Judge
from gradcheck_lab.core.threads import check_threads
from gradcheck_lab.core.tolerances import math_tolerance
from gradcheck_lab.core.torch_state import preserved_torch_state
from gradcheck_lab.core.verdict import measure_floor
from gradcheck_lab.errors import (
    CandidateContractError,
    GradientMismatch,
    InconclusiveWarning,
    InvalidInputError,
    NonFiniteError,
)
from gradcheck_lab.gradients.inputs import as_input_tuple, constant_indices, input_names, prepare_inputs
from gradcheck_lab.gradients.torch_function_rule import (
    TensorErrors,
    TorchFunctionReport,
    Verdict,
    at,
    diagnosis,
    judge_low_precision,
    mismatch_message,
    raise_nonfinite,
    scales,
    worst_element,
)
from gradcheck_lab.gradients.torch_function_run import Plan, Role, TorchCallable, differentiate, forward, leaves
from gradcheck_lab.gradients.vjp import draw_grad_output

DEFAULT_FACTOR = 2.0
"""FlashAttention's rule: the kernel's error at most twice PyTorch's own error in the same dtype."""


class _Runs:
    """Runs either side at any point of the inputs; every call gets fresh tensors and the same torch RNG stream.

    The grad_output and the order-2 vectors are fixed once the truth's output shape is known.
    """

    def __init__(self, candidate: TorchCallable, reference: TorchCallable, plan: Plan) -> None:
        self.candidate, self.reference, self.plan = candidate, reference, plan
        self.rng = torch.get_rng_state()
        self.cuda_rng = torch.cuda.get_rng_state(plan.device) if plan.device.type == "cuda" else None
        self.grad_output = np.zeros(())
        self.vectors: list[np.ndarray] = []
        self.output_shape: tuple[int, ...] = ()

    def _reset(self) -> None:
        torch.set_rng_state(self.rng)
        if self.cuda_rng is not None:
            torch.cuda.set_rng_state(self.cuda_rng, self.plan.device)

    def run(self, role: Role, point: Sequence[np.ndarray], dtype: torch.dtype,
            fix_upstream: Callable[[tuple[int, ...]], None] | None = None) -> list[np.ndarray]:
        __tracebackhide__ = True
        device = self.plan.device
        if dtype == torch.float64 and device.type == "mps":  # no float64 there
            device = torch.device("cpu")
        default = torch.get_default_dtype()
        if dtype == torch.float64:  # a float64 run creates its own tensors in float64 too
            torch.set_default_dtype(torch.float64)
        self._reset()
        try:
            tensors = leaves(point, self.plan, dtype, device)
            out = forward(self.candidate if role == "candidate" else self.reference, role, tensors)
            if fix_upstream is not None:
                fix_upstream(tuple(out.shape))
            if role == "candidate":
                self._check_output(out, device)
            return differentiate(out, tensors, self.plan, role, self.grad_output, self.vectors)
        finally:
            if torch.get_default_dtype() != default:
                torch.set_default_dtype(default)

    def _check_output(self, out: torch.Tensor, device: torch.device) -> None:
        __tracebackhide__ = True
        if tuple(out.shape) != self.output_shape:
            raise CandidateContractError(f"the candidate's output has shape {tuple(out.shape)}, the reference's "
                                         f"{self.output_shape}: both must compute the same tensor")
        if out.device != device:
            raise CandidateContractError(f"the candidate's output is on {out.device}, its inputs on {device}")

    def at(self, role: Role) -> Callable[[list[np.ndarray]], list[np.ndarray] | None]:
        """``role`` in float64 at a moved point (the floor's evaluations), or None where it fails there."""
        def evaluate(point: list[np.ndarray]) -> list[np.ndarray] | None:
            try:
                return self.run(role, point, torch.float64)
            except Exception:
                return None
        return evaluate


def _upstream(runs: _Runs, grad_output: np.ndarray | None, dtype: torch.dtype, seed: int,
              point: Sequence[np.ndarray]) -> Callable[[tuple[int, ...]], None]:
    """Fixes grad_output (given, or drawn for the output's shape) and the order-2 vectors, rounded to ``dtype``."""
    def fix(shape: tuple[int, ...]) -> None:
        __tracebackhide__ = True
        runs.output_shape = shape
        given = draw_grad_output(shape, seed) if grad_output is None else grad_output
        if given.shape != shape:
            raise InvalidInputError(f"grad_output has shape {given.shape}, the reference's output {shape}: pass one "
                                    "upstream gradient shaped like the output, or None to have one drawn")
        rounded = round_to_dtype(given, dtype)
        if not np.all(np.isfinite(rounded)):
            raise NonFiniteError(f"grad_output holds NaN or Inf, or overflows {dtype_name(dtype)}")
        runs.grad_output = rounded
        rng = np.random.default_rng([seed, 0x76676764])
        runs.vectors = [round_to_dtype(rng.standard_normal(np.shape(point[k])), dtype) for k in runs.plan.variables]
    return fix


def _factor(value: Any) -> float:
    __tracebackhide__ = True
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)) \
            or float(value) <= 0:
        raise InvalidInputError(f"factor must be a finite number > 0 (how many times torch's own error the "
                                f"candidate may make; FlashAttention uses 2), got {value!r}")
    return float(value)


def _arrays(inputs: Any) -> tuple[Any, ...]:
    """The inputs as NumPy arrays: tensors (bfloat16 included) become float64 arrays, integer tensors stay integer."""
    items = as_input_tuple(inputs)
    out: list[Any] = []
    for x in items:
        if isinstance(x, torch.Tensor):
            x = x.detach().to("cpu", torch.float64 if x.is_floating_point() else x.dtype).numpy()
        out.append(x)
    return tuple(out)


@arguments.call_style(positional=3, legacy_positional=("device", "dtype"))
def check_torch_function(
    candidate: TorchCallable,
    reference: TorchCallable,
    inputs: Any,
    *,
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype = "bfloat16",
    rtol: float | None = None,
    atol: float | None = None,
    seed: int = 0,
    constants: Sequence[int] = (),
    grad_output: Any = None,
    factor: float = DEFAULT_FACTOR,
    order: int = 1,
) -> TorchFunctionReport:
    """Check a torch implementation with its own backward against the torch composition it replaces.

    Args:
        candidate: called on tensors of ``dtype`` on ``device`` (``MyFunction.apply``, a fused kernel, a
            ``torch.compile``'d function); returns one tensor of any shape. It never runs in float64 unless
            ``dtype`` is float64.
        reference: the torch composition it replaces, same arguments; run in ``dtype`` (torch's own error)
            and in float64 (the truth).
        inputs: a tuple of NumPy arrays (or tensors), rounded to ``dtype``; each side gets its own copies.
        device: where both sides run; the truth runs there too unless the device has no float64 (MPS: the CPU).
        dtype: the precision under test (``"bfloat16"``, ``"float16"``, ``"float32"``, ``"float64"``).
        rtol: replaces the resolution floor's ``FLOOR_ULPS[dtype] * eps`` (relative to each tensor's scale); in
            float64, the library's rtol.
        atol: an absolute term added to every bound.
        seed: draws grad_output (when None) and the order-2 vectors.
        constants: indices of data inputs (labels, masks; integer arrays allowed): not differentiated.
        grad_output: the upstream gradient, shaped like the output; drawn (standard normal) when None.
        factor: how many times torch's own error in ``dtype`` the candidate may make (2, as FlashAttention's tests).
        order: 1 checks the output and the input gradients; 2 also the double backward (the gradient of
            <grads, v> with respect to every non-constant input and to grad_output, for drawn v).

    Returns:
        A :class:`~gradcheck_lab.gradients.torch_function_rule.TorchFunctionReport` (``error_ratio``, one
        ``TensorErrors`` per tensor); in float64 possibly ``verdict == "inconclusive"`` with an
        :class:`~gradcheck_lab.errors.InconclusiveWarning`.

    Raises:
        GradientMismatch: a tensor's error is past its bound; the message names the tensor, the worst element,
            both errors, their ratio and a diagnosis where a pattern fits.
        CandidateContractError: the candidate's output is not differentiable or not the reference's shape, or
            its backward returns a gradient of the wrong dtype, shape or device.
        NonFiniteError: NaN or Inf in the truth, or in the candidate where the truth is finite.
        DtypeOverflowError: a result overflows ``dtype`` where the truth is finite.
        InvalidInputError: an argument that cannot be used (named, with the fix), before any work.

    ``device`` and ``dtype`` passed positionally (as issue #21 writes the call) still work, with a
    :class:`DeprecationWarning`: everything after ``inputs`` is keyword-only.
    """
    __tracebackhide__ = True
    arguments.callable_argument("candidate", candidate, "the torch implementation to check (e.g. MyFunction.apply)")
    arguments.callable_argument("reference", reference, "the torch composition it replaces (a function of tensors)")
    rtol, atol = arguments.tolerance("rtol", rtol), arguments.tolerance("atol", atol)
    seed = arguments.integer("seed", seed)
    order = arguments.integer("order", order, minimum=1)
    if order > 2:
        raise InvalidInputError(f"order must be 1 or 2, got {order}")
    factor = _factor(factor)
    torch_dtype, torch_device = resolve_dtype(dtype), resolve_device(device)
    original = _arrays(inputs)
    names = input_names(reference, len(original))
    fixed = constant_indices(constants, len(original))
    rounded = prepare_inputs(original, torch_dtype, names, fixed)
    upstream = None if grad_output is None else _arrays(grad_output)[0]
    if upstream is not None and np.asarray(upstream).dtype.kind != "f":
        raise InvalidInputError(f"grad_output must be a floating array shaped like the output, got {upstream!r:.80}")
    plan = Plan(names, fixed, order, torch_device)
    with preserved_torch_state(torch_device), check_threads():
        runs = _Runs(candidate, reference, plan)
        fix = _upstream(runs, None if upstream is None else np.asarray(upstream, dtype=np.float64), torch_dtype,
                        seed, rounded)
        truth = runs.run("reference", rounded, torch.float64, fix)
        own = None if torch_dtype == torch.float64 else runs.run("reference", rounded, torch_dtype)
        candidate_results = runs.run("candidate", rounded, torch_dtype)
        labels = plan.labels()
        raise_nonfinite(labels, truth, own, candidate_results, torch_dtype)
        if own is not None:
            tensors = judge_low_precision(labels, truth, own, candidate_results, torch_dtype, factor, rtol, atol)
            verdict: Verdict = "passed" if all(t.passed for t in tensors) else "mismatch"
        else:
            tensors, verdict = _judge_float64(runs, rounded, labels, truth, candidate_results, rtol, atol)
    report = _report(plan, torch_dtype, factor, verdict, tensors, truth, candidate_results, rounded)
    if verdict == "mismatch":
        raise GradientMismatch(mismatch_message(report), report=report, inputs=original)
    if verdict == "inconclusive":
        warnings.warn(mismatch_message(report).replace("is wrong", "is inconclusive", 1), InconclusiveWarning,
                      stacklevel=2)
    return report


def _judge_float64(runs: _Runs, rounded: list[np.ndarray], labels: list[str], truth: list[np.ndarray],
                   candidate: list[np.ndarray], rtol: float | None,
                   atol: float | None) -> tuple[list[TensorErrors], Verdict]:
    """The library's float64 decision: the math tolerance, then the measured rounding floor where needed."""
    judge = Judge(labels, truth, candidate, math_tolerance(torch.float64, rtol=rtol, atol=atol), lambda: 0.0)
    if not judge.passed:
        variables = runs.plan.variables
        truth_at, candidate_at = runs.at("reference"), runs.at("candidate")
        measure_floor(judge, truth_at, candidate_at, rounded, variables, "float64")  # as check_gradients
    beyond, unresolved = judge.beyond(), judge.unresolved()
    verdict: Verdict = ("mismatch" if any(b.any() for b in beyond) else
                        "inconclusive" if any(u.any() for u in unresolved) else "passed")
    u = float(np.finfo(np.float64).eps) / 2
    tensors = []
    for k, (name, t, c, scale) in enumerate(zip(labels, truth, candidate, scales(truth), strict=True)):
        comparison = judge.comparisons[name]
        index, worst = worst_element(t, c)
        ratio = worst / (u * scale) if scale > 0 else (0.0 if worst == 0 else math.inf)
        tensors.append(TensorErrors(name, tuple(t.shape), scale, 0.0, worst, comparison.bound,
                                    comparison.terms.get("floor*phi", 0.0), ratio, comparison.ratio, index,
                                    at(t, index), at(c, index), at(t, index), not beyond[k].any()))
    return tensors, verdict


def _report(plan: Plan, dtype: torch.dtype, factor: float, verdict: Verdict, tensors: list[TensorErrors],
            truth: list[np.ndarray], candidate: list[np.ndarray], rounded: list[np.ndarray]) -> TorchFunctionReport:
    ratios = [t.bound_ratio for t in tensors]
    worst = int(np.argmax(ratios))
    shapes = [(name, tuple(np.shape(x))) for name, x in zip(plan.names, rounded, strict=True)]
    pattern = diagnosis(tensors, truth, candidate, shapes) if verdict == "mismatch" else None
    return TorchFunctionReport(
        passed=verdict == "passed", verdict=verdict, device=str(plan.device), dtype=dtype_name(dtype),
        order=plan.order, factor=factor, error_ratio=max(t.error_ratio for t in tensors), ratio=ratios[worst],
        worst_tensor=tensors[worst].name, tensors={t.name: t for t in tensors}, diagnosis=pattern)
