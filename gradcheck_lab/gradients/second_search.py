"""``verify_jvp`` and ``verify_hvp``: the forward-mode and second-order checks over every input a hypothesis search
draws, on the one harness (:func:`gradcheck_lab.core.search.run_search`: seed-only draws, a bounded shrink, the
minimal failure re-raised with its example). Where the check draws its tangents or vectors, each example draws
their seed too, so every example gets its own and a failure shrinks with them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from hypothesis import strategies as st

from gradcheck_lab.core import arguments
from gradcheck_lab.core.devices import resolve_device
from gradcheck_lab.core.dtypes import resolve_dtype
from gradcheck_lab.core.report import Report
from gradcheck_lab.core.search import VerifyResult, describe_inputs, run_search
from gradcheck_lab.errors import InvalidInputError
from gradcheck_lab.gradients.hvp import check_hvp
from gradcheck_lab.gradients.jvp import check_jvp
from gradcheck_lab.gradients.strategies import DEFAULT_BOUND, ElementSpec, input_tuples


def example_strategy(shapes: Any, inputs: Any, bound: float, elements: Any, draw_seed: bool) -> Any:
    """The examples a ``verify_*`` of a product draws: input tuples (``inputs=`` or drawn for ``shapes=``), paired
    with a seed for the tangents/vectors where the check draws them (so each example gets its own, shrinkably).

    Raises:
        InvalidInputError: neither ``shapes=`` nor ``inputs=`` given, or malformed shapes.
    """
    __tracebackhide__ = True
    if inputs is None:
        if shapes is None:
            raise InvalidInputError("give shapes=[...] (one shape per input) or inputs=<strategy of input tuples>")
        inputs = input_tuples(arguments.shapes("shapes", shapes), bound, elements)
    return st.tuples(inputs, st.integers(0, 2**31 - 1) if draw_seed else st.just(None))


def describe_example(example: tuple[Any, int | None]) -> str:
    """A failing example of a product's search: its inputs, and the seed its tangents or vectors were drawn from."""
    inputs, seed = example
    return describe_inputs(inputs) + ("" if seed is None else f"\n    (tangents/vectors drawn with seed={seed})")


def verify_jvp(
    forward: Callable[..., Any],
    jvp: Callable[..., Any],
    torch_fn: Callable[..., torch.Tensor],
    *,
    shapes: Sequence[tuple[int, ...]] | None = None,
    inputs: st.SearchStrategy[tuple[Any, ...]] | None = None,
    bound: float = DEFAULT_BOUND,
    elements: ElementSpec = None,
    max_examples: int | None = None,
    seed: int | None = 0,
    tangents: Any = None,
    constants: Sequence[int] = (),
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype = "float64",
    rtol: float | None = None,
    atol: float | None = None,
    finite_differences: bool = False,
    kinks: str = "strict",
) -> VerifyResult:
    """:func:`check_jvp` on every input a hypothesis search draws (shrunk on failure), on the one harness.

    Args:
        forward: as in :func:`check_jvp`.
        jvp: as in :func:`check_jvp`.
        torch_fn: as in :func:`check_jvp`.
        shapes: one shape per input, drawn with elements in ``[-bound, bound]`` (or from ``elements``).
        inputs: a strategy of input tuples, instead of ``shapes``.
        bound: the drawn elements' largest magnitude.
        elements: a strategy of elements, or one per input (an entry may draw a whole array, e.g. labels).
        max_examples: examples to run (None: the hypothesis profile's).
        seed: fixes the search; None draws afresh.
        tangents: fixed tangents for every example; None draws new ones for each example (from the example).
        constants: as in :func:`check_jvp`.
        device: as in :func:`check_jvp`.
        dtype: as in :func:`check_jvp`.
        rtol: as in :func:`check_jvp`.
        atol: as in :func:`check_jvp`.
        finite_differences: as in :func:`check_jvp`.
        kinks: as in :func:`check_jvp`.

    Returns:
        A :class:`VerifyResult` (``report``: the last example's report).

    Raises:
        GradientMismatch: on the minimal failing example found (its inputs, and the tangents' seed, in the message).
        InvalidInputError: malformed arguments, before the search starts.
    """
    __tracebackhide__ = True
    for name, fn in (("forward", forward), ("jvp", jvp), ("torch_fn", torch_fn)):
        arguments.callable_argument(name, fn, "a function")

    def check_one(example: tuple[tuple[Any, ...], int | None]) -> Report:
        __tracebackhide__ = True
        xs, drawn = example
        return check_jvp(forward, jvp, torch_fn, xs, tangents=tangents, constants=constants, device=device,
                         dtype=dtype, rtol=rtol, atol=atol, seed=drawn or 0, finite_differences=finite_differences,
                         kinks=kinks)

    return _search(check_one, shapes, inputs, bound, elements, draw_seed=tangents is None,
                   max_examples=max_examples, seed=seed, rtol=rtol, atol=atol, kinks=kinks, dtype=dtype, device=device)


def verify_hvp(
    hvp: Callable[..., Any],
    torch_fn: Callable[..., torch.Tensor],
    *,
    shapes: Sequence[tuple[int, ...]] | None = None,
    inputs: st.SearchStrategy[tuple[Any, ...]] | None = None,
    bound: float = DEFAULT_BOUND,
    elements: ElementSpec = None,
    max_examples: int | None = None,
    seed: int | None = 0,
    vectors: Any = None,
    constants: Sequence[int] = (),
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype = "float64",
    rtol: float | None = None,
    atol: float | None = None,
    finite_differences: bool = False,
    kinks: str = "strict",
) -> VerifyResult:
    """:func:`check_hvp` on every input a hypothesis search draws (shrunk on failure), on the one harness.

    Args:
        hvp: as in :func:`check_hvp`.
        torch_fn: as in :func:`check_hvp`.
        shapes: one shape per input, drawn with elements in ``[-bound, bound]`` (or from ``elements``).
        inputs: a strategy of input tuples, instead of ``shapes``.
        bound: the drawn elements' largest magnitude.
        elements: a strategy of elements, or one per input (an entry may draw a whole array, e.g. labels).
        max_examples: examples to run (None: the hypothesis profile's).
        seed: fixes the search; None draws afresh.
        vectors: fixed vectors for every example; None draws new ones for each example (from the example).
        constants: as in :func:`check_hvp`.
        device: as in :func:`check_hvp`.
        dtype: as in :func:`check_hvp`.
        rtol: as in :func:`check_hvp`.
        atol: as in :func:`check_hvp`.
        finite_differences: as in :func:`check_hvp`.
        kinks: as in :func:`check_hvp`.

    Returns:
        A :class:`VerifyResult` (``report``: the last example's report).

    Raises:
        GradientMismatch: on the minimal failing example found (its inputs, and the vectors' seed, in the message).
        InvalidInputError: malformed arguments, before the search starts.
    """
    __tracebackhide__ = True
    arguments.callable_argument("hvp", hvp, "the Hessian-vector product, hvp(vectors, *inputs) -> tuple of arrays")
    arguments.callable_argument("torch_fn", torch_fn, "the torch function, torch_fn(*tensors) -> scalar tensor")

    def check_one(example: tuple[tuple[Any, ...], int | None]) -> Report:
        __tracebackhide__ = True
        xs, drawn = example
        return check_hvp(hvp, torch_fn, xs, vectors=vectors, constants=constants, device=device, dtype=dtype,
                         rtol=rtol, atol=atol, seed=drawn or 0, finite_differences=finite_differences, kinks=kinks)

    return _search(check_one, shapes, inputs, bound, elements, draw_seed=vectors is None,
                   max_examples=max_examples, seed=seed, rtol=rtol, atol=atol, kinks=kinks, dtype=dtype, device=device)


def _search(check_one: Callable[[tuple[tuple[Any, ...], int | None]], Report],
            shapes: Sequence[tuple[int, ...]] | None, inputs: st.SearchStrategy[tuple[Any, ...]] | None,
            bound: float, elements: ElementSpec, *, draw_seed: bool, max_examples: int | None, seed: int | None,
            rtol: float | None, atol: float | None, kinks: str, dtype: str | torch.dtype,
            device: str | torch.device) -> VerifyResult:
    """The two searches' common part: their check's settings validated before the search, the examples drawn
    (with a seed for the tangents or vectors where ``draw_seed``), and the search run."""
    __tracebackhide__ = True
    arguments.tolerance("rtol", rtol)
    arguments.tolerance("atol", atol)
    arguments.choice("kinks", kinks, ("strict", "subgradient"))
    resolve_dtype(dtype)
    resolve_device(device)
    strategy = example_strategy(shapes, inputs, bound, elements, draw_seed=draw_seed)
    return run_search(check_one, strategy, max_examples=max_examples, seed=seed, describe=describe_example)
