"""Property-based counterparts of ``check_vjp`` and ``check_layer``: searched, and shrunk.

``verify_vjp`` and ``verify_layer`` go through :func:`~gradcheck_lab.gradients.search.verify` with the scalar
pair their checks build, drawing the upstream gradient from a seed hypothesis draws (and shrinks to
0); a failure names the minimal inputs. (``verify_update_rule`` lives in
:mod:`gradcheck_lab.optim.search`.)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from hypothesis import strategies as st

from gradcheck_lab.core.arguments import call_style, callable_argument
from gradcheck_lab.core.search import arity, first_example
from gradcheck_lab.gradients.inputs import constant_indices
from gradcheck_lab.gradients.layer_paths import Path, Transform
from gradcheck_lab.gradients.layers import layer_pair
from gradcheck_lab.gradients.search import VerifyResult, search_inputs, verify
from gradcheck_lab.gradients.strategies import DEFAULT_BOUND, ElementSpec
from gradcheck_lab.gradients.vjp import count_outputs, draw_grad_outputs, given_grad_outputs, output_shapes, vjp_pair

Inputs = st.SearchStrategy[tuple[Any, ...]]


def _with_grad_output(forward: Callable[..., Any], inputs: Inputs, grad_output: Any, outputs: int) -> Inputs:
    """Each input tuple followed by the upstream gradients (one per output): ``grad_output`` when given, else
    shaped like the forward's outputs from a drawn seed (which shrinks to 0)."""
    if grad_output is not None:
        fixed = given_grad_outputs(grad_output, outputs)
        return inputs.map(lambda xs: (*xs, *fixed))
    return st.tuples(inputs, st.integers(0, 255)).map(
        lambda pair: (*pair[0], *draw_grad_outputs(output_shapes(forward, pair[0], outputs), pair[1])))


@call_style(positional=3, renamed={"torch_op": "torch_fn"})
def verify_vjp(
    forward: Callable[..., Any],
    backward: Callable[..., Any],
    torch_fn: Callable[..., torch.Tensor],
    *,
    shapes: Sequence[tuple[int, ...]] | None = None,
    inputs: st.SearchStrategy[tuple[Any, ...]] | None = None,
    grad_output: np.ndarray | None = None,
    constants: Sequence[int] = (),
    bound: float = DEFAULT_BOUND,
    elements: ElementSpec = None,
    **verify_kwargs: Any,
) -> VerifyResult:
    """:func:`~gradcheck_lab.gradients.vjp.check_vjp` on inputs hypothesis draws, shrunk on failure.

    Args:
        forward: ``forward(*inputs) -> out`` or ``-> (out, cache)``, as in ``check_vjp``.
        backward: ``backward(grad_output, *inputs)`` or ``backward(grad_output, cache)`` -> the input gradients.
        torch_fn: the torch function ``forward`` implements (``torch_op=`` is its old name).
        shapes: one shape per input; or ``inputs``: a hypothesis strategy of input tuples.
        grad_output: a fixed upstream gradient (a tuple, one per output, when ``torch_fn`` returns several);
            None: drawn (standard normal, from a drawn seed).
        constants: the indices of data inputs.
        bound: the elements' bound; elements: a strategy of numbers for every input, or one per input.
        **verify_kwargs: every other keyword ``check_vjp`` or ``verify`` accepts (``device``, ``dtype``,
            ``devices``, ``dtypes``, ``rtol``, ``atol``, ``kinks``, ``max_examples``, ``seed``, ``shrink_budget``).

    Returns:
        A :class:`~gradcheck_lab.core.search.VerifyResult` carrying the last report.

    Raises:
        GradientMismatch: on the smallest failing example found, which its message and ``inputs`` hold.
        InvalidInputError: a bad argument, before any work.
    """
    __tracebackhide__ = True
    callable_argument("forward", forward, "the forward function: forward(*inputs) -> out")
    callable_argument("backward", backward, "the backward function: backward(grad_output, ...) -> grads")
    callable_argument("torch_fn", torch_fn, "the torch function the forward implements")
    strategy = search_inputs(shapes, inputs, bound, elements)
    example = first_example(strategy)
    n = len(example)
    fixed = constant_indices(constants, n)
    outputs = count_outputs(torch_fn, example)
    reference, torch_side = vjp_pair(forward, backward, torch_fn, n, fixed, outputs=outputs)
    return verify(reference, torch_side, inputs=_with_grad_output(forward, strategy, grad_output, outputs),
                  constants=(*fixed, *range(n, n + outputs)), **verify_kwargs)


@call_style(positional=2)
def verify_layer(
    layer: Any,
    torch_module: torch.nn.Module,
    *,
    shapes: Sequence[tuple[int, ...]] | None = None,
    inputs: st.SearchStrategy[tuple[Any, ...]] | None = None,
    params: Mapping[str, Path] | None = None,
    param_grads: Mapping[str, Path] | Callable[[Any], Mapping[str, np.ndarray]] | None = None,
    transforms: Mapping[str, Transform] | None = None,
    outputs: Path | None = None,
    input_grads: Path | None = None,
    buffers: Mapping[str, Path] | None = None,
    grad_output: np.ndarray | None = None,
    constants: Sequence[int] = (),
    bound: float = DEFAULT_BOUND,
    elements: ElementSpec = None,
    **verify_kwargs: Any,
) -> VerifyResult:
    """:func:`~gradcheck_lab.gradients.layers.check_layer` (gradients) on inputs hypothesis draws, with the
    module's parameters; shrunk on failure.

    Args:
        layer, torch_module, params, param_grads, transforms, outputs, input_grads, grad_output, constants: as in
            ``check_layer`` (``buffers`` is accepted and checked by ``check_layer`` only: a search compares
            gradients).
        shapes: one shape per input; or ``inputs``: a hypothesis strategy of input tuples.
        bound, elements: as in ``verify``.
        **verify_kwargs: every other keyword ``check_layer`` or ``verify`` accepts (``device``, ``dtype``,
            ``rtol``, ``atol``, ``kinks``, ``max_examples``, ``seed``, ``shrink_budget``, ...).

    Returns:
        A :class:`~gradcheck_lab.core.search.VerifyResult` carrying the last report.

    Raises:
        GradientMismatch: on the smallest failing example found, which its message and ``inputs`` hold.
        InvalidInputError: a bad argument (a layer without ``forward``, a wrong ``params=`` path), before any work.
    """
    __tracebackhide__ = True
    strategy = search_inputs(shapes, inputs, bound, elements)
    n = arity(strategy)
    pair = layer_pair(layer, torch_module, n, params, param_grads, transforms, buffers, constants,
                      outputs=outputs, input_grads=input_grads)
    weights = tuple(pair.weights)
    full = strategy.map(lambda xs: (*xs, *weights))
    return verify_vjp(pair.forward, pair.backward, pair.torch_op, inputs=full, constants=tuple(pair.fixed),
                      grad_output=grad_output, **verify_kwargs)
