"""Property-based counterparts of ``check_vjp`` and ``check_layer``: searched, and shrunk.

``verify_vjp`` and ``verify_layer`` go through :func:`~gradcheck_lab.gradients.search.verify` with the scalar
pair their checks build, drawing the upstream gradient from a seed hypothesis draws (and shrinks to
0); a failure names the minimal inputs. (``verify_update_rule`` lives in :mod:`gradcheck_lab.optim.search`.)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from hypothesis import strategies as st

from gradcheck_lab.core.search import arity
from gradcheck_lab.errors import InvalidInputError
from gradcheck_lab.gradients.inputs import constant_indices
from gradcheck_lab.gradients.layers import Path, Transform, layer_pair
from gradcheck_lab.gradients.search import VerifyResult, verify
from gradcheck_lab.gradients.strategies import DEFAULT_BOUND, ElementSpec, input_tuples
from gradcheck_lab.gradients.vjp import draw_grad_output, output_shape, vjp_pair

Inputs = st.SearchStrategy[tuple[Any, ...]]


def _with_grad_output(forward: Callable[..., Any], inputs: Inputs) -> Inputs:
    """Each input tuple followed by an upstream gradient shaped like the forward's output, from a drawn seed."""
    return st.tuples(inputs, st.integers(0, 255)).map(
        lambda pair: (*pair[0], draw_grad_output(output_shape(forward, pair[0]), pair[1])))


def _input_strategy(shapes: Sequence[tuple[int, ...]] | None, inputs: st.SearchStrategy[tuple[Any, ...]] | None,
                    bound: float, elements: ElementSpec) -> st.SearchStrategy[tuple[Any, ...]]:
    if inputs is not None:
        return inputs
    if shapes is None:
        raise InvalidInputError("give shapes=[...] or inputs=<strategy of input tuples>")
    return input_tuples([tuple(s) for s in shapes], bound, elements)


def verify_vjp(
    forward: Callable[..., Any],
    backward: Callable[..., Any],
    torch_op: Callable[..., torch.Tensor],
    *,
    shapes: Sequence[tuple[int, ...]] | None = None,
    inputs: st.SearchStrategy[tuple[Any, ...]] | None = None,
    constants: Sequence[int] = (),
    bound: float = DEFAULT_BOUND,
    elements: ElementSpec = None,
    **verify_kwargs: Any,
) -> VerifyResult:
    """:func:`~gradcheck_lab.gradients.vjp.check_vjp`
    on inputs hypothesis draws (``shapes`` or ``inputs``), shrunk on failure.

    The remaining keyword arguments are :func:`~gradcheck_lab.gradients.search.verify`'s (``dtypes``,
    ``max_examples``, ``seed``, ``kinks``, ...).
    """
    __tracebackhide__ = True
    strategy = _input_strategy(shapes, inputs, bound, elements)
    n = len(shapes) if shapes is not None else arity(strategy)
    fixed = constant_indices(constants, n)
    reference, torch_fn = vjp_pair(forward, backward, torch_op, n, fixed)
    return verify(reference, torch_fn, inputs=_with_grad_output(forward, strategy), constants=(*fixed, n),
                  **verify_kwargs)


def verify_layer(
    layer: Any,
    torch_module: torch.nn.Module,
    *,
    shapes: Sequence[tuple[int, ...]] | None = None,
    inputs: st.SearchStrategy[tuple[Any, ...]] | None = None,
    params: Mapping[str, Path] | None = None,
    param_grads: Mapping[str, Path] | Callable[[Any], Mapping[str, np.ndarray]] | None = None,
    transforms: Mapping[str, Transform] | None = None,
    constants: Sequence[int] = (),
    bound: float = DEFAULT_BOUND,
    elements: ElementSpec = None,
    **verify_kwargs: Any,
) -> VerifyResult:
    """:func:`~gradcheck_lab.gradients.layers.check_layer` (gradients) on inputs hypothesis draws, with the module's
    parameters; shrunk on failure. The remaining keyword arguments are ``verify``'s."""
    __tracebackhide__ = True
    strategy = _input_strategy(shapes, inputs, bound, elements)
    n = len(shapes) if shapes is not None else arity(strategy)
    pair = layer_pair(layer, torch_module, n, params, param_grads, transforms, {}, constants)
    weights = tuple(pair.weights)
    full = strategy.map(lambda xs: (*xs, *weights))
    return verify_vjp(pair.forward, pair.backward, pair.torch_op, inputs=full, constants=tuple(pair.fixed),
                      **verify_kwargs)
