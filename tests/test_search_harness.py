"""core/search.py: the one hypothesis harness (profile, seed only, bounded shrinking, the minimal failure)."""

from __future__ import annotations

import importlib
import math
import random
import sys
import textwrap
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.internal.conjecture.providers import HypothesisProvider
from hypothesis.internal.floats import float_to_int

from gradcheck_lab.core.search import SeedOnlyProvider, VerifyResult, run_search
from gradcheck_lab.errors import GradientMismatch, InvalidInputError
from gradcheck_lab.gradients.strategies import MIN_MAGNITUDE, arrays, shapes


def report(ratio: float = 0.1) -> SimpleNamespace:
    return SimpleNamespace(device="cpu", dtype="float64", verdict="passed", max_abs_error=ratio,
                           max_rel_error=ratio, ratio=ratio, tolerance=None)


def test_a_loaded_profile_sets_max_examples_unless_given():
    seen: list[float] = []
    settings.register_profile("front-seven", max_examples=7)
    previous = settings.get_current_profile_name()
    settings.load_profile("front-seven")
    try:
        result = run_search(lambda x: seen.append(x) or report(), st.floats(0, 1))
        assert len(seen) == 7 and isinstance(result, VerifyResult) and result.examples == 7
        seen.clear()
        run_search(lambda x: seen.append(x) or report(), st.floats(0, 1), max_examples=3)
        assert len(seen) == 3
    finally:
        settings.load_profile(previous)


def test_the_seed_alone_fixes_the_draws_whatever_modules_are_loaded(tmp_path, monkeypatch):
    def draws(seed: int) -> list[list[float]]:
        seen: list[list[float]] = []
        run_search(lambda x: seen.append(x) or report(), st.lists(st.floats(-4, 4), min_size=5, max_size=5),
                   max_examples=40, seed=seed)
        return seen

    before = draws(0)
    assert draws(0) == before and draws(1) != before
    # hypothesis reads constants from every local module loaded to seed its draws: load one with many
    constants = ", ".join(f"{k / 7 - 3:.15f}" for k in range(50))
    (tmp_path / "unrelated_edit_module.py").write_text(textwrap.dedent(f"VALUES = [{constants}]\n"))
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.import_module("unrelated_edit_module")
    try:
        assert draws(0) == before
    finally:
        sys.modules.pop("unrelated_edit_module", None)


def wrong_past_one(x: float) -> SimpleNamespace:
    if abs(x) > 1:
        raise GradientMismatch("the gradient of 'x' disagrees", inputs=(x,))
    return report()


def test_a_failure_is_shrunk_and_re_raised_with_its_minimal_example():
    with pytest.raises(GradientMismatch, match=r"minimal counterexample \(after shrinking\)") as exc:
        run_search(wrong_past_one, st.floats(-4, 4), max_examples=50, seed=0)
    assert str(exc.value).endswith(("input 0: 2.", "input 0: -2.")), "shrunk to the simplest value past 1"
    assert not getattr(exc.value, "__notes__", None), "hypothesis's own notes are dropped"


def test_shrinking_stops_within_budget_and_reports_the_best_so_far():
    max_examples = 10
    runs = []

    def expensive_to_shrink(xs: list[float]) -> SimpleNamespace:
        runs.append(1)
        if sum(abs(x) > 0.5 for x in xs) >= 6:
            raise GradientMismatch("wrong", inputs=tuple(xs))
        return report()

    strategy = st.lists(st.floats(-4, 4), min_size=20, max_size=20)
    with pytest.raises(GradientMismatch, match="shrinking stopped early") as exc:
        run_search(expensive_to_shrink, strategy, max_examples=max_examples, seed=0)
    assert len(runs) <= 3 * max_examples, "a failing search costs at most 3x the runs of a passing one"
    assert "wrong" in str(exc.value)
    runs.clear()
    with pytest.raises(GradientMismatch) as unbounded:
        run_search(expensive_to_shrink, strategy, max_examples=max_examples, seed=0, shrink_budget=1000)
    assert len(runs) > 3 * max_examples, "this failure needs more runs to shrink fully: the bound above is real"
    assert str(unbounded.value) != str(exc.value)


@pytest.mark.parametrize("bad", [0, -1, 2.5, "10", True])
def test_bad_max_examples_is_a_typed_error_naming_it(bad):
    with pytest.raises(InvalidInputError, match="max_examples"):
        run_search(lambda x: report(), st.floats(0, 1), max_examples=bad)


def test_the_worst_and_last_reports_are_kept():
    values = iter([0.5, 0.9, 0.2])
    result = run_search(lambda x: report(next(values)), st.integers(0, 1000), max_examples=3, seed=0)
    assert result.worst.ratio == 0.9 and result.report.ratio == 0.2
    assert result.summaries[0].ratio == 0.9 and result.summaries[0].examples == 3


@pytest.mark.parametrize("bounds", [(-4.0, 4.0), (0.0, 1.0), (-0.0, 0.0), (1e-300, 1e300), (-math.inf, math.inf)])
@pytest.mark.parametrize("allow_nan", [False, True])
def test_the_provider_draws_the_floats_hypothesis_draws(bounds, allow_nan):
    """SeedOnlyProvider.draw_float (its boundary values and clamper made once per constraints) returns what
    hypothesis's draw_float returns from the same random state, bit for bit (NaN and -0.0 included)."""
    constraints = {"min_value": bounds[0], "max_value": bounds[1], "allow_nan": allow_nan,
                   "smallest_nonzero_magnitude": 2.2250738585072014e-308}
    ours, theirs = SeedOnlyProvider(None), SeedOnlyProvider(None)
    ours._random, theirs._random = random.Random(7), random.Random(7)
    for _ in range(3000):
        mine = ours.draw_float(**constraints)
        assert float_to_int(mine) == float_to_int(HypothesisProvider.draw_float(theirs, **constraints))
        assert bounds[0] <= mine <= bounds[1] or (allow_nan and math.isnan(mine))


@given(st.data())
def test_drawn_arrays_hold_zeros_or_magnitudes_from_the_minimum_to_the_bound(data):
    """arrays(): elements drawn one by one, snapped to +0.0 below MIN_MAGNITUDE (as elements() snaps each value)."""
    shape = data.draw(shapes(min_dims=0, max_dims=3))
    bound = data.draw(st.sampled_from([1.0, 4.0, 50.0]))
    x = data.draw(arrays(shape, bound=bound))
    assert x.shape == shape and x.dtype == np.float64 and np.isfinite(x).all()
    assert (np.abs(x) <= bound).all()
    small = np.abs(x) < MIN_MAGNITUDE
    assert (x[small] == 0).all() and not np.signbit(x[small]).any()
