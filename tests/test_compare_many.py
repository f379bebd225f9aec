"""compare_many: the comparisons of many pairs in one pass are compare()'s, field for field, on any input."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from gradcheck_lab.core.comparison import compare, compare_many, largest_finite_magnitudes, unravel
from gradcheck_lab.core.tolerances import Tolerance

TOLERANCES = [Tolerance(rtol=1e-5, atol=1e-12, ntol=1e-6), Tolerance(rtol=1e-12, atol=0.0, ntol=1e-12, gtol=1e-12),
              Tolerance(rtol=0.0, atol=0.0, ntol=0.0)]

values = st.one_of(st.floats(-1e4, 1e4), st.sampled_from([0.0, -0.0, 1e-8, -1e-300, 1e300]),
                   st.floats(allow_nan=True, allow_infinity=True))


@st.composite
def pair(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=2, min_side=0, max_side=4))
    expected = draw(hnp.arrays(np.float64, shape, elements=values))
    how = draw(st.sampled_from(["same", "nudged", "drawn"]))
    if how == "same":
        actual = expected.copy()
    elif how == "nudged":
        with np.errstate(all="ignore"):
            actual = expected * (1 + draw(st.sampled_from([1e-14, 1e-7, 1e-3, -0.5])))
    else:
        actual = draw(hnp.arrays(np.float64, shape, elements=values))
    return expected, actual


def same(a: object, b: object) -> bool:
    """Equal, NaN equal to NaN (a Comparison's floats may be NaN where a side is)."""
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return a == b


@settings(max_examples=300, deadline=None)
@given(st.lists(pair(), min_size=0, max_size=6), st.sampled_from(TOLERANCES),
       st.lists(st.sampled_from([0.0, 1e-3, 1.0, 1e4]), min_size=6, max_size=6))
def test_compare_many_is_compare_of_each_pair(pairs, tol, scales):
    got = compare_many(pairs, tol, global_scales=scales[:len(pairs)])
    want = [compare(e, a, tol, global_scale=g) for (e, a), g in zip(pairs, scales, strict=False)]
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        for field in dataclasses.fields(w):
            assert same(getattr(g, field.name), getattr(w, field.name)), (field.name, g, w)
    # the lists a trajectory reads at every step, without building a Comparison, are the same fields
    for listed, name in ((got.ratios, "ratio"), (got.max_abs_errors, "max_abs_error"),
                         (got.max_rel_errors, "max_rel_error"), (got.passed, "passed")):
        assert all(same(v, getattr(w, name)) for v, w in zip(listed, want, strict=True)), name


def test_compare_many_finds_the_one_bad_element_among_many_tensors():
    rng = np.random.default_rng(0)
    pairs = [(x, x.copy()) for x in (rng.standard_normal(s) for s in [(3, 4), (), (7,), (2, 2, 2)])]
    pairs[2][1][5] += 1e-3
    tol = TOLERANCES[0]
    got = compare_many(pairs, tol)
    assert [c.passed for c in got] == [True, True, False, True]
    assert got[2].index == (5,) and got[2].failing == 1 and got[2].ratio > 1


def test_compare_many_refuses_mismatched_shapes_and_scales():
    with pytest.raises(ValueError, match="shapes"):
        compare_many([(np.zeros(2), np.zeros(3)), (np.zeros(1), np.zeros(1))], TOLERANCES[0])
    with pytest.raises(ValueError, match="global scales"):
        compare_many([(np.zeros(2), np.zeros(2))], TOLERANCES[0], global_scales=[1.0, 2.0])


@given(st.lists(hnp.arrays(np.float64, hnp.array_shapes(min_dims=0, max_dims=2, min_side=0, max_side=3),
                           elements=values), max_size=5))
def test_largest_finite_magnitudes_reads_each_array_alone(arrays):
    want = [float(np.max(np.abs(np.where(np.isfinite(x), x, 0.0)), initial=0.0)) for x in arrays]
    assert largest_finite_magnitudes(arrays) == want


def test_compare_many_of_large_tensors_is_still_compare():
    rng = np.random.default_rng(1)
    pairs = [(x, x + rng.standard_normal(x.shape) * 1e-9) for x in (rng.standard_normal(s) for s in [(70, 70), (50,)])]
    tol = TOLERANCES[0]
    assert list(compare_many(pairs, tol)) == [compare(e, a, tol) for e, a in pairs]
    assert largest_finite_magnitudes([e for e, _ in pairs]) == [float(np.abs(e).max()) for e, _ in pairs]


@given(st.data())
def test_unravel_is_numpys_unravel_index(data: st.DataObject) -> None:
    """The comparison's worst element is located by unravel: the index NumPy gives, for any shape and offset."""
    shape = data.draw(hnp.array_shapes(min_dims=0, max_dims=5, min_side=1, max_side=7))
    flat = data.draw(st.integers(0, math.prod(shape) - 1))
    assert unravel(flat, shape) == tuple(int(i) for i in np.unravel_index(flat, shape))
