"""Property-based counterparts of ``check_vjp``, ``check_layer`` and ``check_update_rule``: searched, and shrunk.

``verify_vjp`` and ``verify_layer`` go through :func:`~gradcheck_lab.gradients.search.verify` with the scalar
pair their checks build, drawing the upstream gradient from a seed hypothesis draws (and shrinks to
0); a failure names the minimal inputs. ``verify_update_rule`` searches parameter shapes and gradient
seeds and shrinks them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from gradcheck_lab.core.search import arity
from gradcheck_lab.errors import InvalidInputError, OptimizerMismatch
from gradcheck_lab.gradients.inputs import constant_indices
from gradcheck_lab.gradients.layers import Path, Transform, layer_pair
from gradcheck_lab.gradients.search import VerifyResult, verify
from gradcheck_lab.gradients.strategies import DEFAULT_BOUND, ElementSpec, input_tuples
from gradcheck_lab.gradients.vjp import draw_grad_output, output_shape, vjp_pair
from gradcheck_lab.optim.check import OptimizerReport
from gradcheck_lab.optim.update_rule import UpdateRule, check_update_rule

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


def verify_update_rule(
    update: UpdateRule,
    torch_optimizer_cls: type,
    hyper: Mapping[str, Any] | None = None,
    config: Mapping[str, Any] | None = None,
    *,
    steps: int = 20,
    max_params: int = 3,
    max_side: int = 5,
    max_examples: int = 20,
    seed: int | None = None,
    **check_kwargs: Any,
) -> OptimizerReport:
    """:func:`~gradcheck_lab.optim.update_rule.check_update_rule` over parameter shapes and gradient seeds hypothesis
    draws; a failure is shrunk to the fewest, smallest parameters and the smallest seed, and names them.

    Returns the report with the largest error over the examples.
    """
    __tracebackhide__ = True
    shape_lists = st.lists(hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=max_side),
                           min_size=1, max_size=max_params)
    worst: list[OptimizerReport] = []
    failure: dict[str, Any] = {}

    def one_example(shapes: list[tuple[int, ...]], grad_seed: int) -> None:
        try:
            report = check_update_rule(update, torch_optimizer_cls, hyper, config, shapes=shapes, steps=steps,
                                       seed=grad_seed, **check_kwargs)
        except OptimizerMismatch:
            failure.update(shapes=shapes, seed=grad_seed)  # the last failure hypothesis replays is the minimal one
            raise
        if not worst or report.ratio > worst[0].ratio:
            worst[:] = [report]

    search = settings(max_examples=max_examples, deadline=None, database=None, report_multiple_bugs=False,
                      suppress_health_check=list(HealthCheck))(
        given(shape_lists, st.integers(0, 255))(one_example))
    if seed is not None:
        search = hypothesis_seed(seed)(search)
    try:
        search()
    except OptimizerMismatch as exc:
        raise OptimizerMismatch(f"{exc}\n  minimal counterexample (after shrinking): shapes={failure.get('shapes')}, "
                                f"seed={failure.get('seed')}", step=exc.step, param=exc.param, entry=exc.entry,
                                report=exc.report) from None
    return worst[0]
