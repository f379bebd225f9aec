"""``check_gradients``: a hand-derived reference against torch.autograd, element by element."""

from __future__ import annotations

import warnings
from collections.abc import Collection, Sequence
from typing import Any

import numpy as np
import torch

from gradcheck_lab.core import arguments
from gradcheck_lab.core.comparison import all_finite
from gradcheck_lab.core.devices import resolve_device
from gradcheck_lab.core.dtypes import float64_array, resolve_dtype, tensor_copy
from gradcheck_lab.core.memory import require_memory
from gradcheck_lab.core.report import Report, mismatch_message
from gradcheck_lab.core.run import CheckRun, SideResults
from gradcheck_lab.core.threads import check_threads
from gradcheck_lab.core.torch_state import preserved_torch_state
from gradcheck_lab.core.verdict import judge
from gradcheck_lab.errors import (
    GradientMismatch,
    InconclusiveWarning,
    InvalidInputError,
    ReferenceContractError,
    ReferenceMutationWarning,
    TorchFunctionError,
)
from gradcheck_lab.gradients.inputs import (
    ReferenceFn,
    TorchFn,
    array_inputs,
    constant_indices,
    input_names,
    parameter_names,
    prepare_inputs,
    reference_precision,
)


def run_reference(reference_fn: ReferenceFn, inputs: Sequence[np.ndarray], names: Sequence[str],
                  constants: frozenset[int] = frozenset()) -> SideResults:
    """Call the reference on copies and validate that it returned ``(value, grads)``.

    ``grads`` holds one gradient per input, or one per non-constant input; the entries of constant
    inputs are ignored (None is fine there). ``SideResults.grads`` lists the non-constant inputs' gradients.
    """
    __tracebackhide__ = True
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
    return SideResults(value.reshape(()), checked, tuple(low), mutated)


def _below_float64(x: Any) -> bool:
    dtype = getattr(x, "dtype", None)
    return dtype is not None and np.dtype(dtype).kind == "f" and np.dtype(dtype).itemsize < 8


def _leaf(x: np.ndarray, constant: bool, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """A fresh tensor of ``x`` in ``dtype`` on ``device`` (integer data kept), requiring grad unless constant."""
    if constant and x.dtype.kind in "iub":
        return tensor_copy(x, device)
    return tensor_copy(x, device, dtype).requires_grad_(not constant)


def _value_leaf(x: np.ndarray, constant: bool, fresh: bool, device: torch.device) -> torch.Tensor:
    """A float64 tensor (integer data kept) without autograd; an array made for this call alone is not copied."""
    if constant and x.dtype.kind in "iub":
        return tensor_copy(x, device)
    if fresh and x.dtype == np.float64 and x.flags.writeable:
        return torch.from_numpy(x).to(device)
    return tensor_copy(x, device, torch.float64)


def run_torch(torch_fn: TorchFn, inputs: Sequence[np.ndarray], names: Sequence[str],
              device: torch.device, dtype: torch.dtype, constants: frozenset[int] = frozenset()) -> SideResults:
    """Run ``torch_fn`` with autograd on fresh tensors and return its value and gradients in float64.

    Constant inputs are tensors without ``requires_grad`` (integer data keeps its integer dtype);
    the gradients returned are those of the other inputs, in order.
    """
    __tracebackhide__ = True
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
    scalar = out if out.dim() == 0 else out.reshape(())  # (a view costs a node in the graph: only if needed)
    grads = torch.autograd.grad(scalar, [leaves[k] for k in variables], allow_unused=True)
    for k, g in zip(variables, grads, strict=True):
        if g is None:
            raise TorchFunctionError(
                f"the torch function does not depend on {names[k]}: autograd gave it no gradient "
                "(if it is data, such as labels or a mask, pass its index in constants=)")
    return SideResults(float64_array(out).reshape(()), [float64_array(g) for g in grads])




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

    def torch_or_none(self, point: list[np.ndarray], dtype: torch.dtype) -> SideResults | None:
        try:
            return self.torch(point, dtype)
        except Exception:
            return None

    def results_torch(self, point: list[np.ndarray], dtype: torch.dtype) -> list[np.ndarray] | None:
        side = self.torch_or_none(point, dtype)
        return None if side is None else side.results()

    def reference(self, point: Sequence[np.ndarray]) -> SideResults:
        __tracebackhide__ = True
        return run_reference(self.reference_fn, point, self.names, self.fixed)

    def torch(self, point: Sequence[np.ndarray], dtype: torch.dtype) -> SideResults:
        __tracebackhide__ = True
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

    def torch_float64(self, point: Sequence[np.ndarray]) -> SideResults | None:
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


def check_gradients(
    reference_fn: ReferenceFn,
    torch_fn: TorchFn,
    inputs: Any,
    *,
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype = "float64",
    rtol: float | None = None,
    atol: float | None = None,
    seed: int = 0,
    constants: Sequence[int] = (),
    kinks: str = "strict",
    finite_differences: bool = False,
    directions: int = 1,
    allow_nonfinite: bool = False,
    tf32: bool = False,
    reference_dtype: str | None = None,
) -> Report:
    """Check a hand-derived gradient against torch.autograd on ``device`` in ``dtype``.

    The inputs are rounded to ``dtype``; the reference runs on them (it is expected to compute in
    float64) and returns ``(value, grads)``; ``torch_fn`` runs on tensors of ``dtype`` on ``device``
    and returns a scalar. The reference is compared with torch re-run in float64 on the same inputs
    (the math, at float64 resolution in every dtype) and, below float64, with torch in ``dtype`` (its
    own rounding), under :mod:`gradcheck_lab.core.tolerances`. Where float64 rounding at these
    inputs can explain a disagreement the verdict is inconclusive: the report comes back with
    ``verdict == "inconclusive"`` and an :class:`InconclusiveWarning`.

    Args:
        reference_fn: ``reference_fn(*arrays) -> (value, grads)``: a scalar and one gradient per input
            (or per non-constant input), each shaped like its input.
        torch_fn: ``torch_fn(*tensors) -> scalar tensor``, the same function written in torch.
        inputs: a tuple of NumPy arrays (one array alone is one input); never modified.
        device: where torch runs ("cpu", "cuda", "cuda:1", "mps").
        dtype: the precision under test ("float64", "float32", "float16", "bfloat16" or a torch dtype).
        rtol: relative tolerance; None takes the dtype's default.
        atol: absolute tolerance; None takes the dtype's default (a true absolute floor, tiny).
        seed: seeds the finite-difference directions.
        constants: indices of data inputs (labels, targets, masks; integer arrays allowed): passed
            through, never perturbed, no gradient needed.
        kinks: "strict", or "subgradient" to accept, at a point where the function is not
            differentiable, any value between its one-sided derivatives.
        finite_differences: also vote with central differences of the float64 value along
            ``directions`` random directions (they abstain where they cannot resolve a direction).
        directions: how many random directions the finite differences use (at least 1).
        allow_nonfinite: accept NaN/Inf where both sides hold the same non-finite value.
        tf32: let float32 matmuls on CUDA use TF32 (judged at TF32's precision).
        reference_dtype: "float32" or "float16" for a reference that computes in that precision:
            it is judged at its own precision, its error against torch's float64 truth at most twice
            torch's own error in that dtype (plus a few units of its last place). Without it, a
            reference that computes below float64 fails with that cause named.

    Returns:
        A :class:`Report` (``verdict`` "passed" or "inconclusive").

    Raises:
        GradientMismatch: the reference and torch disagree (the message names the tensor, the worst
            element, both values, every term of the bound and a diagnosis where a pattern fits).
        InvalidInputError: an argument that cannot be used, named with the fix, before anything runs.
        UnknownDtypeError, DeviceError: an unknown dtype or device.
        NonFiniteError: NaN or Inf in an input or a result (unless ``allow_nonfinite``).
        ReferenceContractError: the reference did not return ``(value, grads)`` as described, or is
            not deterministic.
        TorchFunctionError: ``torch_fn`` did not return a differentiable scalar.
    """
    __tracebackhide__ = True
    arguments.callable_argument("reference_fn", reference_fn, "a function (*arrays) -> (value, grads)")
    arguments.callable_argument("torch_fn", torch_fn, "a function (*tensors) -> scalar tensor")
    from gradcheck_lab.gradients import complex as complex_inputs  # complex.py builds on this module

    if complex_inputs.any_complex(inputs):
        return complex_inputs.check_complex_gradients(
            reference_fn, torch_fn, inputs, device=device, dtype=dtype, rtol=rtol, atol=atol,
            finite_differences=finite_differences, directions=directions, seed=seed, allow_nonfinite=allow_nonfinite,
            tf32=tf32, constants=constants, kinks=kinks)
    torch_dtype = resolve_dtype(dtype)
    torch_device = resolve_device(device)
    rtol = arguments.tolerance("rtol", rtol)
    atol = arguments.tolerance("atol", atol)
    seed = arguments.integer("seed", seed)
    kinks = arguments.choice("kinks", kinks, ("strict", "subgradient"))
    directions = arguments.integer("directions", directions, minimum=1)
    for flag, given in (("finite_differences", finite_differences), ("allow_nonfinite", allow_nonfinite),
                        ("tf32", tf32)):
        if not isinstance(given, bool | np.bool_):
            raise InvalidInputError(f"{flag} must be True or False, got {given!r}")
    low_dtype = reference_precision(reference_dtype)
    original = array_inputs(inputs)
    require_memory(original, oracle=finite_differences)
    all_names = input_names(reference_fn, len(original))
    fixed = constant_indices(constants, len(original))
    rounded = prepare_inputs(original, torch_dtype, all_names, fixed)
    variables = [k for k in range(len(rounded)) if k not in fixed]
    names = [all_names[k] for k in variables]
    keys = [name for k, name in enumerate(parameter_names(reference_fn, len(original))) if k not in fixed]
    with preserved_torch_state(torch_device, tf32=tf32), check_threads():
        runner = _Runner(reference_fn, torch_fn, all_names, fixed, torch_device)
        reference = runner.reference(rounded)
        actual = runner.torch(rounded, torch_dtype)
        truth = actual if torch_dtype == torch.float64 else runner.torch_float64(rounded)
        at_reference_dtype = None
        if low_dtype is not None:  # torch's own error in the reference's precision: the yardstick it is held to
            at_reference_dtype = actual if low_dtype == torch_dtype else runner.torch_or_none(rounded, low_dtype)
        run = CheckRun(rounded, variables, names, reference, actual, truth, torch_device, torch_dtype, rtol=rtol,
                       atol=atol, tf32=tf32, allow_nonfinite=allow_nonfinite, subgradient=kinks == "subgradient",
                       oracle=(directions, seed) if finite_differences else None, reference_dtype=low_dtype,
                       torch_at_reference_dtype=at_reference_dtype, keys=keys)
        outcome = judge(run, runner)
    report, extra = outcome.report, outcome.kinks
    if reference.mutated:
        warnings.warn(f"the reference modified its input(s) {', '.join(reference.mutated)} in place; the harness "
                      "passes copies, so nothing was corrupted, but code that reuses its inputs will be",
                      ReferenceMutationWarning, stacklevel=2)
    if report.verdict == "mismatch":
        raise GradientMismatch(mismatch_message(report, extra), report=report, inputs=original)
    if report.verdict == "inconclusive":
        warnings.warn(mismatch_message(report, extra), InconclusiveWarning, stacklevel=2)
    return report
