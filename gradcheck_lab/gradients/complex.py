r"""Complex inputs: each complex array checked as its real and imaginary parts, under torch's convention.

For a real loss :math:`L` of :math:`z = x + iy`, torch puts in ``z.grad``

.. math::  \frac{\partial L}{\partial x} + i\,\frac{\partial L}{\partial y} = 2\,\frac{\partial L}{\partial \bar z},

twice the conjugate Wirtinger derivative. Viewing :math:`z` as the real pair :math:`(x, y)` (a trailing axis of
two, ``torch.view_as_real``), that gradient is the pair :math:`(\partial L/\partial x, \partial L/\partial y)`:
the ordinary real gradient of :math:`L` over the pair. So a complex check is a real check of the pairs: the
reference is wrapped to take pairs and return its gradient as pairs, ``torch_fn`` to rebuild complex tensors
from them (``torch.view_as_complex``, which autograd differentiates with exactly this convention), and
:func:`~gradcheck_lab.gradients.check.check_gradients` runs unchanged: rounding to the dtype (a complex64 number
is a pair of float32), the float64 decision, the floor, kinks, the oracle and the diagnosis.

A backward with upstream gradient :math:`g` (``check_vjp``) computes the gradient of the real scalar
:math:`\mathrm{Re}\sum_i \bar g_i\,\mathrm{out}_i`: for :math:`\mathrm{out} = Wz` that is :math:`W^H g`, the
conjugate transpose. The classic mistakes get their own diagnosis: the conjugate of torch's gradient, the
Wirtinger derivatives :math:`\partial L/\partial z` or :math:`\partial L/\partial\bar z` (half of torch's, conjugated
or not), and :math:`W^\top g` for :math:`W^H g`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from gradcheck_lab.core.dtypes import resolve_dtype, round_to_dtype
from gradcheck_lab.core.report import Report
from gradcheck_lab.errors import (
    GradientMismatch,
    ReferenceContractError,
    TorchFunctionError,
    UnknownDtypeError,
)
from gradcheck_lab.gradients.check import check_gradients, run_reference, run_torch
from gradcheck_lab.gradients.inputs import ReferenceFn, TorchFn, as_input_tuple, constant_indices, parameter_names
from gradcheck_lab.gradients.products import fits
from gradcheck_lab.gradients.vjp import (
    GRAD_OUTPUT,
    Static,
    as_grads,
    draw_grad_output,
    named,
    shape_hint,
    split_forward,
    split_static,
)

_PRECISION = {"complex128": "float64", "complex64": "float32", "cdouble": "float64", "cfloat": "float32"}


def is_complex(x: Any) -> bool:
    """Whether ``x`` is a complex array or tensor (a Python complex number too)."""
    if isinstance(x, torch.Tensor):
        return bool(x.is_complex())
    return isinstance(x, complex | np.ndarray | np.generic) and np.iscomplexobj(x)


def any_complex(inputs: Any) -> bool:
    """Whether any of ``inputs`` (one array or a sequence of them) is complex."""
    if isinstance(inputs, list | tuple):
        return any(is_complex(x) for x in inputs)
    return is_complex(inputs)


def complex_output(forward: Callable[..., Any], inputs: Any, constants: Sequence[int] | int = ()) -> bool:
    """Whether ``forward`` returns a complex output on copies of ``inputs`` (False where it fails: the real
    check then reports the failure)."""
    try:
        xs, _, static = split_static(as_input_tuple(inputs), constants)
        copies = [np.array(x, copy=True) if isinstance(x, np.ndarray) else x for x in xs]
        out = split_forward(forward(*Static(static, len(xs) + len(static)).merge(copies)))[0]
    except Exception:
        return False
    return is_complex(out) or (isinstance(out, np.ndarray) and np.iscomplexobj(out))


def real_precision(dtype: str | torch.dtype) -> torch.dtype:
    """The real dtype a complex check runs in: ``"float64"`` (or ``"complex128"``) checks complex128 inputs,
    ``"float32"`` (or ``"complex64"``) complex64 ones.

    Raises:
        InvalidInputError: a half-precision dtype (torch's complex32 supports too few operations to check).
    """
    __tracebackhide__ = True
    if isinstance(dtype, torch.dtype) and dtype.is_complex:
        dtype = str(dtype).removeprefix("torch.")
    if isinstance(dtype, str) and dtype.lower().removeprefix("torch.") in _PRECISION:
        dtype = _PRECISION[dtype.lower().removeprefix("torch.")]
    real = resolve_dtype(dtype)
    if real not in (torch.float64, torch.float32):
        raise UnknownDtypeError(f"complex inputs are checked in dtype='float64' (complex128) or 'float32' "
                                f"(complex64), got {dtype!r}")
    return real


def as_pairs(x: Any) -> np.ndarray:
    """A complex array as its real pairs: shape ``x.shape + (2,)``, the last axis (real, imaginary).

    complex64 gives float32 pairs (a reference computing below float64 stays visible as such).
    """
    arr = x.detach().cpu().resolve_conj().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    real_dtype = np.float32 if arr.dtype == np.complex64 else np.float64
    return np.stack([arr.real, arr.imag], axis=-1).astype(real_dtype)


def from_pairs(a: np.ndarray) -> np.ndarray:
    """Real pairs (last axis of two) back to a complex128 array."""
    return np.asarray(a[..., 0] + 1j * a[..., 1], dtype=np.complex128)


def _real_value(value: Any, what: str) -> Any:
    __tracebackhide__ = True
    if not is_complex(value):
        return value
    arr = np.asarray(value)
    if np.any(arr.imag != 0):
        raise ReferenceContractError(f"{what} is complex ({arr!r}): a gradient needs a real loss of the complex "
                                     "inputs (take its real part, its abs, or |.|**2)")
    return arr.real


def complex_reference(reference_fn: ReferenceFn, complex_at: frozenset[int], names: Sequence[str],
                      fixed: frozenset[int], shapes: Sequence[tuple[int, ...]]) -> ReferenceFn:
    """``reference_fn`` over real pairs: its complex inputs rebuilt, its complex gradients returned as pairs."""
    variables = [k for k in range(len(names)) if k not in fixed]

    def reference(*args: np.ndarray) -> tuple[Any, Sequence[Any]]:
        __tracebackhide__ = True
        value, grads = _split_result(reference_fn(*[from_pairs(a) if k in complex_at else a
                                                    for k, a in enumerate(args)]))
        if isinstance(grads, np.ndarray | np.generic) and len(variables) == 1:
            grads = (grads,)
        if not isinstance(grads, tuple | list):
            return value, grads  # check_gradients names the contract
        positions = range(len(args)) if len(grads) == len(args) else variables if len(grads) == len(variables) else ()
        out = list(grads)
        for slot, k in enumerate(positions):
            g = grads[slot]
            if k in fixed or g is None:
                continue
            if k in complex_at:
                if np.shape(g) != shapes[k]:
                    raise ReferenceContractError(f"the reference's gradient of {names[k]!r} has shape "
                                                 f"{np.shape(g)}, the complex input has {shapes[k]}")
                out[slot] = as_pairs(g)
            else:
                out[slot] = _real_value(g, f"the reference's gradient of the real input {names[k]!r}")
        return _real_value(value, "the reference's value"), out

    return named(reference, names)


def _split_result(result: Any) -> tuple[Any, Any]:
    __tracebackhide__ = True
    if not isinstance(result, tuple | list) or len(result) != 2:
        raise ReferenceContractError(f"the reference must return (value, grads), got {type(result).__name__}")
    return result[0], result[1]


def complex_torch(torch_fn: TorchFn, complex_at: frozenset[int]) -> TorchFn:
    """``torch_fn`` over real pairs: ``torch.view_as_complex`` rebuilds each complex input (differentiably)."""

    def wrapped(*tensors: torch.Tensor) -> torch.Tensor:
        __tracebackhide__ = True
        out = torch_fn(*[torch.view_as_complex(t) if k in complex_at else t for k, t in enumerate(tensors)])
        if isinstance(out, torch.Tensor) and out.is_complex():
            raise TorchFunctionError("the torch function returns a complex tensor: a gradient needs a real loss of "
                                     "the complex inputs (take .real, .abs() or .abs()**2)")
        return out

    return wrapped


CONVENTION = "torch's z.grad for a real loss L of z = x + iy is dL/dx + i dL/dy (twice dL/d conj(z))"


def complex_pattern(r: np.ndarray, t: np.ndarray, transposed_torch: np.ndarray | None = None) -> str | None:
    """How a complex gradient ``r`` is wrong against torch's ``t``: the conjugation mistakes, or None.

    ``transposed_torch`` is torch's gradient for the conjugated upstream gradient, conjugated: what a backward
    computing :math:`W^\\top g` instead of :math:`W^H g` returns.
    """
    if not np.any(t.imag) and not np.any(r.imag):
        return None  # real everywhere: no conjugation to get wrong
    if fits(r, np.conj(t)) and not fits(r, t):
        return f"the complex conjugate of torch's gradient (dL/dx - i dL/dy): {CONVENTION}; conjugate it"
    if fits(r, np.conj(t) / 2):
        return f"half the conjugate of torch's: the Wirtinger derivative dL/dz, while {CONVENTION}"
    if fits(r, t / 2):
        return f"half of torch's: the Wirtinger derivative dL/d conj(z), while {CONVENTION}"
    if transposed_torch is not None and fits(r, transposed_torch) and not fits(r, t):
        return ("W^T g (the transpose) where torch computes W^H g (the conjugate transpose): a backward with "
                "upstream gradient g differentiates Re(sum(conj(g) * out)); conjugate the Jacobian")
    return None


def _diagnose(reference: ReferenceFn, torch_fn: TorchFn, rounded: list[np.ndarray], names: Sequence[str],
              fixed: frozenset[int], complex_at: frozenset[int], grad_output_at: int | None) -> str | None:
    """Run both sides in float64 at the checked point and name a conjugation mistake, if one fits."""
    try:
        ref = run_reference(reference, rounded, names, fixed)
        device = torch.device("cpu")
        truth = run_torch(torch_fn, rounded, names, device, torch.float64, fixed)
        flipped = None
        if grad_output_at is not None and grad_output_at in complex_at:
            conj_g = [np.array(x, copy=True) for x in rounded]
            conj_g[grad_output_at][..., 1] *= -1
            flipped = run_torch(torch_fn, conj_g, names, device, torch.float64, fixed)
    except Exception:
        return None
    variables = [k for k in range(len(rounded)) if k not in fixed]
    found = []
    for slot, k in enumerate(variables):
        if k not in complex_at:
            continue
        t = from_pairs(truth.grads[slot])
        text = complex_pattern(from_pairs(ref.grads[slot]), t,
                               None if flipped is None else np.conj(from_pairs(flipped.grads[slot])))
        if text:
            found.append(f"the gradient of {names[k]!r}: {text}")
    return "; ".join(found) or None


def check_complex_gradients(reference_fn: ReferenceFn, torch_fn: TorchFn, inputs: Any, *,
                            dtype: str | torch.dtype = "float64", constants: Sequence[int] = (),
                            grad_output_at: int | None = None, **check_kwargs: Any) -> Report:
    """:func:`~gradcheck_lab.gradients.check.check_gradients` for inputs of which some are complex.

    Args:
        reference_fn: takes the inputs (complex ones as complex128 arrays) and returns ``(value, grads)``: a
            real value, and for each complex input the gradient under torch's convention, dL/dx + i dL/dy.
        torch_fn: takes tensors (complex ones complex128 or complex64) and returns a real scalar.
        inputs: the inputs; complex ones are checked as real pairs (a complex64 number is a pair of float32).
        dtype: the precision: ``"float64"`` checks complex128, ``"float32"`` complex64.
        constants: indices of data inputs (complex data included).
        grad_output_at: the index of a backward's upstream gradient among the inputs (check_vjp), for the
            W^T g diagnosis.
        **check_kwargs: every other keyword of ``check_gradients``.

    Returns:
        The :class:`Report` of the real check (each complex input's gradient compared as its real pairs).

    Raises:
        GradientMismatch: the gradients disagree; a conjugation mistake is named in the diagnosis.
        UnknownDtypeError: a dtype other than float64/float32 (complex128/complex64).
    """
    __tracebackhide__ = True
    original = as_input_tuple(inputs)
    real = real_precision(dtype)
    complex_at = frozenset(k for k, x in enumerate(original) if is_complex(x))
    fixed = constant_indices(constants, len(original))
    names = parameter_names(reference_fn, len(original))
    shapes = [tuple(np.shape(x)) for x in original]
    pairs = tuple(as_pairs(x) if k in complex_at else x for k, x in enumerate(original))
    reference = complex_reference(reference_fn, complex_at, names, fixed, shapes)
    wrapped = complex_torch(torch_fn, complex_at)
    try:
        return check_gradients(reference, wrapped, pairs, dtype=real, constants=tuple(fixed), **check_kwargs)
    except GradientMismatch as exc:
        rounded = [np.array(x, copy=True) if np.asarray(x).dtype.kind in "iub" else round_to_dtype(x, real)
                   for x in pairs]
        found = _diagnose(reference, wrapped, rounded, names, fixed, complex_at, grad_output_at)
        report, lines = exc.report, str(exc).split("\n")
        if found:  # the conjugation explains the pattern the pairs show (half their elements wrong)
            lines = [line for line in lines if not line.startswith("  diagnosis: ")] + [f"  diagnosis: {found}"]
            if isinstance(report, Report):
                report = dataclasses.replace(report, diagnosis=found)
        lines.append("  complex inputs are compared as (real, imaginary) pairs: an index's last entry is 0 for the "
                     "real part, 1 for the imaginary part")
        raise GradientMismatch("\n".join(lines), report=report, inputs=original) from None


def check_complex_vjp(forward: Callable[..., Any], backward: Callable[..., Any], torch_fn: Callable[..., Any],
                      inputs: Any, *, grad_output: Any = None, constants: Sequence[int] = (), seed: int = 0,
                      **check_kwargs: Any) -> Report:
    r"""``check_vjp`` where an input, the output or the upstream gradient is complex.

    The pair is checked as the real scalar :math:`\mathrm{Re}\sum_i \bar g_i\,\mathrm{out}_i` with
    gradients ``backward(g, ...)``, against ``torch_fn``'s output contracted the same way; ``g`` (drawn complex
    when the output is complex and none is given) is a data input, the last one.

    Returns:
        The :class:`Report` of :func:`check_complex_gradients`.

    Raises:
        GradientMismatch: the backward disagrees with autograd (W^T g for W^H g is named).
    """
    __tracebackhide__ = True
    xs, fixed, static = split_static(as_input_tuple(inputs), constants)
    place = Static(static, len(xs) + len(static))
    if grad_output is None:
        copies = [np.array(x, copy=True) if isinstance(x, np.ndarray) else x for x in xs]
        out = np.asarray(split_forward(forward(*place.merge(copies)))[0])
        grad_output = draw_grad_output(out.shape, seed)
        if np.iscomplexobj(out):
            grad_output = grad_output + 1j * draw_grad_output(out.shape, seed + 1)
    names = [n for k, n in enumerate(parameter_names(forward, place.total)) if k not in static]
    count = len(xs) - len(fixed)

    def reference(*args: Any) -> tuple[Any, list[Any]]:
        __tracebackhide__ = True
        *x, g = args
        full = place.merge(x)
        out, cache, cached = split_forward(forward(*full))
        out = np.asarray(out)
        if out.shape != np.shape(g):
            raise ReferenceContractError(f"the forward's output has shape {out.shape}, the upstream gradient "
                                         f"{np.shape(g)}")
        value = np.sum(np.real(np.conj(g) * out))
        grads = as_grads(backward(g, cache) if cached else backward(g, *full), count, len(x))
        variables = range(len(x)) if len(grads) == len(x) else [k for k in range(len(x)) if k not in fixed]
        for k, grad in zip(variables, grads, strict=True):
            if k not in fixed:
                shape_hint(names[k], np.shape(grad), np.shape(x[k]))
        return value, [*grads, None] if len(grads) == len(x) and len(x) != count else grads

    def torch_inner(*tensors: torch.Tensor) -> torch.Tensor:
        __tracebackhide__ = True
        *ts, g = tensors
        out = torch_fn(*place.merge(ts)) if static else torch_fn(*ts)
        if not isinstance(out, torch.Tensor):
            raise TorchFunctionError(f"the torch op must return a tensor, got {type(out).__name__}")
        if tuple(out.shape) != tuple(g.shape):
            raise TorchFunctionError(f"the torch op's output has shape {tuple(out.shape)}, the forward's "
                                     f"{tuple(g.shape)}")
        return (torch.conj(g) * out).real.sum() if (out.is_complex() or g.is_complex()) else (g * out).sum()

    named(reference, [*names, GRAD_OUTPUT])
    return check_complex_gradients(reference, torch_inner, (*xs, np.asarray(grad_output)),
                                   constants=(*fixed, len(xs)), grad_output_at=len(xs), seed=seed, **check_kwargs)
