"""``verify``: ``check_gradients`` over every input a hypothesis search can find, shrunk on failure."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import torch
from hypothesis import strategies as st

from gradcheck_lab.core import arguments
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
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
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
    if shapes is not None and inputs is None:
        expected = _positional_count(reference_fn)
        if expected is not None and isinstance(shapes, Sequence) and len(shapes) != expected and not all(
                isinstance(d, int) for d in shapes):
            raise InvalidInputError(f"shapes= has {len(shapes)} shapes but the reference takes {expected} inputs: "
                                    "pass one shape per input")
    inputs = search_inputs(shapes, inputs, bound, elements)
    rtol, atol = arguments.tolerance("rtol", rtol), arguments.tolerance("atol", atol)
    if max_examples is not None:
        max_examples = arguments.integer("max_examples", max_examples, minimum=1)
    if device is not None:
        devices = [str(device)]
    if dtype is not None:
        dtypes = [dtype]
    device_list = resolve_devices(devices if isinstance(devices, str) else list(devices))
    dtype_list = [resolve_dtype(d) for d in ([dtypes] if isinstance(dtypes, str | torch.dtype) else dtypes)]

    def check_one(example: tuple[Any, ...]) -> list[Report]:
        __tracebackhide__ = True
        return [check_gradients(reference_fn, torch_fn, example, device=dev, dtype=dt, rtol=rtol, atol=atol,
                                finite_differences=finite_differences, **check_kwargs)
                for dev in device_list for dt in dtype_list]

    return run_search(check_one, inputs, max_examples=max_examples, seed=seed, shrink_budget=shrink_budget,
                      hints={NonFiniteError: NONFINITE_HINT})


def _positional_count(fn: Any) -> int | None:
    """The number of positional parameters ``fn`` takes, when that is certain (no ``*args``, no defaults)."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return None
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL or (p.kind in kinds and p.default is not p.empty)
           for p in params):
        return None
    return sum(p.kind in kinds for p in params)


def search_inputs(shapes: Any, inputs: Any, bound: float, elements: ElementSpec) -> st.SearchStrategy[tuple[Any, ...]]:
    """The strategy of input tuples a ``verify_*`` searches: ``inputs=`` as given, or drawn for ``shapes=``.

    Raises:
        InvalidInputError: neither or both given, ``inputs`` not a hypothesis strategy, ``shapes`` not a list of
            shapes (``[3]`` instead of ``[(3,)]``, a negative side), ``elements=`` of another length.
    """
    __tracebackhide__ = True
    if inputs is not None:
        if shapes is not None:
            raise InvalidInputError("pass shapes= or inputs=, not both: inputs= already says the shapes")
        if not isinstance(inputs, st.SearchStrategy):
            raise InvalidInputError("inputs= must be a hypothesis strategy of input tuples, got "
                                    f"{type(inputs).__name__}: for fixed inputs call the check_* function, or give "
                                    "shapes=[...] to search")
        return inputs
    if shapes is None:
        raise InvalidInputError("give shapes=[(4, 3), ...] (one shape per input) or inputs=<strategy of input tuples>")
    shape_list = arguments.shapes("shapes", shapes)
    if any(0 in s for s in shape_list):
        raise InvalidInputError(f"shapes={shape_list!r} has an empty input (a side of 0): every side must be >= 1")
    if isinstance(elements, Sequence) and len(elements) != len(shape_list):
        raise InvalidInputError(f"elements= has {len(elements)} entries for {len(shape_list)} inputs: give one per "
                                "input (None for the default) or one strategy for all")
    return input_tuples(shape_list, bound, elements)


NONFINITE_HINT = ("if the function is only defined on part of the line, restrict the inputs: "
                  "verify(..., elements=st.floats(0.1, 4.0)) or inputs=<strategy>")


__all__ = ["NONFINITE_HINT", "VerifyResult", "VerifySummary", "search_inputs", "verify"]
