r"""``check_vjp``: a forward/backward pair written the way people write it, checked through ``check_gradients``.

A backward function computes a vector-Jacobian product: for an upstream gradient :math:`g` shaped
like the output, ``backward(g, ...)`` returns :math:`J^\top g` for each input. That is the gradient of
the scalar

.. math::  s(x) = \langle \mathrm{forward}(x), g \rangle = \sum_i \mathrm{forward}(x)_i \, g_i,

so the pair is checked as the reference ``(s, backward(g))`` against ``(torch_op(x) * g).sum()``,
with :math:`g` passed as a data input (``constants=``): every verdict, kink, tolerance and diagnosis
of :func:`~gradcheck_lab.gradients.check.check_gradients` applies unchanged.
"""

from __future__ import annotations

import copy
import inspect
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from gradcheck_lab.core.arguments import call_style, callable_argument
from gradcheck_lab.core.report import Report
from gradcheck_lab.errors import InvalidInputError, ReferenceContractError, TorchFunctionError
from gradcheck_lab.gradients.check import check_gradients
from gradcheck_lab.gradients.inputs import as_input_tuple, constant_indices, parameter_names

GRAD_OUTPUT = "grad_output"


def draw_grad_output(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """The upstream gradient the harness uses when none is given: standard normal, seeded, float64."""
    return np.random.default_rng([seed, 0x67726164]).standard_normal(shape)


def named(fn: Callable[..., Any], names: Sequence[str]) -> Callable[..., Any]:
    """Give ``fn`` a positional signature with ``names``: the names the harness's messages use."""
    params = [inspect.Parameter(n if n.isidentifier() else f"input{k}", inspect.Parameter.POSITIONAL_ONLY)
              for k, n in enumerate(names)]
    fn.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    return fn


def split_forward(result: Any) -> tuple[Any, Any, bool]:
    """``(out, cache, cached)``: a forward returning ``(out, cache)`` is the course style."""
    __tracebackhide__ = True
    if isinstance(result, tuple | list) and len(result) == 2 and not isinstance(result[0], tuple | list):
        return result[0], result[1], True
    return result, None, False


def as_grads(grads: Any, count: int, n_inputs: int) -> list[Any]:
    """A backward's result as a list: one array for a single input, a tuple otherwise."""
    __tracebackhide__ = True
    if isinstance(grads, np.ndarray | np.generic | float) and count == 1:
        return [grads]
    if isinstance(grads, dict):
        raise ReferenceContractError("backward returned a dict: return the input gradients as a tuple, in order")
    if not isinstance(grads, tuple | list):
        raise ReferenceContractError(f"backward must return the input gradient(s), got {type(grads).__name__}")
    if len(grads) not in (count, n_inputs):
        raise ReferenceContractError(
            f"backward returned {len(grads)} gradient(s): {count} are needed (one per input"
            + (f", or {n_inputs} with None for the data inputs)" if count != n_inputs else ")"))
    return list(grads)


def inner(out: Any, grad_output: np.ndarray) -> np.ndarray:
    r""":math:`\langle out, g \rangle` in float64, kept in ``out``'s dtype when that is below float64.

    A forward computing in float32 then shows as a reference below float64 (the context diagnosis).
    """
    __tracebackhide__ = True
    arr = np.asarray(out)
    if arr.shape != grad_output.shape:
        raise ReferenceContractError(
            f"the forward's output has shape {arr.shape}, the upstream gradient {grad_output.shape}")
    value = np.sum(arr.astype(np.float64) * grad_output)
    return value.astype(arr.dtype) if arr.dtype.kind == "f" and arr.dtype.itemsize < 8 else np.asarray(value)


def torch_inner(torch_op: Callable[..., Any], outputs: int = 1) -> Callable[..., torch.Tensor]:
    """``(torch_op(*xs) * g).sum()`` for ``(*xs, g)``, with the output's shape checked; for several outputs
    ``sum_j (out_j * g_j).sum()`` for ``(*xs, *gs)``."""

    def torch_fn(*args: torch.Tensor) -> torch.Tensor:
        __tracebackhide__ = True
        if outputs > 1:
            xs, gs = args[:len(args) - outputs], args[len(args) - outputs:]
            outs = torch_op(*xs)
            if not isinstance(outs, tuple | list) or len(outs) != outputs:
                raise TorchFunctionError(f"the torch function must return {outputs} tensors")
            for j, (o, g) in enumerate(zip(outs, gs, strict=True)):
                if tuple(o.shape) != tuple(g.shape):
                    raise TorchFunctionError(f"the torch function's output {j} has shape {tuple(o.shape)}, the "
                                             f"forward's {tuple(g.shape)}")
            return sum(((o * g).sum() for o, g in zip(outs, gs, strict=True)), torch.zeros((), dtype=gs[0].dtype,
                                                                                             device=gs[0].device))
        *rest, g = args
        out = torch_op(*rest)
        if not isinstance(out, torch.Tensor):
            raise TorchFunctionError(f"the torch op must return a tensor, got {type(out).__name__}")
        if tuple(out.shape) != tuple(g.shape):
            raise TorchFunctionError(
                f"the torch op's output has shape {tuple(out.shape)}, the forward's {tuple(g.shape)}")
        return (out * g).sum()

    return torch_fn


def output_shape(forward: Callable[..., Any], inputs: Sequence[Any]) -> tuple[int, ...]:
    """The forward's output shape, from one call on copies of the inputs."""
    copies = [x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else copy.deepcopy(x) if is_static(x)
              else np.array(x, copy=True) for x in inputs]
    out, _, _ = split_forward(forward(*copies))
    return tuple(np.shape(out))


def checked_inputs(inputs: Any) -> tuple[Any, ...]:
    """``inputs`` as a tuple, refusing what is surely a mistake: a bare nested list of numbers (read as several
    inputs, one per row) and an empty tuple."""
    __tracebackhide__ = True
    if isinstance(inputs, list) and inputs and all(
            isinstance(x, numbers.Number) or (isinstance(x, list) and all(isinstance(v, numbers.Number) for v in x))
            for x in inputs):
        raise InvalidInputError(f"inputs is a bare list of numbers ({inputs!r:.60}), which reads as one input per "
                                "element: pass arrays, e.g. inputs=(np.array([[...]]),) for one input")
    return as_input_tuple(inputs)


@call_style(positional=4, legacy_positional=("grad_output", "constants", "device", "dtype", "rtol", "atol", "kinks"),
            renamed={"torch_op": "torch_fn"})
def check_vjp(
    forward: Callable[..., Any],
    backward: Callable[..., Any],
    torch_fn: Callable[..., torch.Tensor],
    inputs: Any,
    *,
    grad_output: np.ndarray | None = None,
    constants: Sequence[int] = (),
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype = "float64",
    rtol: float | None = None,
    atol: float | None = None,
    seed: int = 0,
    kinks: str = "strict",
    **check_kwargs: Any,
) -> Report:
    """Check a hand-written ``forward``/``backward`` pair against ``torch_fn`` and autograd.

    Two styles are recognized from what ``forward`` returns:

    - ``forward(*inputs) -> out``, then ``backward(grad_output, *inputs) -> grads``;
    - ``forward(*inputs) -> (out, cache)``, then ``backward(grad_output, cache) -> grads`` (course style).

    Multi-output forwards (an LSTM step returning ``(h, c)``): when ``torch_fn`` returns a tuple of k tensors,
    ``forward`` returns k arrays (or ``((o1, ..., ok), cache)``) and ``backward`` takes one upstream gradient per
    output: ``backward(g1, ..., gk, *inputs)`` or ``backward(g1, ..., gk, cache)``; ``grad_output=`` is then a
    tuple of k arrays.

    ``grads`` holds one gradient per non-constant input (a bare array for one), or one per input with
    anything in the data inputs' slots. ``out`` may have any shape; ``torch_fn(*tensors)`` returns a
    tensor of that shape. The report's inputs are the given ones followed by ``grad_output`` (a data input).

    Args:
        forward: the forward function (either style above).
        backward: its hand-derived backward.
        torch_fn: the torch function ``forward`` implements (``torch_op=`` is its old name, kept for a release).
        inputs: one array or a tuple of arrays; settings (a dict, an int, a string, None) pass through unchanged.
        grad_output: the upstream gradient; None: standard normal, drawn from ``seed``.
        constants: indices of data inputs (labels, masks): no gradient needed.
        device, dtype, rtol, atol, seed, kinks, **check_kwargs: as in
            :func:`~gradcheck_lab.gradients.check.check_gradients`.

    Returns:
        The :class:`~gradcheck_lab.core.report.Report` of the check.

    Raises:
        GradientMismatch: the backward disagrees with autograd.
        ReferenceContractError: the backward returned gradients of the wrong number or shape (the message says
            which, and what the shapes suggest).
        InvalidInputError: a bad argument, before any work.
    """
    __tracebackhide__ = True
    callable_argument("forward", forward, "the forward function: forward(*inputs) -> out")
    callable_argument("backward", backward, "the backward function: backward(grad_output, ...) -> grads")
    callable_argument("torch_fn", torch_fn, "the torch function the forward implements")
    from gradcheck_lab.gradients import complex as complex_inputs  # complex.py builds on this module

    if (complex_inputs.any_complex(inputs) or complex_inputs.is_complex(grad_output)
            or (grad_output is None and complex_inputs.complex_output(forward, inputs, constants))):
        return complex_inputs.check_complex_vjp(
            forward, backward, torch_fn, inputs, grad_output=grad_output, constants=constants, device=device,
            dtype=dtype, rtol=rtol, atol=atol, kinks=kinks, seed=seed, **check_kwargs)
    xs, fixed, static = split_static(checked_inputs(inputs), constants)
    merged = Static(static, len(xs) + len(static)).merge(xs)
    outputs = count_outputs(torch_fn, merged)
    grad_outputs = (draw_grad_outputs(output_shapes(forward, merged, outputs), seed) if grad_output is None
                    else given_grad_outputs(grad_output, outputs))
    reference, torch_side = vjp_pair(forward, backward, torch_fn, len(xs), fixed, static, outputs)
    return check_gradients(reference, torch_side, (*xs, *grad_outputs), device=device, dtype=dtype,
                           rtol=rtol, atol=atol, constants=(*fixed, *range(len(xs), len(xs) + outputs)), kinks=kinks,
                           seed=seed, **check_kwargs)


def shape_hint(name: str, grad: tuple[int, ...], shape: tuple[int, ...]) -> None:
    """Raise when a gradient's shape differs from its input's, saying what the shapes suggest."""
    __tracebackhide__ = True
    if grad == shape:
        return
    hint = ""
    if len(grad) == len(shape) and sorted(grad) == sorted(shape):
        hint = ": transposed (the axes in the wrong order)?"
    elif len(grad) > len(shape) and grad[len(grad) - len(shape):] == shape:
        hint = f": not summed over the broadcast leading axes {tuple(range(len(grad) - len(shape)))}?"
    raise ReferenceContractError(f"backward's gradient of {name!r} has shape {grad}, the input {shape}{hint}")


def is_static(x: Any) -> bool:
    """Settings rather than data: a dict (``conv_param``), a string, None, a bool, an int, a tuple of ints."""
    if isinstance(x, dict | str | bool | int) or x is None:
        return True
    return isinstance(x, tuple) and all(isinstance(v, int) for v in x)


def split_static(xs: tuple[Any, ...], constants: Sequence[int] | int) -> tuple[tuple[Any, ...], frozenset[int],
                                                                                 dict[int, Any]]:
    """The array inputs, the data inputs' indices among them, and the settings by their position."""
    static = {k: x for k, x in enumerate(xs) if is_static(x)}
    items = [constants] if isinstance(constants, int | np.integer) else list(constants)
    if not static:
        return xs, constant_indices(items, len(xs)), {}
    keep = [k for k in range(len(xs)) if k not in static]
    for k in items:
        if not isinstance(k, int | np.integer) or not -len(xs) <= k < len(xs):
            raise InvalidInputError(f"constants= holds {k!r}, but there are {len(xs)} input(s)")
    positions = [int(k) % len(xs) for k in items]
    arrays = tuple(xs[k] for k in keep)
    if not arrays:
        raise InvalidInputError("every input is a setting (dict, int, str, None): at least one array is needed")
    return arrays, constant_indices([keep.index(k) for k in positions if k not in static], len(arrays)), static


class Static:
    """Puts the settings back between the arrays, a fresh copy each call (a forward may write into them)."""

    def __init__(self, static: dict[int, Any], total: int) -> None:
        self.static, self.total = static, total

    def merge(self, arrays: Sequence[Any]) -> list[Any]:
        it = iter(arrays)
        return [copy.deepcopy(self.static[k]) if k in self.static else next(it) for k in range(self.total)]


def count_outputs(torch_fn: Callable[..., Any], inputs: Sequence[Any]) -> int:
    """How many outputs ``torch_fn`` returns (a tuple of tensors: several), from one float64 run without gradients.

    If that run fails, 1: the check itself then runs it and reports what went wrong.
    """
    tensors = [torch.as_tensor(np.asarray(x, dtype=np.float64)) if isinstance(x, np.ndarray) and x.dtype.kind == "f"
               else torch.as_tensor(np.asarray(x)) if isinstance(x, np.ndarray) else x for x in inputs]
    try:
        with torch.no_grad():
            out = torch_fn(*tensors)
    except Exception:
        return 1
    return len(out) if isinstance(out, tuple | list) else 1


def split_outputs(result: Any, count: int) -> tuple[list[Any], Any, bool]:
    """``(outputs, cache, cached)`` of a forward with ``count`` outputs: ``(o1, ..., ok)`` or
    ``((o1, ..., ok), cache)``."""
    __tracebackhide__ = True
    if count == 1:
        out, cache, cached = split_forward(result)
        return [out], cache, cached
    if isinstance(result, tuple | list):
        if len(result) == count and not any(isinstance(r, tuple | list) for r in result):
            return list(result), None, False
        if len(result) == 2 and isinstance(result[0], tuple | list) and len(result[0]) == count:
            return list(result[0]), result[1], True
    raise ReferenceContractError(f"torch_fn returns {count} outputs, so forward must return {count} arrays, or "
                                 f"({count} arrays, cache) in the course style; it returned {type(result).__name__}"
                                 + (f" of {len(result)}" if isinstance(result, tuple | list) else ""))


def output_shapes(forward: Callable[..., Any], inputs: Sequence[Any], count: int) -> list[tuple[int, ...]]:
    """The shapes of the forward's ``count`` outputs, from one call on copies of the inputs."""
    __tracebackhide__ = True
    copies = [x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else copy.deepcopy(x) if is_static(x)
              else np.array(x, copy=True) for x in inputs]
    outs, _, _ = split_outputs(forward(*copies), count)
    return [tuple(np.shape(o)) for o in outs]


def draw_grad_outputs(shapes: Sequence[tuple[int, ...]], seed: int = 0) -> list[np.ndarray]:
    """One upstream gradient per output: :func:`draw_grad_output` for one, independent draws for several."""
    if len(shapes) == 1:
        return [draw_grad_output(shapes[0], seed)]
    return [draw_grad_output(shape, seed * 1_000 + 7 * j + 1) for j, shape in enumerate(shapes)]


def given_grad_outputs(grad_output: Any, count: int) -> list[np.ndarray]:
    """``grad_output=`` as a list of ``count`` float64 arrays (a tuple, one per output, for several outputs)."""
    __tracebackhide__ = True
    if count == 1:
        return [np.asarray(grad_output)]
    if not isinstance(grad_output, tuple | list) or len(grad_output) != count:
        raise InvalidInputError(f"torch_fn returns {count} outputs: grad_output= must be a tuple of {count} arrays, "
                                "one per output")
    return [np.asarray(g) for g in grad_output]


def vjp_pair(forward: Callable[..., Any], backward: Callable[..., Any], torch_op: Callable[..., Any],
             n_inputs: int, fixed: frozenset[int], static: dict[int, Any] | None = None, outputs: int = 1,
             ) -> tuple[Callable[..., Any], Callable[..., torch.Tensor]]:
    r"""The scalar reference and torch function :func:`check_vjp` checks, over ``(*inputs, *grad_outputs)``.

    ``static`` holds settings (``conv_param``, a stride) by their position among all the arguments;
    both sides get them back in place, the arrays around them. With several ``outputs`` the scalar is
    :math:`\sum_j \langle \mathrm{out}_j, g_j \rangle` and ``backward`` takes one ``g_j`` per output.
    """
    count = n_inputs - len(fixed)
    static = static or {}
    place = Static(static, n_inputs + len(static))

    def reference(*args: np.ndarray) -> tuple[np.ndarray, list[Any]]:
        __tracebackhide__ = True
        x, gs = list(args[:len(args) - outputs]), list(args[len(args) - outputs:])
        full = place.merge(x)
        outs, cache, cached = split_outputs(forward(*full), outputs)
        value = sum(inner(o, g) for o, g in zip(outs, gs, strict=True))
        grads = as_grads(backward(*gs, cache) if cached else backward(*gs, *full), count, len(x))
        variables = range(len(x)) if len(grads) == len(x) else [k for k in range(len(x)) if k not in fixed]
        for k, grad in zip(variables, grads, strict=True):
            if k not in fixed:
                shape_hint(names[k], np.shape(grad), np.shape(x[k]))
        return np.asarray(value), [*grads, *[None] * outputs] if len(grads) == len(x) and len(x) != count else grads

    names = [n for k, n in enumerate(parameter_names(forward, place.total)) if k not in static]
    named(reference, [*names, *([GRAD_OUTPUT] if outputs == 1 else [f"{GRAD_OUTPUT}{j}" for j in range(outputs)])])
    op = torch_op if not static else (lambda *ts: torch_op(*place.merge(ts)))
    return reference, torch_inner(op, outputs)
