"""``verify_update_rule`` and ``verify_optimizer``: the optimizer checks over parameter shapes and gradient seeds
that hypothesis draws, a failure shrunk to the fewest, smallest parameters and the smallest seed.

Both run on the one hypothesis harness (:func:`gradcheck_lab.core.search.run_search`): the loaded profile's
``max_examples`` unless given, ``seed=`` reproducible, shrinking within budget.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from gradcheck_lab.core import arguments
from gradcheck_lab.core.arguments import call_style
from gradcheck_lab.core.search import SHRINK_BUDGET, VerifyResult, run_search
from gradcheck_lab.optim import validation
from gradcheck_lab.optim.check import check_optimizer
from gradcheck_lab.optim.report import OptimizerReport
from gradcheck_lab.optim.trajectory import plan_trajectory
from gradcheck_lab.optim.update_rule import UpdateRule, check_update_rule

Example = tuple[list[tuple[int, ...]], int]
"""One example of a search: the parameter shapes and the seed of the gradients (and initial parameters)."""


def examples(shapes: Sequence[Sequence[int]] | None, *, max_params: int = 3,
             max_side: int = 5) -> st.SearchStrategy[Example]:
    """``(shapes, gradient seed)`` pairs: the shapes given, or lists of 1..``max_params`` shapes (0 to 3 dimensions,
    sides 1..``max_side``); seeds 0..255. Both shrink: to one scalar parameter and seed 0."""
    fixed = [tuple(int(n) for n in s) for s in shapes] if shapes is not None else None
    shape_lists: st.SearchStrategy[list[tuple[int, ...]]] = (
        st.just(fixed) if fixed is not None
        else st.lists(hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=max_side),
                      min_size=1, max_size=max_params))
    return st.tuples(shape_lists, st.integers(0, 255))


def _describe(example: Example) -> str:
    shapes, seed = example
    return f"    shapes={shapes}, seed={seed}"


def _search(check_one: Callable[[Example], OptimizerReport], shapes: Sequence[Sequence[int]] | None,
            inputs: st.SearchStrategy[Example] | None, *, max_params: int, max_side: int, max_examples: int | None,
            seed: int | None, shrink_budget: float) -> VerifyResult:
    __tracebackhide__ = True
    strategy = inputs if inputs is not None else examples(
        shapes, max_params=arguments.integer("max_params", max_params, minimum=1),
        max_side=arguments.integer("max_side", max_side, minimum=1))
    return run_search(check_one, strategy, max_examples=max_examples, seed=seed, describe=_describe,
                      shrink_budget=shrink_budget)


@call_style(positional=2, legacy_positional=("hyper", "config"),
            renamed={"torch_optimizer_cls": "torch_optimizer", "torch_cls": "torch_optimizer",
                     "state_keys": "state_names"})
def verify_update_rule(
    update: UpdateRule,
    torch_optimizer: type[torch.optim.Optimizer],
    *,
    hyper: Mapping[str, Any] | None = None,
    config: Mapping[str, Any] | None = None,
    shapes: Sequence[Sequence[int]] | None = None,
    steps: int = 50,
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype = "float64",
    rtol: float | None = None,
    atol: float | None = None,
    seed: int | None = 0,
    state_names: Mapping[str, str] | None = None,
    free_running: bool = False,
    inputs: st.SearchStrategy[Example] | None = None,
    max_examples: int | None = None,
    max_params: int = 3,
    max_side: int = 5,
    shrink_budget: float = SHRINK_BUDGET,
) -> VerifyResult:
    """:func:`~gradcheck_lab.optim.update_rule.check_update_rule` on parameter shapes and gradient seeds hypothesis
    draws, shrunk on failure.

    Args:
        update, torch_optimizer, hyper, config, steps, device, dtype, rtol, atol, state_names, free_running: as
            for ``check_update_rule`` (the same defaults).
        shapes: fixed parameter shapes (only the gradient seed is searched); None: shapes are searched too, up to
            ``max_params`` parameters of sides up to ``max_side``.
        inputs: a strategy of ``(shapes, gradient seed)`` examples instead (see :func:`examples`).
        seed: fixes the search (the same examples on every run); None: a fresh random search.
        max_examples: examples to run; None: the loaded hypothesis profile's.
        shrink_budget: shrinking stops at this many times what a passing search costs, reporting the smallest
            failure found so far (``math.inf``: shrink to the end).

    Returns:
        A :class:`~gradcheck_lab.core.search.VerifyResult`; ``report`` is the last example's
        :class:`~gradcheck_lab.optim.report.OptimizerReport`, ``worst`` the one closest to its bound.

    Raises:
        OptimizerMismatch: on the smallest failing example found, its message followed by
            ``minimal counterexample (after shrinking): shapes=[...], seed=N``.
        InvalidInputError: an argument the check cannot use, before any example runs.
    """
    __tracebackhide__ = True
    arguments.callable_argument("update", update, "an update rule update(w, dw, config) -> (next_w, config)")
    torch_cls = validation.torch_optimizer_class("torch_optimizer", torch_optimizer)
    validation.hyperparameters("hyper", hyper, torch_cls)
    arguments.mapping("config", config)
    plan_trajectory(shapes if shapes is not None else [(1,)], steps=steps, seed=0, device=device, dtype=dtype,
                    rtol=rtol, atol=atol)

    def check_one(example: Example) -> OptimizerReport:
        __tracebackhide__ = True
        example_shapes, grad_seed = example
        return check_update_rule(update, torch_cls, hyper=hyper, config=config, shapes=example_shapes, steps=steps,
                                 device=device, dtype=dtype, rtol=rtol, atol=atol, seed=grad_seed,
                                 state_names=state_names, free_running=free_running)

    return _search(check_one, shapes, inputs, max_params=max_params, max_side=max_side, max_examples=max_examples,
                   seed=seed, shrink_budget=shrink_budget)


def verify_optimizer(
    optimizer_cls: Callable[..., Any],
    torch_optimizer: type[torch.optim.Optimizer],
    *,
    hyper: Mapping[str, Any] | None = None,
    shapes: Sequence[Sequence[int]] | None = None,
    steps: int = 50,
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype = "float64",
    rtol: float | None = None,
    atol: float | None = None,
    seed: int | None = 0,
    torch_hyper: Mapping[str, Any] | None = None,
    free_running: bool = False,
    none_grads: bool = False,
    inputs: st.SearchStrategy[Example] | None = None,
    max_examples: int | None = None,
    max_params: int = 3,
    max_side: int = 5,
    shrink_budget: float = SHRINK_BUDGET,
) -> VerifyResult:
    """:func:`~gradcheck_lab.optim.check.check_optimizer` on parameter shapes and gradient seeds hypothesis draws,
    shrunk on failure; the arguments and the result as for :func:`verify_update_rule`.

    (Parameter groups, a scheduler and a state swap are tied to the number of parameters: check those with
    ``check_optimizer`` on fixed shapes.)
    """
    __tracebackhide__ = True
    reference = validation.reference_optimizer("optimizer_cls", optimizer_cls, "your optimizer class")
    torch_cls = validation.torch_optimizer_class("torch_optimizer", torch_optimizer)
    validation.hyperparameters("hyper", hyper, torch_cls)
    validation.hyperparameters("torch_hyper", torch_hyper, torch_cls)
    plan_trajectory(shapes if shapes is not None else [(1,)], steps=steps, seed=0, device=device, dtype=dtype,
                    rtol=rtol, atol=atol)

    def check_one(example: Example) -> OptimizerReport:
        __tracebackhide__ = True
        example_shapes, grad_seed = example
        return check_optimizer(reference, torch_cls, hyper=hyper, shapes=example_shapes, steps=steps, device=device,
                               dtype=dtype, rtol=rtol, atol=atol, seed=grad_seed, torch_hyper=torch_hyper,
                               free_running=free_running, none_grads=none_grads)

    return _search(check_one, shapes, inputs, max_params=max_params, max_side=max_side, max_examples=max_examples,
                   seed=seed, shrink_budget=shrink_budget)
