"""``check_gradients``: a hand-derived reference against torch.autograd, element by element."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from gradcheck_lab import numeric
from gradcheck_lab._torch_state import preserved_torch_state
from gradcheck_lab.comparison import Comparison, allowed_error, compare, finite_or_zero
from gradcheck_lab.devices import resolve_device
from gradcheck_lab.dtypes import dtype_name, resolve_dtype, round_to_dtype
from gradcheck_lab.errors import (
    GradientMismatch,
    InvalidInputError,
    NonFiniteError,
    ReferenceContractError,
    TorchFunctionError,
)
from gradcheck_lab.report import OracleVotes, Report
from gradcheck_lab.tolerances import Tolerance, gradient_tolerance, without_measured_noise

ReferenceFn = Callable[..., tuple[Any, Sequence[Any]]]
TorchFn = Callable[..., torch.Tensor]


def input_names(fn: Callable[..., Any], count: int) -> list[str]:
    """Names for the inputs: the function's positional parameter names when they fit, else ``input[k]``."""
    try:
        params = [p for p in inspect.signature(fn).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        params = []
    if len(params) >= count:
        return [f"{params[k].name!r} (input {k})" for k in range(count)]
    return [f"input {k}" for k in range(count)]


def as_input_tuple(inputs: Any) -> tuple[Any, ...]:
    """Accept one array or a sequence of arrays."""
    if isinstance(inputs, np.ndarray | torch.Tensor | float | int | np.generic):
        return (inputs,)
    if isinstance(inputs, list | tuple):
        if not inputs:
            raise InvalidInputError("inputs is empty: pass a tuple with at least one array")
        return tuple(inputs)
    raise InvalidInputError(f"inputs must be a tuple of NumPy arrays, got {type(inputs).__name__}")


def constant_indices(constants: Sequence[int], count: int) -> frozenset[int]:
    """Validate ``constants=`` (indices of data inputs, negative ones from the end) against ``count`` inputs."""
    if isinstance(constants, int | np.integer):
        constants = (int(constants),)
    indices = set()
    for k in constants:
        if not isinstance(k, int | np.integer) or isinstance(k, bool):
            raise InvalidInputError(f"constants= holds {k!r}: give input indices (integers)")
        if not -count <= k < count:
            raise InvalidInputError(f"constants= holds index {k}, but there are {count} input(s)")
        indices.add(int(k) % count)
    if len(indices) == count:
        raise InvalidInputError("every input is in constants=: at least one input must be differentiated")
    return frozenset(indices)


def prepare_inputs(inputs: Any, dtype: torch.dtype, names: Sequence[str] | None = None,
                   constants: frozenset[int] = frozenset()) -> list[np.ndarray]:
    """Validate the inputs and return copies: float64 rounded to ``dtype``. The caller's arrays are not touched.

    Data inputs (indices in ``constants``) may also be integer or boolean arrays, kept exact; floating
    data is rounded to ``dtype`` like every other input, since the torch side sees it in ``dtype``.
    """
    inputs = as_input_tuple(inputs)
    names = names or [f"input {k}" for k in range(len(inputs))]
    rounded = []
    for k, (name, x) in enumerate(zip(names, inputs, strict=True)):
        arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
        if k in constants and arr.dtype.kind in "iub":
            rounded.append(np.array(arr, copy=True))
            continue
        if arr.dtype.kind in "iub":
            raise InvalidInputError(
                f"{name} has {arr.dtype} dtype: gradients need floating inputs (cast it, e.g. x.astype(np.float64),"
                " or pass its index in constants= if it is data such as labels)")
        if arr.dtype.kind != "f":
            raise InvalidInputError(f"{name} has unsupported dtype {arr.dtype}: only real floating arrays are checked")
        if arr.size == 0 and k not in constants:
            raise InvalidInputError(f"{name} is empty (shape {arr.shape}): there is nothing to differentiate")
        if not np.all(np.isfinite(arr)):
            bad = tuple(int(i) for i in np.argwhere(~np.isfinite(arr))[0])
            raise NonFiniteError(f"{name} holds {float(arr[bad])!r} at index {bad}: inputs must be finite")
        as_dtype = round_to_dtype(arr, dtype)
        if not np.all(np.isfinite(as_dtype)):
            raise NonFiniteError(
                f"{name} overflows {dtype_name(dtype)}: its largest magnitude is {np.abs(arr).max():g}")
        rounded.append(as_dtype)
    return rounded


@dataclass(frozen=True)
class _Side:
    value: np.ndarray
    grads: list[np.ndarray]


def run_reference(reference_fn: ReferenceFn, inputs: Sequence[np.ndarray], names: Sequence[str],
                  constants: frozenset[int] = frozenset()) -> _Side:
    """Call the reference on copies and validate that it returned ``(value, grads)``.

    ``grads`` holds one gradient per input, or one per non-constant input; the entries of constant
    inputs are ignored (None is fine there). ``_Side.grads`` lists the non-constant inputs' gradients.
    """
    result = reference_fn(*(x.copy() for x in inputs))
    if not isinstance(result, tuple | list) or len(result) != 2:
        raise ReferenceContractError(
            f"the reference must return (value, grads), got {type(result).__name__}"
            + (f" of length {len(result)}" if isinstance(result, tuple | list) else ""))
    value, grads = result
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
        g = np.asarray(g, dtype=np.float64)
        if g.shape != inputs[k].shape:
            raise ReferenceContractError(
                f"the reference's gradient of {names[k]} has shape {g.shape}, the input has {inputs[k].shape}")
        checked.append(g)
    return _Side(value.reshape(()), checked)


def _leaf(x: np.ndarray, constant: bool, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    if constant:
        return torch.tensor(x, device=device) if x.dtype.kind in "iub" else torch.tensor(x, dtype=dtype, device=device)
    return torch.tensor(x, dtype=dtype, device=device, requires_grad=True)


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


def _float64_run(torch_fn: TorchFn, inputs: Sequence[np.ndarray], names: Sequence[str],
                 device: torch.device, constants: frozenset[int]) -> _Side | None:
    """The torch function in float64 on the same rounded inputs: the yardstick for its own rounding noise.

    None where it cannot run in float64 (a kernel written for one dtype, or MPS, which has no float64).
    """
    if device.type == "mps":
        device = torch.device("cpu")
    try:
        side = run_torch(torch_fn, inputs, names, device, torch.float64, constants)
    except Exception:
        return None
    finite = all(np.all(np.isfinite(a)) for a in (side.value, *side.grads))
    return side if finite else None


def _nonfinite_problem(side: _Side, label: str, names: Sequence[str]) -> str | None:
    for name, arr in [("value", side.value), *zip(names, side.grads, strict=True)]:
        if not np.all(np.isfinite(arr)):
            idx = tuple(int(i) for i in np.argwhere(~np.isfinite(arr))[0]) if arr.ndim else ()
            what = "value" if name == "value" else "gradient of " + name
            return f"the {label} {what} holds {float(arr[idx])!r} at {idx}"
    return None


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
    directions: int = 3,
    seed: int = 0,
    allow_nonfinite: bool = False,
    tf32: bool = False,
    constants: Sequence[int] = (),
) -> Report:
    """Check a hand-derived gradient against torch.autograd on ``device`` in ``dtype``.

    The inputs are rounded to ``dtype``; the reference runs on them in float64 and must return
    ``(value, grads)`` with one gradient per input; ``torch_fn`` runs on leaf tensors of
    ``dtype`` on ``device`` and must return a scalar. The value and every element of every
    gradient are compared under the dtype's tolerance (or ``rtol``/``atol``).

    With ``finite_differences``, central differences of the reference's value along
    ``directions`` random directions and the Taylor remainder test vote as well. Returns a
    :class:`Report`; raises :class:`GradientMismatch` on disagreement, and a typed error for
    inputs or outputs that cannot be checked (NaN/Inf fail unless ``allow_nonfinite``).
    """
    torch_dtype = resolve_dtype(dtype)
    torch_device = resolve_device(device)
    original = as_input_tuple(inputs)
    all_names = input_names(reference_fn, len(original))
    fixed = constant_indices(constants, len(original))
    rounded = prepare_inputs(original, torch_dtype, all_names, fixed)
    variables = [k for k in range(len(rounded)) if k not in fixed]
    names = [all_names[k] for k in variables]
    reference = run_reference(reference_fn, rounded, all_names, fixed)
    with preserved_torch_state(torch_device, tf32=tf32):
        rng = torch.get_rng_state()
        autograd = run_torch(torch_fn, rounded, all_names, torch_device, torch_dtype, fixed)
        noise_run = None
        if torch_dtype != torch.float64:
            torch.set_rng_state(rng)
            noise_run = _float64_run(torch_fn, rounded, all_names, torch_device, fixed)
    if not allow_nonfinite:
        for side, label in ((reference, "reference"), (autograd, "torch")):
            problem = _nonfinite_problem(side, label, names)
            if problem:
                raise NonFiniteError(problem + " (pass allow_nonfinite=True to require matching non-finite values)")

    tol = gradient_tolerance(torch_dtype, rtol=rtol, atol=atol, numel=max(rounded[k].size for k in variables),
                             tf32=tf32)
    if noise_run is None and torch_dtype != torch.float64:
        tol = without_measured_noise(tol)
    grad_scale = max(float(np.max(np.abs(finite_or_zero(g)), initial=0.0))
                     for g in (*reference.grads, *autograd.grads))
    condition = sum(float(np.sum(np.abs(finite_or_zero(g)) * np.abs(rounded[k])))
                    for g, k in zip(reference.grads, variables, strict=True))
    value_cmp = compare(reference.value, autograd.value, tol, global_scale=condition,
                        noise=None if noise_run is None else np.abs(noise_run.value - autograd.value),
                        allow_nonfinite=allow_nonfinite)
    grad_cmps = {
        name: compare(e, a, tol, global_scale=grad_scale,
                      noise=None if noise_run is None else np.abs(noise_run.grads[k] - a),
                      allow_nonfinite=allow_nonfinite)
        for k, (name, e, a) in enumerate(zip(names, reference.grads, autograd.grads, strict=True))
    }
    oracle = None
    if finite_differences:
        torch_slack = [allowed_error(e, a, tol, global_scale=grad_scale,
                                     noise=None if noise_run is None else np.abs(noise_run.grads[k] - a))
                       for k, (e, a) in enumerate(zip(reference.grads, autograd.grads, strict=True))]
        oracle = _oracle_votes(reference_fn, rounded, variables, reference.grads, autograd.grads,
                               all(c.passed for c in grad_cmps.values()), directions, seed,
                               torch_slack=torch_slack, torch_is_float64=noise_run is None)
    report = _build_report(torch_device, torch_dtype, tol, value_cmp, grad_cmps, oracle)
    if not report.passed:
        raise GradientMismatch(_mismatch_message(report), report=report, inputs=original)
    return report


class _ReferenceAtPoint:
    """The reference's value and condition scale at a point of the non-constant inputs, from one call.

    The oracles ask for both at each point they visit, one right after the other. The last point
    is kept (so its arrays stay alive) and recognized by identity, not by value. Constant inputs
    are passed through unperturbed, and every call gets its own copies.
    """

    def __init__(self, reference_fn: ReferenceFn, all_inputs: Sequence[np.ndarray], variables: Sequence[int]) -> None:
        self.reference_fn = reference_fn
        self.all_inputs, self.variables = list(all_inputs), list(variables)
        self._point: tuple[np.ndarray, ...] = ()
        self._result: tuple[Any, Sequence[Any]] | None = None

    def _at(self, xs: tuple[np.ndarray, ...]) -> tuple[Any, Sequence[Any]]:
        same = self._result is not None and len(xs) == len(self._point) and all(
            a is b for a, b in zip(xs, self._point, strict=True))
        if not same:
            full = [x.copy() for x in self.all_inputs]
            for k, x in zip(self.variables, xs, strict=True):
                full[k] = x.copy()
            value, grads = self.reference_fn(*full)
            if isinstance(grads, np.ndarray):
                grads = (grads,)
            if len(grads) == len(full) and len(full) != len(self.variables):
                grads = [grads[k] for k in self.variables]
            self._point, self._result = xs, (value, grads)
        return self._result

    def value(self, *xs: np.ndarray) -> float:
        return float(np.asarray(self._at(xs)[0], dtype=np.float64).reshape(()))

    def condition_scale(self, *xs: np.ndarray) -> float:
        """sum_k <|grad_k|, |x_k|>: the size of the terms whose rounding shows in the value."""
        grads = self._at(xs)[1]
        return float(sum(np.sum(np.abs(np.asarray(g, dtype=np.float64)) * np.abs(x))
                         for g, x in zip(grads, xs, strict=True)))


def _oracle_votes(reference_fn: ReferenceFn, all_inputs: list[np.ndarray], variables: list[int],
                  ref_grads: list[np.ndarray],
                  torch_grads: list[np.ndarray], ref_vs_autograd: bool, count: int, seed: int, *,
                  torch_slack: list[np.ndarray], torch_is_float64: bool) -> OracleVotes:
    """Vote with finite differences of the float64 reference value along relative random directions.

    The torch side may differ from the float64 truth by its comparison bound, carried through the
    direction: ``sum |bound * v|``. The Taylor test overrules noisy differences for float64 gradients.
    """
    at_point = _ReferenceAtPoint(reference_fn, all_inputs, variables)
    value, condition_scale = at_point.value, at_point.condition_scale
    inputs = [all_inputs[k] for k in variables]

    dirs = [numeric.relative_direction(v, inputs)
            for v in numeric.random_directions([x.shape for x in inputs], count, seed)]
    ref_ok, torch_ok = True, True
    for v in dirs:
        estimate = numeric.central_difference(value, inputs, v, h=numeric.RELATIVE_FD_STEP, noise=condition_scale)
        # |<g, v>| <= sum |g||v|: the largest the directional derivative can be along v.
        norm = max(float(sum(np.sum(np.abs(g * d)) for g, d in zip(grads, v, strict=True)))
                   for grads in (ref_grads, torch_grads))
        slack = float(sum(np.sum(b * np.abs(d)) for b, d in zip(torch_slack, v, strict=True)))
        ref_ok &= numeric.fd_agrees(numeric.dot(ref_grads, v), estimate, norm)
        torch_ok &= numeric.fd_agrees(numeric.dot(torch_grads, v), estimate, norm, slack)
    taylor_ref, taylor_torch = numeric.taylor_tests(value, inputs, [ref_grads, torch_grads], dirs[0],
                                                    h0=numeric.RELATIVE_TAYLOR_STEP, noise=condition_scale)
    # Below float64 the torch gradient carries its dtype's error, so its remainder is order 1 at small h.
    torch_taylor_ok = taylor_torch.passed and torch_is_float64
    return OracleVotes(
        reference_vs_autograd=ref_vs_autograd,
        reference_vs_fd=ref_ok or taylor_ref.passed,
        autograd_vs_fd=torch_ok or torch_taylor_ok,
        taylor_order_reference=taylor_ref.order,
        taylor_order_autograd=taylor_torch.order,
        directions=count,
    )


def _build_report(device: torch.device, dtype: torch.dtype, tol: Tolerance, value: Comparison,
                  grads: dict[str, Comparison], oracle: OracleVotes | None) -> Report:
    everything = {"value": value, **grads}
    worst_name = max(everything, key=lambda n: everything[n].ratio)
    worst = everything[worst_name]
    passed = all(c.passed for c in everything.values())
    if oracle is not None and oracle.reference_vs_autograd and not oracle.reference_vs_fd:
        passed = False
    return Report(
        passed=passed,
        device=str(device),
        dtype=dtype_name(dtype),
        max_abs_error=max(c.max_abs_error for c in everything.values()),
        max_rel_error=max(c.max_rel_error for c in everything.values()),
        ratio=worst.ratio,
        worst_input=worst_name,
        worst_index=worst.index,
        expected=worst.expected,
        actual=worst.actual,
        tolerance=tol,
        value=value,
        gradients=grads,
        oracle=oracle,
    )


def _mismatch_message(report: Report) -> str:
    failing = [name for name, c in {"value": report.value, **report.gradients}.items() if not c.passed]
    if not failing:
        lines = [f"gradients disagree with finite differences on {report.device}/{report.dtype}"]
    else:
        name = report.worst_input
        what = "the value (forward)" if name == "value" else f"the gradient of {name}"
        c = report.value if name == "value" else report.gradients[name]
        lines = [f"{what} disagrees on {report.device}/{report.dtype}"]
        if c.nonfinite:
            lines.append(f"  {c.nonfinite}")
        else:
            index = list(report.worst_index)
            lines.append(f"  worst element {index}: expected {report.expected!r} (reference), "
                         f"got {report.actual!r} (torch)")
            lines.append(f"  max abs error {c.max_abs_error:.3e}, max rel error {c.max_rel_error:.3e} "
                         f"(relative to the tensor's largest magnitude), {c.ratio:.3g}x the allowed bound")
        if len(failing) > 1:
            lines.append("  also failing: " + ", ".join(f for f in failing if f != name))
    lines.append(f"  tolerance: {report.tolerance.describe()}")
    if report.oracle is not None:
        lines.append(f"  oracle: {report.oracle.verdict()}")
    return "\n".join(lines)
