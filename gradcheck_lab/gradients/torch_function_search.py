"""``verify_torch_function``: ``check_torch_function`` over the inputs a hypothesis search draws, shrunk on failure."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from hypothesis import strategies as st

from gradcheck_lab.core.search import VerifyResult, run_search
from gradcheck_lab.errors import InvalidInputError, NonFiniteError
from gradcheck_lab.gradients.strategies import DEFAULT_BOUND, ElementSpec, input_tuples
from gradcheck_lab.gradients.torch_function import DEFAULT_FACTOR, check_torch_function
from gradcheck_lab.gradients.torch_function_rule import TorchFunctionReport
from gradcheck_lab.gradients.torch_function_run import TorchCallable

NONFINITE_HINT = ("if the function is only defined on part of the line, restrict the inputs: "
                  "verify_torch_function(..., elements=st.floats(0.1, 4.0)) or inputs=<strategy>")


def verify_torch_function(
    candidate: TorchCallable,
    reference: TorchCallable,
    *,
    shapes: Sequence[tuple[int, ...]] | None = None,
    inputs: st.SearchStrategy[tuple[Any, ...]] | None = None,
    elements: ElementSpec = None,
    bound: float = DEFAULT_BOUND,
    max_examples: int | None = None,
    seed: int | None = 0,
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype = "bfloat16",
    rtol: float | None = None,
    atol: float | None = None,
    constants: Sequence[int] = (),
    grad_output: Any = None,
    factor: float = DEFAULT_FACTOR,
    order: int = 1,
) -> VerifyResult:
    """Run :func:`~gradcheck_lab.gradients.torch_function.check_torch_function` on inputs hypothesis draws.

    Args:
        candidate, reference, device, dtype, rtol, atol, constants, grad_output, factor, order: as in
            ``check_torch_function`` (same defaults).
        shapes: one shape per input; elements drawn in ``[-bound, bound]`` (arrays past 1024 elements are built
            from a few drawn numbers), or from ``elements`` (one strategy, or one per input: an entry may draw the
            whole array, as ``gradcheck_lab.gradients.strategies.labels((8,), 4)`` does for integer targets).
        inputs: a strategy of input tuples, instead of ``shapes``.
        max_examples: examples to run (None: the loaded hypothesis profile's).
        seed: fixes the search (the same examples every run); ``check_torch_function``'s draws of grad_output
            and of the order-2 vectors use seed 0 for every example.

    Returns:
        A :class:`~gradcheck_lab.core.search.VerifyResult` whose ``report`` is the last example's
        :class:`~gradcheck_lab.gradients.torch_function_rule.TorchFunctionReport`.

    Raises:
        GradientMismatch: on the smallest failing example found (its inputs in the message and ``exc.inputs``);
            every other typed error of ``check_torch_function`` likewise.
        InvalidInputError: neither ``shapes`` nor ``inputs`` given.
    """
    __tracebackhide__ = True
    if inputs is None:
        if shapes is None:
            raise InvalidInputError("verify_torch_function needs shapes=[...] or inputs=<strategy of input tuples>")
        inputs = input_tuples([tuple(s) for s in shapes], bound, elements)

    def check_one(example: tuple[Any, ...]) -> TorchFunctionReport:
        __tracebackhide__ = True
        return check_torch_function(candidate, reference, example, device=device, dtype=dtype, rtol=rtol, atol=atol,
                                    constants=constants, grad_output=grad_output, factor=factor, order=order)

    return run_search(check_one, inputs, max_examples=max_examples, seed=seed, hints={NonFiniteError: NONFINITE_HINT})
