r"""``check_jvp``: a hand-derived forward-mode rule (a Jacobian-vector product) against ``torch.func.jvp``.

``jvp(tangents, *inputs)`` returns :math:`J v = \sum_k J_k v_k`, the derivative of the output along the tangents
(shaped like the output). Both it and ``forward(*inputs)`` are compared with torch element by element, by the
machinery of a first-order check: the inputs (and tangents) are rounded to the dtype; the reference runs in
float64 and torch re-runs in float64 on the same rounded values (the truth), judged under
:mod:`gradcheck_lab.core.tolerances` by :class:`~gradcheck_lab.core.verdict.Judge`; an element past the a-priori
bound gets the measured rounding floor (moving the inputs, never the tangents), and where rounding can explain a
disagreement the verdict is inconclusive. :func:`judge_products` is that judgement for any list of products
(``check_hessian`` uses it too).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from gradcheck_lab.core import arguments
from gradcheck_lab.core.comparison import allowed_error
from gradcheck_lab.core.devices import resolve_device
from gradcheck_lab.core.diagnosis import FIT, diagnose, diagnose_value
from gradcheck_lab.core.dtypes import float64_array, resolve_dtype
from gradcheck_lab.core.oracle import abstention, central_difference, fd_agrees, taylor_order
from gradcheck_lab.core.report import OracleVotes, Report, Verdict
from gradcheck_lab.core.threads import check_threads
from gradcheck_lab.core.torch_state import preserved_torch_state
from gradcheck_lab.errors import (
    ReferenceContractError,
    TorchFunctionError,
)
from gradcheck_lab.gradients.inputs import as_input_tuple, constant_indices, input_names, prepare_inputs
from gradcheck_lab.gradients.products import (
    conclude,
    default_dtype,
    draw_vectors,
    fits,
    judge_products,
    leaves,
    validate_vectors,
)

JVP_LABEL = "the JVP (d out along the tangents)"
JVP_KEY = "jvp"
"""The JVP's key in the report: ``report.gradients["jvp"]`` (the label still resolves, with a DeprecationWarning)."""
TORCH_JIT_DEPRECATION = r"`torch\.jit\.script` is deprecated"
"""torch's own warning when its jvp decompositions load (torch's code, not the user's: not shown)."""


def torch_jvp(torch_fn: Callable[..., torch.Tensor], xs: Sequence[np.ndarray], tangents: Sequence[np.ndarray],
              fixed: frozenset[int], device: torch.device, dtype: torch.dtype) -> tuple[np.ndarray, np.ndarray]:
    """``(out, J v)`` of ``torch_fn`` in ``dtype``, as float64 arrays: ``torch.func.jvp``, or where an op has no
    forward-mode rule, the double-backward identity :math:`Jv = \\partial_u \\langle J^\\top u, v\\rangle`."""
    __tracebackhide__ = True
    variables = [k for k in range(len(xs)) if k not in fixed]
    with default_dtype(dtype):
        base = leaves(xs, fixed, device, dtype)
        ts = tuple(torch.tensor(t, dtype=dtype, device=device) for t in tangents)

        def fn(*vs: torch.Tensor) -> torch.Tensor:
            full = list(base)
            for k, v in zip(variables, vs, strict=True):
                full[k] = v
            out = torch_fn(*full)
            if not isinstance(out, torch.Tensor):
                raise TorchFunctionError(f"the torch function must return a tensor, got {type(out).__name__}")
            return out

        try:
            with warnings.catch_warnings():  # torch's first forward-mode call scripts its decompositions (18 warnings)
                warnings.filterwarnings("ignore", message=TORCH_JIT_DEPRECATION, category=DeprecationWarning)
                result = torch.func.jvp(fn, tuple(base[k] for k in variables), ts)
            out, jv = result[0], result[1]
        except TorchFunctionError:
            raise
        except Exception as exc:
            try:
                out, jv = _jvp_by_double_backward(fn, [base[k] for k in variables], ts)
            except Exception:
                raise TorchFunctionError(f"torch could not compute the JVP of the torch function: {exc}") from exc
    return float64_array(out), float64_array(jv)


def _jvp_by_double_backward(fn: Callable[..., torch.Tensor], primals: list[torch.Tensor],
                            tangents: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    ps = [p.detach().requires_grad_(True) for p in primals]
    out = fn(*ps)
    u = torch.zeros_like(out, requires_grad=True)
    grads = torch.autograd.grad(out, ps, u, create_graph=True, allow_unused=True)
    inner = sum(((g * t).sum() for g, t in zip(grads, tangents, strict=True) if g is not None),
                torch.zeros((), dtype=out.dtype, device=out.device))
    jv = torch.autograd.grad(inner, u, allow_unused=True)[0] if inner.requires_grad else None
    return out, torch.zeros_like(out) if jv is None else jv


def jvp_pattern(r: np.ndarray, t: np.ndarray, partials: Sequence[np.ndarray], transposed: np.ndarray | None,
                names: Sequence[str]) -> str | None:
    """How a wrong JVP ``r`` relates to torch's ``t``: a transposed Jacobian, a missing term, or one term alone.

    ``partials`` are torch's :math:`J_k v_k` (one per non-constant input), ``transposed`` torch's :math:`J^\\top v`
    reshaped like the output (where the Jacobian is square), ``names`` the non-constant inputs.
    """
    if transposed is not None and fits(r, transposed) and not fits(t, transposed):
        return ("the transposed Jacobian: it computes J^T v (a vector-Jacobian product with the tangents as the "
                "upstream gradient) where J v is wanted")
    if len(partials) > 1:
        for k, p in enumerate(partials):
            if np.any(p) and fits(r, t - p):
                return f"a missing term: it equals torch's JVP without the term of {names[k]}"
            if np.any(t - p) and fits(r, p):
                return f"only the term of {names[k]}: the other inputs' terms are missing"
    return None


def _jvp_diagnosis(reference: list[np.ndarray], truth: list[np.ndarray], beyond: list[bool],
                   torch_fn: Callable[..., torch.Tensor], xs: list[np.ndarray], tangents: list[np.ndarray],
                   fixed: frozenset[int], names: Sequence[str]) -> str | None:
    variables = [k for k in range(len(xs)) if k not in fixed]
    shapes = [(names[k], xs[k].shape) for k in range(len(xs))]
    found = []
    if beyond[0]:
        found.append(diagnose_value(float(np.sum(reference[0])), float(np.sum(truth[0])), not beyond[1], shapes)
                     if reference[0].size == 1 else diagnose([reference[0]], [truth[0]], ["value"],
                                                             [np.ones(truth[0].shape, dtype=bool)], shapes))
    if beyond[1]:
        cpu = torch.device("cpu")
        partials = []
        if len(variables) > 1:
            for slot in range(len(variables)):
                alone = [t if j == slot else np.zeros_like(t) for j, t in enumerate(tangents)]
                partials.append(torch_jvp(torch_fn, xs, alone, fixed, cpu, torch.float64)[1])
        transposed = None
        if sum(t.size for t in tangents) == truth[1].size:
            transposed = _torch_vjp(torch_fn, xs, tangents, fixed, truth[1].shape)
        text = jvp_pattern(reference[1], truth[1], partials, transposed, [names[k] for k in variables])
        text = text or diagnose([reference[1]], [truth[1]], [JVP_LABEL],
                                [np.abs(reference[1] - truth[1]) > FIT * np.max(np.abs(truth[1]), initial=0.0)],
                                shapes)
        if text:
            found.append(text if text.startswith(JVP_LABEL) else f"{JVP_LABEL}: {text}")
    return "; ".join(t for t in found if t) or None


def _torch_vjp(torch_fn: Callable[..., torch.Tensor], xs: list[np.ndarray], tangents: list[np.ndarray],
               fixed: frozenset[int], out_shape: tuple[int, ...]) -> np.ndarray | None:
    """torch's :math:`J^\\top v` with the tangents (concatenated) as the upstream gradient, shaped like the output."""
    try:
        with default_dtype(torch.float64):
            ts = leaves(xs, fixed, torch.device("cpu"), torch.float64)
            variables = [k for k in range(len(xs)) if k not in fixed]
            for k in variables:
                ts[k].requires_grad_(True)
            out = torch_fn(*ts)
            u = torch.tensor(np.concatenate([t.ravel() for t in tangents]).reshape(tuple(out.shape)))
            grads = torch.autograd.grad(out, [ts[k] for k in variables], u, allow_unused=True)
        flat = [np.zeros(xs[k].size) if g is None else g.double().numpy().ravel() for k, g in zip(variables, grads,
                                                                                               strict=True)]
        return np.concatenate(flat).reshape(out_shape)
    except Exception:
        return None


def _jvp_oracle(torch_fn: Callable[..., torch.Tensor], xs: list[np.ndarray], tangents: list[np.ndarray],
                fixed: frozenset[int], reference_jvp: np.ndarray, torch_jvp_: np.ndarray, agree: bool,
                seed: int) -> OracleVotes:
    """Central differences of the float64 forward along the tangents, read against random output weights w:
    :math:`\\langle w, f(x + hv) - f(x - hv)\\rangle / 2h` against :math:`\\langle w, Jv\\rangle` of either side."""
    variables = [k for k in range(len(xs)) if k not in fixed]
    w = np.random.default_rng([seed, 0x6f7263]).standard_normal(torch_jvp_.shape)
    size = max(float(np.max(np.abs(t), initial=0.0)) for t in tangents) or 1.0

    def along(*moved: np.ndarray) -> float:
        full = list(xs)
        for k, x in zip(variables, moved, strict=True):
            full[k] = x
        with default_dtype(torch.float64), torch.no_grad():
            out = torch_fn(*leaves(full, fixed, torch.device("cpu"), torch.float64))
        return float(np.vdot(w, out.double().numpy()))

    start = [xs[k] for k in variables]
    f0 = along(*start)
    estimate = central_difference(along, start, [t / size for t in tangents], f0=f0)
    predicted_r, predicted_t = (float(np.vdot(w, j)) / size for j in (reference_jvp, torch_jvp_))
    norm = float(np.vdot(np.abs(w), np.abs(torch_jvp_))) / size
    abstain = abstention(estimate, norm)
    votes = (None, None) if abstain else (fd_agrees(predicted_r, estimate, norm),
                                          fd_agrees(predicted_t, estimate, norm))
    return OracleVotes(agree, votes[0], votes[1], taylor_order(estimate, f0, predicted_r),
                       taylor_order(estimate, f0, predicted_t), 1, abstain, estimate.value, predicted_r, predicted_t)


def one_sided(torch_fn: Callable[..., torch.Tensor], xs: list[np.ndarray], tangents: list[np.ndarray],
              fixed: frozenset[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""The one-sided derivatives of torch's float64 forward along the tangents, and where they differ (a kink).

    :math:`D_\pm(h) = \pm(f(x \pm hv) - f(x))/h`; for a smooth :math:`f` their gap is :math:`h f''` and halves
    with :math:`h`, across a kink it stays the jump in slope. Returns ``(kink mask, D_-, D_+)`` at the smaller step.
    """
    variables = [k for k in range(len(xs)) if k not in fixed]
    size = max(float(np.max(np.abs(t), initial=0.0)) for t in tangents) or 1.0
    h = 2.0**-20 * max(1.0, *(float(np.max(np.abs(xs[k]), initial=0.0)) for k in variables)) / size

    def at(step: float) -> np.ndarray:
        moved = list(xs)
        for k, t in zip(variables, tangents, strict=True):
            moved[k] = xs[k] + step * t
        with default_dtype(torch.float64), torch.no_grad():
            return np.asarray(torch_fn(*leaves(moved, fixed, torch.device("cpu"), torch.float64)).double().numpy())

    f0 = at(0.0)
    sides = {step: (at(step) - f0) / step for step in (h, -h, h / 2, -h / 2)}
    gap, gap_half = sides[h] - sides[-h], sides[h / 2] - sides[-h / 2]
    scale = np.maximum(np.abs(sides[h / 2]), np.abs(sides[-h / 2]))
    kink = (np.abs(gap_half) > 0.75 * np.abs(gap)) & (np.abs(gap_half) > 1e-3 * np.maximum(scale, 1e-300))
    return kink, np.minimum(sides[h / 2], sides[-h / 2]), np.maximum(sides[h / 2], sides[-h / 2])


def _examine_kinks(report: Report, reference: np.ndarray, truth: np.ndarray, torch_fn: Callable[..., torch.Tensor],
                   xs: list[np.ndarray], tangents: list[np.ndarray], fixed: frozenset[int],
                   subgradient: bool) -> tuple[bool, str | None]:
    """Whether every wrong JVP element sits on a kink along the tangents (and, with ``subgradient``, lies between
    the one-sided derivatives); and a text saying so."""
    tol = report.math_tolerance
    if tol is None:
        return False, None
    wrong = np.abs(reference - truth) > allowed_error(reference, truth, tol)
    kink, low, high = one_sided(torch_fn, xs, tangents, fixed)
    if not wrong.any() or not kink[wrong].all():
        return False, None
    slack = 1e-6 * float(np.max(np.abs(truth), initial=0.0)) + 1e-6 * (high - low)
    inside = (reference >= low - slack) & (reference <= high + slack)
    index = tuple(int(i) for i in np.argwhere(wrong)[0])
    text = (f"{int(wrong.sum())} element(s) sit on a kink along the tangents (the function is not differentiable "
            f"there), e.g. {list(index)}: one-sided derivatives {float(low[index]):.6g} and {float(high[index]):.6g}, "
            f"torch's convention gives {float(truth[index]):.6g}, the reference {float(reference[index]):.6g}")
    if subgradient and inside[wrong].all():
        return True, text + "; accepted (kinks='subgradient')"
    return False, text + ("; kinks='subgradient' accepts any value between them" if inside[wrong].all() else
                          "; the reference lies outside them")


def check_jvp(
    forward: Callable[..., Any],
    jvp: Callable[..., Any],
    torch_fn: Callable[..., torch.Tensor],
    inputs: Any,
    *,
    tangents: Any = None,
    constants: Sequence[int] = (),
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype = "float64",
    rtol: float | None = None,
    atol: float | None = None,
    seed: int = 0,
    finite_differences: bool = False,
    kinks: str = "strict",
) -> Report:
    """Check a hand-derived forward-mode rule (and its forward) against ``torch.func.jvp`` of ``torch_fn``.

    Args:
        forward: ``forward(*inputs) -> out`` (any shape), the function itself.
        jvp: ``jvp(tangents, *inputs) -> d out`` along the tangents (shaped like ``out``): J v = sum_k J_k v_k.
        torch_fn: ``torch_fn(*tensors) -> tensor`` shaped like ``out``.
        inputs: a tuple of arrays (or one array); integer data allowed where listed in ``constants``.
        tangents: a tuple with one array per non-constant input, shaped like it; drawn (standard normal, from
            ``seed``) when None. Rounded to ``dtype`` like the inputs.
        constants: indices of data inputs (no tangent, never moved).
        device: where torch runs.
        dtype: the dtype under test: inputs and tangents are rounded to it; torch in float64 on those values is
            the truth, torch in ``dtype`` is reported beside it.
        rtol: overrides the relative tolerance (None: the dtype's default).
        atol: overrides the absolute tolerance.
        seed: seeds the tangents drawn and the oracle.
        finite_differences: also vote with central differences of the float64 forward along the tangents.
        kinks: where the wrong elements of the JVP sit on a kink along the tangents (one-sided derivatives
            differ), ``"strict"`` reports them with both one-sided derivatives and torch's convention;
            ``"subgradient"`` accepts any value between them.

    Returns:
        A :class:`Report`: ``value`` compares the forward, ``gradients["jvp"]`` the JVP.

    Raises:
        GradientMismatch: the forward or the JVP disagrees with torch (with a diagnosis where a pattern fits:
            a transposed Jacobian, a missing term, a constant factor, ...).
        InvalidInputError: malformed arguments or tangents (wrong count or shape), before anything runs.
        ReferenceContractError: ``forward``/``jvp`` return something of the wrong shape.
        TorchFunctionError: ``torch_fn`` cannot be run or differentiated in forward mode.
    """
    __tracebackhide__ = True
    arguments.callable_argument("forward", forward, "the forward function, forward(*inputs) -> out")
    arguments.callable_argument("jvp", jvp, "the forward-mode rule, jvp(tangents, *inputs) -> d out")
    arguments.callable_argument("torch_fn", torch_fn, "the torch function, torch_fn(*tensors) -> tensor")
    rtol, atol = arguments.tolerance("rtol", rtol), arguments.tolerance("atol", atol)
    seed = arguments.integer("seed", seed)
    arguments.choice("kinks", kinks, ("strict", "subgradient"))
    torch_dtype, torch_device = resolve_dtype(dtype), resolve_device(device)
    original = as_input_tuple(inputs)
    names = input_names(forward, len(original))
    fixed = constant_indices(constants, len(original))
    xs = prepare_inputs(original, torch_dtype, names, fixed)
    variables = [k for k in range(len(xs)) if k not in fixed]
    if tangents is None:
        tangents = draw_vectors([xs[k].shape for k in variables], seed, 0x6a7670)
    ts = validate_vectors("tangents", tangents, xs, variables, names, torch_dtype)
    n = len(xs)

    def reference_at(point: list[np.ndarray]) -> list[np.ndarray]:
        __tracebackhide__ = True
        out = np.asarray(forward(*[np.array(x, copy=True) for x in point[:n]]), dtype=np.float64)
        jv = jvp(tuple(np.array(t, copy=True) for t in point[n:]), *[np.array(x, copy=True) for x in point[:n]])
        if isinstance(jv, tuple | list) and len(jv) == 1:
            jv = jv[0]
        jv = np.asarray(jv, dtype=np.float64)
        if jv.shape != out.shape:
            hint = ": transposed?" if sorted(jv.shape) == sorted(out.shape) and jv.ndim > 1 else ""
            raise ReferenceContractError(f"jvp returned shape {jv.shape}, the forward's output has {out.shape}{hint}")
        return [out, jv]

    def truth_at(point: list[np.ndarray]) -> list[np.ndarray]:
        return list(torch_jvp(torch_fn, point[:n], point[n:], fixed, torch.device("cpu"), torch.float64))

    point = [*xs, *ts]
    with preserved_torch_state(torch_device), check_threads():
        reference = reference_at(point)
        truth = truth_at(point)
        if truth[0].shape != reference[0].shape:
            raise TorchFunctionError(f"the torch function's output has shape {truth[0].shape}, the forward's "
                                     f"{reference[0].shape}")
        shown = None if torch_dtype == torch.float64 else list(torch_jvp(torch_fn, xs, ts, fixed, torch_device,
                                                                         torch_dtype))
        labels = ["value", JVP_LABEL]
        report, beyond = judge_products(labels, reference, truth, shown, reference_at, truth_at, point, variables,
                                        torch_device, torch_dtype, rtol=rtol, atol=atol, keys=["value", JVP_KEY])
        kink_note = None
        if report.verdict == "mismatch" and beyond[1] and not beyond[0]:
            accepted, kink_note = _examine_kinks(report, reference[1], truth[1], torch_fn, xs, ts, fixed,
                                                 kinks == "subgradient")
            if accepted:
                report = replace(report, verdict="passed", passed=True)
            if kink_note:
                report = replace(report, notes=(*report.notes, kink_note))
        oracle = None
        if finite_differences:
            oracle = _jvp_oracle(torch_fn, xs, ts, fixed, reference[1], truth[1], not beyond[1], seed)
        diagnosis = None
        if report.verdict == "mismatch" or (oracle is not None and oracle.shared_mistake):
            diagnosis = kink_note or _jvp_diagnosis(reference, truth, beyond, torch_fn, xs, ts, fixed, names)
    verdict: Verdict = "mismatch" if oracle is not None and oracle.shared_mistake else report.verdict
    report = replace(report, oracle=oracle, diagnosis=diagnosis, verdict=verdict, passed=verdict == "passed")
    return conclude(report, labels, original)
