"""``verify``: ``check_gradients`` over every input a hypothesis search can find, shrunk on failure."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from hypothesis import strategies as st

from gradcheck_lab.core.devices import resolve_devices
from gradcheck_lab.core.dtypes import resolve_dtype
from gradcheck_lab.core.report import Report
from gradcheck_lab.core.search import SHRINK_BUDGET, VerifyResult, VerifySummary, run_search
from gradcheck_lab.errors import InvalidInputError, NonFiniteError
from gradcheck_lab.gradients.check import check_gradients
from gradcheck_lab.gradients.inputs import ReferenceFn, TorchFn
from gradcheck_lab.gradients.strategies import DEFAULT_BOUND, ElementSpec, input_tuples


def verify(
    reference_fn: ReferenceFn,
    torch_fn: TorchFn,
    *,
    shapes: Sequence[tuple[int, ...]] | None = None,
    devices: Sequence[str] | str = ("cpu",),
    dtypes: Sequence[str | torch.dtype] | str = ("float64",),
    max_examples: int | None = None,
    inputs: st.SearchStrategy[tuple[Any, ...]] | None = None,
    bound: float = DEFAULT_BOUND,
    elements: ElementSpec = None,
    rtol: float | None = None,
    atol: float | None = None,
    finite_differences: bool = False,
    seed: int | None = 0,
    shrink_budget: float = SHRINK_BUDGET,
    **check_kwargs: Any,
) -> VerifyResult:
    """Run :func:`check_gradients` on inputs hypothesis draws, on every device and dtype.

    Inputs come from ``inputs`` (a strategy of input tuples) or are drawn for ``shapes`` with
    elements in ``[-bound, bound]`` (or from ``elements``, e.g. ``st.floats(0.1, 4.0)`` for a
    function defined for positive inputs only; or one per input, where an entry may draw the whole array,
    as ``gst.labels((8,), 4)`` does). On the first failure hypothesis shrinks the example; the
    error raised (``GradientMismatch`` or another typed error) is the one for the *minimal*
    counterexample, which ``GradientMismatch.inputs`` holds. ``seed`` fixes the search. Shrinking takes at most
    ``shrink_budget`` times what a passing search costs (``math.inf``: until hypothesis is done); past it the
    smallest failing example so far is reported (see :mod:`gradcheck_lab.core.search`).
    """
    __tracebackhide__ = True
    if inputs is None:
        if shapes is None:
            raise InvalidInputError("verify needs shapes=[...] or inputs=<strategy of input tuples>")
        inputs = input_tuples([tuple(s) for s in shapes], bound, elements)
    device_list = resolve_devices(devices if isinstance(devices, str) else list(devices))
    dtype_list = [resolve_dtype(d) for d in ([dtypes] if isinstance(dtypes, str | torch.dtype) else dtypes)]

    def check_one(example: tuple[Any, ...]) -> list[Report]:
        __tracebackhide__ = True
        return [check_gradients(reference_fn, torch_fn, example, device=dev, dtype=dt, rtol=rtol, atol=atol,
                                finite_differences=finite_differences, **check_kwargs)
                for dev in device_list for dt in dtype_list]

    return run_search(check_one, inputs, max_examples=max_examples, seed=seed, shrink_budget=shrink_budget,
                      hints={NonFiniteError: NONFINITE_HINT})


NONFINITE_HINT = ("if the function is only defined on part of the line, restrict the inputs: "
                  "verify(..., elements=st.floats(0.1, 4.0)) or inputs=<strategy>")


__all__ = ["NONFINITE_HINT", "VerifyResult", "VerifySummary", "verify"]
