r"""Second order: a hand-derived Hessian-vector product (``check_hvp``) or full Hessian (``check_hessian``).

A Hessian-vector product is a gradient: for the scalar :math:`f` and vectors :math:`v` (one per non-constant
input), :math:`Hv = \nabla_x q` with :math:`q(x) = \langle \nabla f(x), v\rangle`. So ``check_hvp`` is
:func:`~gradcheck_lab.gradients.check.check_gradients` of :math:`q` (torch computes :math:`\nabla f` with
``create_graph=True`` and differentiates :math:`q` again: double backward), the vectors passed as data: every
part of a first-order check applies unchanged, the dtype-rounded float64 decision, the measured floor, the
inconclusive verdict, kinks of :math:`\nabla f` and, with ``finite_differences=True``, the oracle, whose central
differences of :math:`q` along random directions :math:`d` are differences of the gradient,
:math:`\langle\nabla f(x + hd) - \nabla f(x - hd), v\rangle / 2h \approx d^\top H v`. The reference's value
of :math:`q` is torch's (the hand derivation supplies only :math:`Hv`), so the value comparison is moot.

``check_hessian`` compares a full Hessian (small problems: Newton's method, IRLS) element by element with
torch's, judged by :func:`~gradcheck_lab.gradients.jvp.judge_products`.

Beyond the first-order diagnoses (zeros, a constant factor such as a missing :math:`1/n`, ...), a wrong
second-order derivation is read for: a regularizer's :math:`\lambda v` missing or doubled; a cross term
:math:`\partial^2 f/\partial x_k\partial x_j\,v_j` missing; a Gauss-Newton (or Fisher) matrix handed in as the
Hessian (positive semi-definite where torch's Hessian has negative curvature); an asymmetric Hessian.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from gradcheck_lab.core import arguments
from gradcheck_lab.core.devices import resolve_device
from gradcheck_lab.core.diagnosis import FIT, diagnose
from gradcheck_lab.core.dtypes import float64_array, resolve_dtype
from gradcheck_lab.core.report import Report
from gradcheck_lab.core.threads import check_threads
from gradcheck_lab.core.torch_state import preserved_torch_state
from gradcheck_lab.errors import GradientMismatch, InvalidInputError, ReferenceContractError, TorchFunctionError
from gradcheck_lab.gradients.check import check_gradients
from gradcheck_lab.gradients.inputs import as_input_tuple, constant_indices, parameter_names, prepare_inputs
from gradcheck_lab.gradients.products import (
    conclude,
    cross_term_pattern,
    default_dtype,
    draw_vectors,
    gauss_newton_pattern,
    judge_products,
    leaves,
    regularizer_pattern,
    reworded,
    validate_vectors,
)
from gradcheck_lab.gradients.vjp import named

CPU = torch.device("cpu")
PROBE_LIMIT = 256
"""Problems up to this many differentiated elements get the full-matrix diagnoses (Gauss-Newton)."""


def torch_hvp_fn(torch_fn: Callable[..., torch.Tensor], n: int,
                 fixed: frozenset[int]) -> Callable[..., torch.Tensor]:
    r"""The scalar :math:`q(x, v) = \langle\nabla f(x), v\rangle` over ``(*inputs, *vectors)``, differentiable again.

    Called without autograd (the harness's value runs), it builds the inner graph itself.
    """
    variables = [k for k in range(n) if k not in fixed]

    def q(*args: torch.Tensor) -> torch.Tensor:
        __tracebackhide__ = True
        xs, vs = list(args[:n]), args[n:]
        with torch.enable_grad():
            for k in variables:
                if not xs[k].requires_grad:
                    xs[k] = xs[k].detach().requires_grad_(True)
            f = torch_fn(*xs)
            if not isinstance(f, torch.Tensor) or f.numel() != 1:
                raise TorchFunctionError("the torch function must return a scalar tensor (one element), got "
                                         + (f"shape {tuple(f.shape)}" if isinstance(f, torch.Tensor)
                                            else type(f).__name__))
            if not f.requires_grad:
                raise TorchFunctionError("the torch function's output does not depend on any input (no grad_fn)")
            grads = torch.autograd.grad(f.reshape(()), [xs[k] for k in variables], create_graph=True,
                                        allow_unused=True)
            total = sum(((g * v).sum() for g, v in zip(grads, vs, strict=True) if g is not None),
                        torch.zeros((), dtype=f.dtype, device=f.device))
            # 0 * x keeps every input in the graph: a function linear in x has Hv = 0 there, not "unused".
            return total + sum((xs[k] * 0).sum() for k in variables)

    return q


def torch_hvp(torch_fn: Callable[..., torch.Tensor], xs: Sequence[np.ndarray], vs: Sequence[np.ndarray],
              fixed: frozenset[int], device: torch.device = CPU,
              dtype: torch.dtype = torch.float64) -> list[np.ndarray]:
    """torch's Hessian-vector product (double backward) as float64 arrays, one per non-constant input."""
    variables = [k for k in range(len(xs)) if k not in fixed]
    with default_dtype(dtype):
        ts = leaves([*xs, *vs], fixed, device, dtype)
        for k in variables:
            ts[k].requires_grad_(True)
        q = torch_hvp_fn(torch_fn, len(xs), fixed)(*ts)
        grads = torch.autograd.grad(q, [ts[k] for k in variables])
    return [float64_array(g) for g in grads]


def _as_products(result: Any, count: int) -> list[Any]:
    __tracebackhide__ = True
    if isinstance(result, np.ndarray | np.generic | float) and count == 1:
        return [result]
    if not isinstance(result, tuple | list) or len(result) != count:
        raise ReferenceContractError(f"hvp must return a tuple of {count} array(s), one per non-constant input, got "
                                     + (f"{len(result)}" if isinstance(result, tuple | list) else
                                        type(result).__name__))
    return list(result)


def hvp_reference(hvp: Callable[..., Any], q: Callable[..., torch.Tensor], n: int, fixed: frozenset[int],
                  names: Sequence[str]) -> Callable[..., Any]:
    """``hvp`` as a ``check_gradients`` reference over ``(*inputs, *vectors)``: value q (torch's), grads Hv."""
    variables = [k for k in range(n) if k not in fixed]

    def reference(*args: np.ndarray) -> tuple[Any, list[Any]]:
        __tracebackhide__ = True
        xs, vs = args[:n], args[n:]
        products = _as_products(hvp(tuple(vs), *xs), len(variables))
        for k, p in zip(variables, products, strict=True):
            if np.shape(p) != np.shape(xs[k]):
                raise ReferenceContractError(f"hvp returned shape {np.shape(p)} for {names[k]!r}, which has shape "
                                             f"{np.shape(xs[k])}")
        with default_dtype(torch.float64), torch.no_grad():
            value = q(*leaves(list(args), fixed | frozenset(range(n, len(args))), torch.device("cpu"),
                              torch.float64)).detach().double().numpy()
        return value, products

    return named(reference, [*names, *(f"vectors{k}" for k in range(len(variables)))])


def _flat(arrays: Sequence[np.ndarray]) -> np.ndarray:
    return np.concatenate([np.ravel(a) for a in arrays]) if arrays else np.zeros(0)


def _split(flat: np.ndarray, shapes: Sequence[tuple[int, ...]]) -> list[np.ndarray]:
    out, start = [], 0
    for s in shapes:
        out.append(flat[start:start + math.prod(s)].reshape(s))
        start += math.prod(s)
    return out


def _hvp_diagnosis(hvp: Callable[..., Any], torch_fn: Callable[..., torch.Tensor], xs: list[np.ndarray],
                   vs: list[np.ndarray], fixed: frozenset[int], names: Sequence[str]) -> str | None:
    """The second-order patterns of a wrong Hessian-vector product, at the checked (rounded) point."""
    variables = [k for k in range(len(xs)) if k not in fixed]
    labels = [names[k] for k in variables]
    shapes = [xs[k].shape for k in variables]
    try:
        r = [np.asarray(p, dtype=np.float64) for p in _as_products(hvp(tuple(vs), *xs), len(variables))]
        t = torch_hvp(torch_fn, xs, vs, fixed)
    except Exception:
        return None
    all_shapes = [(names[k], x.shape) for k, x in enumerate(xs)]
    text = regularizer_pattern(_flat(r), _flat(t), _flat(vs), all_shapes)
    if text is None and len(variables) > 1:
        partials = [torch_hvp(torch_fn, xs, [v if i == j else np.zeros_like(v) for i, v in enumerate(vs)], fixed)
                    for j in range(len(vs))]
        text = cross_term_pattern(r, t, partials, labels)
    if text is None and sum(math.prod(s) for s in shapes) <= PROBE_LIMIT:
        size = sum(math.prod(s) for s in shapes)
        columns = [_flat(torch_hvp(torch_fn, xs, _split(np.eye(size)[j], shapes), fixed)) for j in range(size)]

        def form(u: np.ndarray) -> float:
            return float(u @ _flat(_as_products(hvp(tuple(_split(u, shapes)), *xs), len(variables))))

        try:
            text = gauss_newton_pattern(form, np.stack(columns, axis=1))
        except Exception:
            text = None
    return text


def check_hvp(
    hvp: Callable[..., Any],
    torch_fn: Callable[..., torch.Tensor],
    inputs: Any,
    *,
    vectors: Any = None,
    constants: Sequence[int] = (),
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype = "float64",
    rtol: float | None = None,
    atol: float | None = None,
    seed: int = 0,
    finite_differences: bool = False,
    kinks: str = "strict",
) -> Report:
    """Check a hand-derived Hessian-vector product against torch's (double backward) for the scalar ``torch_fn``.

    Args:
        hvp: ``hvp(vectors, *inputs)`` returns one array per non-constant input: the Hessian of the scalar
            (with respect to all non-constant inputs jointly) times the vectors.
        torch_fn: ``torch_fn(*tensors)`` returns the scalar whose Hessian it is.
        inputs: a tuple of arrays (integer data allowed where listed in ``constants``).
        vectors: one array per non-constant input, shaped like it; drawn (standard normal, from ``seed``) when
            None. Rounded to ``dtype`` like the inputs.
        constants: indices of data inputs (labels, design matrices): not differentiated, never moved.
        device: where torch runs.
        dtype: the dtype under test (the inputs and vectors are rounded to it; torch in float64 decides).
        rtol: overrides the relative tolerance (None: the dtype's default).
        atol: overrides the absolute tolerance.
        seed: seeds the vectors drawn and the oracle's directions.
        finite_differences: also vote with central differences of the gradient (contracted with the vectors).
        kinks: ``"strict"`` or ``"subgradient"``, as in ``check_gradients`` (for kinks of the gradient).

    Returns:
        The :class:`Report` of the check; ``gradients`` holds one comparison per non-constant input's product.

    Raises:
        GradientMismatch: the products disagree (diagnosed where a pattern fits).
        InvalidInputError: malformed arguments or vectors (wrong count or shape), before anything runs.
        ReferenceContractError: ``hvp`` returns the wrong number or shapes of arrays.
        TorchFunctionError: ``torch_fn`` does not return a differentiable scalar.
    """
    __tracebackhide__ = True
    arguments.callable_argument("hvp", hvp, "the Hessian-vector product, hvp(vectors, *inputs) -> tuple of arrays")
    arguments.callable_argument("torch_fn", torch_fn, "the torch function, torch_fn(*tensors) -> scalar tensor")
    rtol, atol = arguments.tolerance("rtol", rtol), arguments.tolerance("atol", atol)
    seed = arguments.integer("seed", seed)
    arguments.choice("kinks", kinks, ("strict", "subgradient"))
    torch_dtype = resolve_dtype(dtype)
    resolve_device(device)
    original = as_input_tuple(inputs)
    n = len(original)
    names = [f"'{p}' (input {k})" for k, p in enumerate(parameter_names(torch_fn, n))]
    fixed = constant_indices(constants, n)
    xs = prepare_inputs(original, torch_dtype, names, fixed)
    variables = [k for k in range(n) if k not in fixed]
    if vectors is None:
        vectors = draw_vectors([xs[k].shape for k in variables], seed, 0x687670)
    vs = validate_vectors("vectors", vectors, xs, variables, names, torch_dtype)
    q = torch_hvp_fn(torch_fn, n, fixed)
    reference = hvp_reference(hvp, q, n, fixed, parameter_names(torch_fn, n))
    labels = [f"'{p}' (input {k})" for k, p in enumerate(parameter_names(torch_fn, n))]
    try:
        return check_gradients(reference, q, (*xs, *vs), device=device, dtype=torch_dtype, rtol=rtol, atol=atol,
                               seed=seed, constants=(*fixed, *range(n, n + len(vs))), kinks=kinks,
                               finite_differences=finite_differences)
    except GradientMismatch as exc:
        with preserved_torch_state(CPU), check_threads():
            found = _hvp_diagnosis(hvp, torch_fn, xs, vs, fixed, parameter_names(torch_fn, n))
        lines = [reworded_hvp(line, labels) for line in str(exc).split("\n")]
        report = exc.report
        if found:
            lines = [line for line in lines if not line.startswith("  diagnosis: ")] + [f"  diagnosis: {found}"]
        if isinstance(report, Report):
            diagnosis = found or (report.diagnosis and reworded_hvp(report.diagnosis, labels))
            report = dataclasses.replace(report, diagnosis=diagnosis)
        raise GradientMismatch("\n".join(lines), report=report, inputs=original) from None


def reworded_hvp(text: str, labels: Sequence[str]) -> str:
    """The shared messages say "the gradient of x": of q = <grad f, v>, i.e. the Hessian-vector product for x."""
    for label in labels:
        text = text.replace(f"the gradient of {label}", f"the Hessian-vector product for {label}")
    return text.replace("the value (forward)", "<grad f, v> (torch's, as the reference gives no value)")


def check_hessian(
    hessian: Callable[..., Any],
    torch_fn: Callable[..., torch.Tensor],
    inputs: Any,
    *,
    constants: Sequence[int] = (),
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype = "float64",
    rtol: float | None = None,
    atol: float | None = None,
    seed: int = 0,
) -> Report:
    """Check a hand-derived full Hessian (small problems: Newton's method, IRLS) against torch's, element by element.

    Args:
        hessian: ``hessian(*inputs)`` returns an array of shape ``x.shape + x.shape`` for the one non-constant
            input ``x``.
        torch_fn: ``torch_fn(*tensors)`` returns the scalar whose Hessian it is.
        inputs: a tuple of arrays; every input but one must be listed in ``constants``.
        constants: indices of data inputs.
        device: where torch runs.
        dtype: the dtype under test (inputs rounded to it; torch in float64 on them decides).
        rtol: overrides the relative tolerance (None: the dtype's default).
        atol: overrides the absolute tolerance.
        seed: accepted for the template (nothing is drawn).

    Returns:
        A :class:`Report`; ``gradients`` holds the Hessian's comparison under the input's name
        (``report.gradients["x"]``).

    Raises:
        GradientMismatch: the Hessians disagree (diagnosed: asymmetric, a regularizer's lambda*I, a Gauss-Newton
            matrix, a constant factor such as a missing 1/n, ...).
        InvalidInputError: more than one non-constant input, or malformed arguments.
        ReferenceContractError: the Hessian's shape is not ``x.shape + x.shape``.
    """
    __tracebackhide__ = True
    arguments.callable_argument("hessian", hessian, "the Hessian, hessian(*inputs) -> array of x.shape + x.shape")
    arguments.callable_argument("torch_fn", torch_fn, "the torch function, torch_fn(*tensors) -> scalar tensor")
    rtol, atol = arguments.tolerance("rtol", rtol), arguments.tolerance("atol", atol)
    arguments.integer("seed", seed)
    torch_dtype, torch_device = resolve_dtype(dtype), resolve_device(device)
    original = as_input_tuple(inputs)
    names = [f"'{p}' (input {k})" for k, p in enumerate(parameter_names(torch_fn, len(original)))]
    fixed = constant_indices(constants, len(original))
    variables = [k for k in range(len(original)) if k not in fixed]
    if len(variables) != 1:
        raise InvalidInputError(f"check_hessian takes one non-constant input, got {len(variables)} "
                                f"({', '.join(names[k] for k in variables)}): list the others in constants=, or use "
                                "check_hvp for several inputs jointly")
    xs = prepare_inputs(original, torch_dtype, names, fixed)
    (var,) = variables
    shape = xs[var].shape
    size = math.prod(shape)

    def reference_at(point: list[np.ndarray]) -> list[np.ndarray]:
        __tracebackhide__ = True
        h = np.asarray(hessian(*[np.array(x, copy=True) for x in point]), dtype=np.float64)
        if h.shape != shape + shape:
            hint = (f": flattened? reshape it to {shape + shape}" if h.size == size * size else "")
            raise ReferenceContractError(f"the Hessian has shape {h.shape}, x.shape + x.shape is {shape + shape}"
                                         + hint)
        return [h]

    def truth_at(point: list[np.ndarray], device: torch.device = CPU,
                 dtype: torch.dtype = torch.float64) -> list[np.ndarray]:
        columns = [torch_hvp(torch_fn, point, [np.eye(size)[j].reshape(shape)], fixed, device, dtype)[0]
                   for j in range(size)]
        return [np.stack(columns, axis=-1).reshape(shape + shape)]  # H symmetric: columns are rows

    label = f"the Hessian of {names[var]}"
    with preserved_torch_state(torch_device), check_threads():
        reference = reference_at(xs)
        truth = truth_at(xs)
        shown = None if torch_dtype == torch.float64 else truth_at(xs, torch_device, torch_dtype)
        report, _ = judge_products([label], reference, truth, shown, reference_at, truth_at, xs, variables,
                                        torch_device, torch_dtype, rtol=rtol, atol=atol,
                                        keys=[parameter_names(torch_fn, len(original))[var]])
        if report.verdict == "mismatch":
            report = dataclasses.replace(report, diagnosis=_hessian_diagnosis(
                reference[0].reshape(size, size), truth[0].reshape(size, size), label,
                [(names[k], x.shape) for k, x in enumerate(xs)]))
    return conclude(report, [label], original)


def _hessian_diagnosis(r: np.ndarray, t: np.ndarray, label: str,
                       shapes: Sequence[tuple[str, tuple[int, ...]]]) -> str | None:
    scale = float(np.max(np.abs(r), initial=0.0))
    text = None
    if scale > 0 and float(np.max(np.abs(r - r.T))) > FIT * scale:
        text = ("not symmetric, while a Hessian is (d2f/dxi dxj = d2f/dxj dxi): a term added on one side only, or "
                "a product in the wrong order?")
    text = text or regularizer_pattern(r.ravel(), t.ravel(), np.eye(len(r)).ravel(), shapes)
    if text is None:
        text = gauss_newton_pattern(lambda u: float(u @ r @ u), t)
    if text is None:
        text = diagnose([r], [t], [label], [np.abs(r - t) > FIT * float(np.max(np.abs(t), initial=0.0))], shapes)
        return reworded(text, [label]) if text else None
    return f"{label}: {text}"
