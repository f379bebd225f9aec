"""Hypothesis strategies for shapes and well-conditioned float64 inputs.

Inputs are always drawn in float64 and rounded to the dtype under test on purpose by the
harness (never by a float64 strategy silently feeding a float32 array).
"""

from __future__ import annotations

import functools
import math
import weakref
from collections.abc import Sequence
from typing import Any

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

DEFAULT_BOUND = 4.0
"""Element magnitude bound: keeps sigmoid away from saturation and float16 far from overflow."""


MIN_MAGNITUDE = 1e-6
"""Smaller non-zero magnitudes are snapped to 0: products of a few such values underflow float64."""


@functools.cache
def elements(bound: float = DEFAULT_BOUND, min_magnitude: float = MIN_MAGNITUDE) -> st.SearchStrategy[float]:
    """Finite float64 values in ``[-bound, bound]`` that are 0 or at least ``min_magnitude`` in size."""
    return _floats(bound).map(lambda v: v if abs(v) >= min_magnitude else 0.0)


@functools.cache
def _floats(bound: float) -> st.SearchStrategy[float]:
    return st.floats(min_value=-bound, max_value=bound, allow_nan=False, allow_infinity=False,
                     allow_subnormal=False, width=64)


def _snap_small(x: np.ndarray) -> np.ndarray:
    """:func:`elements`'s snap to 0 of magnitudes below :data:`MIN_MAGNITUDE`, on a whole drawn array at once."""
    x[np.abs(x) < MIN_MAGNITUDE] = 0.0
    return x


_ARRAY_STRATEGIES: weakref.WeakSet[st.SearchStrategy] = weakref.WeakSet()
"""Strategies that draw whole arrays (``arrays``, ``labels``): an ``elements=`` entry may be one of them."""


LARGE = 1024
"""Arrays with more elements are built by NumPy from a few drawn numbers, not drawn element by element."""


def arrays(shape: tuple[int, ...], bound: float = DEFAULT_BOUND,
           element_strategy: st.SearchStrategy[float] | None = None) -> st.SearchStrategy[np.ndarray]:
    """A float64 array of ``shape`` with well-conditioned elements (or ``element_strategy``'s).

    The strategy for each ``(shape, bound, element_strategy)`` is built once and reused: the composite
    strategies below ask for one per draw, and building (and validating) a new one each time cost more
    than drawing from it.

    Up to :data:`LARGE` elements hypothesis draws each element (and shrinks each). Beyond, drawing
    element by element would dominate the check (or exhaust hypothesis's data budget at 256 x 256):
    a seed, a scale and a fraction of exact zeros are drawn instead and a NumPy generator fills the
    array, uniform in ``[-scale, scale]``; with ``element_strategy``, from a pool of 32 values it
    draws. Shrinking then moves towards seed 0, the full bound and no zeros.
    """
    return _arrays(tuple(shape), bound, element_strategy)


@functools.lru_cache(maxsize=1024)
def _arrays(shape: tuple[int, ...], bound: float,
            element_strategy: st.SearchStrategy[float] | None) -> st.SearchStrategy[np.ndarray]:
    if element_strategy is not None:  # any strategy of numbers (bools, integers, fractions) as float64
        element_strategy = element_strategy.map(float)
    if math.prod(shape) > LARGE:
        strategy = _large_array(shape, bound, element_strategy)
    elif element_strategy is None:
        # elements(bound), element by element, with the snap to 0 applied to the drawn array: the same draws and
        # values, at half the cost (a mapped strategy costs hypothesis as much per element as the float itself).
        # No fill: every element is drawn, as it is from a mapped strategy.
        strategy = hnp.arrays(np.float64, shape, elements=_floats(bound), fill=st.nothing()).map(_snap_small)
    else:
        strategy = hnp.arrays(np.float64, shape, elements=element_strategy)
    _ARRAY_STRATEGIES.add(strategy)
    return strategy


@st.composite
def _large_array(draw: st.DrawFn, shape: tuple[int, ...], bound: float,
                 element_strategy: st.SearchStrategy[float] | None) -> np.ndarray:
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1), label="seed"))
    if element_strategy is None:
        scale = bound * draw(st.sampled_from([1.0, 0.25, 1e-2]), label="scale")
        x = rng.uniform(-scale, scale, shape)
        x[np.abs(x) < MIN_MAGNITUDE] = 0.0
    else:
        pool = np.array(draw(st.lists(element_strategy, min_size=32, max_size=32), label="pool"), dtype=np.float64)
        x = rng.choice(pool, size=shape)
    zeros = draw(st.sampled_from([0.0, 0.01, 0.2]), label="fraction of zeros")
    if zeros:
        x[rng.random(shape) < zeros] = 0.0
    return x


def labels(shape: int | tuple[int, ...], num_classes: int) -> st.SearchStrategy[np.ndarray]:
    """Integer class indices in ``[0, num_classes)`` of ``shape`` (int64), shrinking towards class 0.

    Pass them as data: ``constants=`` holds their index.
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be at least 1, got {num_classes}")
    strategy = hnp.arrays(np.int64, shape, elements=st.integers(0, num_classes - 1))
    _ARRAY_STRATEGIES.add(strategy)
    return strategy


ElementSpec = st.SearchStrategy | Sequence[st.SearchStrategy | None] | None
"""``elements=``: one strategy for every input, or one per input (None: the default elements); an entry
may also draw the whole array (``arrays(...)``, ``labels(...)``)."""


def _input(shape: tuple[int, ...], bound: float, entry: st.SearchStrategy | None) -> st.SearchStrategy[np.ndarray]:
    if entry is not None and entry in _ARRAY_STRATEGIES:
        return entry
    return arrays(shape, bound, entry)


@functools.cache
def sides(max_side: int = 5) -> st.SearchStrategy[int]:
    """Side lengths from 1 to ``max_side`` (built once per ``max_side``: composites draw from it per example)."""
    return st.integers(min_value=1, max_value=max_side)


@functools.cache
def shapes(min_dims: int = 1, max_dims: int = 3, max_side: int = 5) -> st.SearchStrategy[tuple[int, ...]]:
    """Array shapes with every side at least 1 (empty inputs are an error, not a case); built once per bounds."""
    return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=1, max_side=max_side)


def input_tuples(shape_list: Sequence[tuple[int, ...]], bound: float = DEFAULT_BOUND,
                 element_strategy: ElementSpec = None) -> st.SearchStrategy[tuple[Any, ...]]:
    """A tuple of arrays with the given fixed shapes; ``element_strategy`` is one strategy or one per input."""
    if isinstance(element_strategy, Sequence):
        if len(element_strategy) != len(shape_list):
            raise ValueError(f"elements= has {len(element_strategy)} entries for {len(shape_list)} inputs")
        entries = list(element_strategy)
    else:
        entries = [element_strategy] * len(shape_list)
    return st.tuples(*(_input(tuple(s), bound, e) for s, e in zip(shape_list, entries, strict=True)))


@st.composite
def same_shape(draw: st.DrawFn, count: int, min_dims: int = 0, max_dims: int = 3) -> tuple[np.ndarray, ...]:
    """``count`` arrays sharing one drawn shape (0-d included by default)."""
    shape = draw(shapes(min_dims, max_dims))
    return tuple(draw(arrays(shape)) for _ in range(count))


@st.composite
def linear_inputs(draw: st.DrawFn, batch_dims: int = 1, bias: bool = True) -> tuple[np.ndarray, ...]:
    """``(x, weight[, bias], grad_out)`` for a linear layer with ``batch_dims`` leading dimensions."""
    batch = tuple(draw(sides()) for _ in range(batch_dims))
    n_in, n_out = draw(sides(6)), draw(sides(6))
    parts = [draw(arrays((*batch, n_in))), draw(arrays((n_out, n_in)))]
    if bias:
        parts.append(draw(arrays((n_out,))))
    parts.append(draw(arrays((*batch, n_out))))
    return tuple(parts)


@st.composite
def regression_inputs(draw: st.DrawFn) -> tuple[np.ndarray, ...]:
    """``(w, b, x, y)`` for ``y = x @ w + b`` with ``w`` of shape ``(d,)`` and a scalar ``b``."""
    n, d = draw(sides(8)), draw(sides(4))
    return draw(arrays((d,))), draw(arrays(())), draw(arrays((n, d))), draw(arrays((n,)))


@st.composite
def sigmoid_mse_inputs(draw: st.DrawFn) -> tuple[np.ndarray, ...]:
    """``(weight, x, y)`` for Linear(no bias) -> sigmoid -> MSE; ``x`` is 1-D or a batch."""
    batch = draw(st.sampled_from([(), (draw(sides()),)]))
    n_in, n_out = draw(sides(6)), draw(sides(6))
    return (draw(arrays((n_out, n_in), bound=2.0)), draw(arrays((*batch, n_in), bound=2.0)),
            draw(arrays((*batch, n_out), bound=1.0)))
