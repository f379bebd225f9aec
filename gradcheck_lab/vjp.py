r"""``check_vjp``: a forward/backward pair written the way people write it, checked through ``check_gradients``.

A backward function computes a vector-Jacobian product: for an upstream gradient :math:`g` shaped
like the output, ``backward(g, ...)`` returns :math:`J^\top g` for each input. That is the gradient of
the scalar

.. math::  s(x) = \langle \mathrm{forward}(x), g \rangle = \sum_i \mathrm{forward}(x)_i \, g_i,

so the pair is checked as the reference ``(s, backward(g))`` against ``(torch_op(x) * g).sum()``,
with :math:`g` passed as a data input (``constants=``): every verdict, kink, tolerance and diagnosis
of :func:`~gradcheck_lab.check.check_gradients` applies unchanged.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from gradcheck_lab.check import as_input_tuple, check_gradients, constant_indices, input_names
from gradcheck_lab.errors import ReferenceContractError, TorchFunctionError
from gradcheck_lab.report import Report

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


def plain_names(fn: Callable[..., Any], count: int) -> list[str]:
    """The positional parameter names of ``fn`` when it has ``count`` of them, else ``input0``, ``input1``, ..."""
    names = input_names(fn, count)
    return [n.split("'")[1] if n.startswith("'") else f"input{k}" for k, n in enumerate(names)]


def split_forward(result: Any) -> tuple[Any, Any, bool]:
    """``(out, cache, cached)``: a forward returning ``(out, cache)`` is the course style."""
    if isinstance(result, tuple | list) and len(result) == 2 and not isinstance(result[0], tuple | list):
        return result[0], result[1], True
    return result, None, False


def as_grads(grads: Any, count: int, n_inputs: int) -> list[Any]:
    """A backward's result as a list: one array for a single input, a tuple otherwise."""
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
    arr = np.asarray(out)
    if arr.shape != grad_output.shape:
        raise ReferenceContractError(
            f"the forward's output has shape {arr.shape}, the upstream gradient {grad_output.shape}")
    value = np.sum(arr.astype(np.float64) * grad_output)
    return value.astype(arr.dtype) if arr.dtype.kind == "f" and arr.dtype.itemsize < 8 else np.asarray(value)


def torch_inner(torch_op: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """``(torch_op(*xs) * g).sum()`` for ``(*xs, g)``, with the output's shape checked."""

    def torch_fn(*args: torch.Tensor) -> torch.Tensor:
        *xs, g = args
        out = torch_op(*xs)
        if not isinstance(out, torch.Tensor):
            raise TorchFunctionError(f"the torch op must return a tensor, got {type(out).__name__}")
        if tuple(out.shape) != tuple(g.shape):
            raise TorchFunctionError(
                f"the torch op's output has shape {tuple(out.shape)}, the forward's {tuple(g.shape)}")
        return (out * g).sum()

    return torch_fn


def output_shape(forward: Callable[..., Any], inputs: Sequence[Any]) -> tuple[int, ...]:
    """The forward's output shape, from one call on copies of the inputs."""
    copies = [np.array(x, copy=True) if not isinstance(x, torch.Tensor) else x.detach().cpu().numpy()
              for x in inputs]
    out, _, _ = split_forward(forward(*copies))
    return tuple(np.shape(out))


def check_vjp(
    forward: Callable[..., Any],
    backward: Callable[..., Any],
    torch_op: Callable[..., torch.Tensor],
    inputs: Any,
    grad_output: np.ndarray | None = None,
    constants: Sequence[int] = (),
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype = "float64",
    rtol: float | None = None,
    atol: float | None = None,
    kinks: str = "strict",
    *,
    seed: int = 0,
    **check_kwargs: Any,
) -> Report:
    """Check a hand-written ``forward``/``backward`` pair against ``torch_op`` and autograd.

    Two styles are recognized from what ``forward`` returns:

    - ``forward(*inputs) -> out``, then ``backward(grad_output, *inputs) -> grads``;
    - ``forward(*inputs) -> (out, cache)``, then ``backward(grad_output, cache) -> grads`` (course style).

    ``grads`` holds one gradient per non-constant input (a bare array for one), or one per input with
    anything in the data inputs' slots. ``out`` may have any shape; ``torch_op(*tensors)`` returns a
    tensor of that shape. ``grad_output`` is drawn (standard normal, from ``seed``) when None. The
    remaining arguments are :func:`~gradcheck_lab.check.check_gradients`'s; the report's inputs are the
    given ones followed by ``grad_output`` (a data input).
    """
    __tracebackhide__ = True
    xs = as_input_tuple(inputs)
    fixed = constant_indices(constants, len(xs))
    if grad_output is None:
        grad_output = draw_grad_output(output_shape(forward, xs), seed)
    reference, torch_fn = vjp_pair(forward, backward, torch_op, len(xs), fixed)
    return check_gradients(reference, torch_fn, (*xs, np.asarray(grad_output)), device=device, dtype=dtype,
                           rtol=rtol, atol=atol, constants=(*fixed, len(xs)), kinks=kinks, seed=seed,
                           **check_kwargs)


def vjp_pair(forward: Callable[..., Any], backward: Callable[..., Any], torch_op: Callable[..., torch.Tensor],
             n_inputs: int, fixed: frozenset[int]) -> tuple[Callable[..., Any], Callable[..., torch.Tensor]]:
    """The scalar reference and torch function :func:`check_vjp` checks, over ``(*inputs, grad_output)``."""
    count = n_inputs - len(fixed)

    def reference(*args: np.ndarray) -> tuple[np.ndarray, list[Any]]:
        *x, g = args
        out, cache, cached = split_forward(forward(*x))
        value = inner(out, g)
        grads = as_grads(backward(g, cache) if cached else backward(g, *x), count, len(x))
        return value, [*grads, None] if len(grads) == len(x) and len(x) != count else grads

    named(reference, [*plain_names(forward, n_inputs), GRAD_OUTPUT])
    return reference, torch_inner(torch_op)
