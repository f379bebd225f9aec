"""``verify``: the property-based front end of check_gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import gradcheck_lab as gl
from gradcheck_lab.core.devices import resolve_device
from gradcheck_lab.gradients.strategies import input_tuples


def cube(x, w):
    return np.sum(w * x**3), (3 * w * x**2, x**3)


def torch_cube(x, w):
    return (w * x**3).sum()


def test_verify_reports_every_device_and_dtype(device):
    result = gl.verify(cube, torch_cube, shapes=[(3, 2), (3, 2)], devices=[device],
                       dtypes=("float64", "float32", "bfloat16"), max_examples=15, seed=0)
    assert result.passed
    assert [(s.device, s.dtype) for s in result.summaries] == [
        (str(resolve_device(device)), d) for d in ("float64", "float32", "bfloat16")]
    assert all(s.examples >= 1 and 0 <= s.ratio <= 1 for s in result.summaries)


def test_verify_takes_a_custom_input_strategy_and_finite_differences():
    result = gl.verify(cube, torch_cube, inputs=input_tuples([(4,), (4,)], bound=10.0), max_examples=10,
                       finite_differences=True, seed=1)
    assert result.summaries[0].examples >= 1


def test_verify_finds_a_bug_and_attaches_the_counterexample():
    def wrong_for_negative_w(x, w):
        value, (gx, gw) = cube(x, w)
        return value, (np.where(w < 0, -gx, gx), gw)

    with pytest.raises(gl.GradientMismatch) as info:
        gl.verify(wrong_for_negative_w, torch_cube, shapes=[(2,), (2,)], max_examples=100, seed=0)
    _, w = info.value.inputs
    assert (np.asarray(w) < 0).any()


def test_verify_needs_shapes_or_inputs():
    with pytest.raises(gl.InvalidInputError, match="shapes"):
        gl.verify(cube, torch_cube)


def test_verify_passes_other_typed_errors_through():
    with pytest.raises(gl.TorchFunctionError):
        gl.verify(cube, lambda x, w: x**3 * w, shapes=[(2,), (2,)], max_examples=5)


def test_verify_accepts_torch_dtypes_and_a_single_dtype():
    result = gl.verify(cube, torch_cube, shapes=[(2,), (2,)], dtypes=torch.float32, max_examples=3)
    assert result.summaries[0].dtype == "float32"


def test_a_domain_restricted_function_needs_and_accepts_an_element_strategy():
    from hypothesis import strategies as st

    def log_sum(x):
        return np.sum(np.log(x)), (1 / x,)

    with np.errstate(divide="ignore", invalid="ignore"):
        with pytest.raises(gl.NonFiniteError, match="elements="):
            gl.verify(log_sum, lambda t: t.log().sum(), shapes=[(3,)], max_examples=30, seed=0)
    result = gl.verify(log_sum, lambda t: t.log().sum(), shapes=[(3,)], elements=st.floats(0.1, 4.0),
                       dtypes=("float64", "float32"), max_examples=30, seed=0)
    assert all(s.examples > 0 for s in result.summaries)


def test_a_python_number_is_one_input():
    report = gl.check_gradients(lambda x: (x**2, (2 * x,)), lambda t: t**2, 3.0)
    assert report.passed and report.gradients["x"].max_abs_error == 0


def test_inconclusive_inputs_are_counted_apart_and_warned_once():
    """An input whose disagreement float64 rounding explains is not evidence: counted, warned about once."""
    from hypothesis import strategies as st

    def reordered_sum(x):  # (x0 + x2) + x1: exact for these inputs; torch's order rounds 1e-3 against 1e8
        s = (x[0] + x[2]) + x[1]
        return s**2, (np.full_like(x, 2 * s),)

    cancelling = st.floats(1e-4, 1e-2).map(lambda a: (np.array([1e8, a, -1e8]),))
    with pytest.warns(gl.InconclusiveWarning, match="not counted as evidence") as caught:
        result = gl.verify(reordered_sum, lambda t: t.sum() ** 2, inputs=cancelling, max_examples=10, seed=0)
    summary = result.summaries[0]
    assert summary.inconclusive > 0
    assert summary.examples + summary.inconclusive >= 10
    assert sum(issubclass(w.category, gl.InconclusiveWarning) for w in caught) == 1


def test_verify_draws_256_by_256_inputs_cheaply_and_still_finds_a_one_element_bug():
    def gram(w, x):
        out = x @ w.T
        return 0.5 * np.sum(out**2), (out.T @ x, out @ w)

    def gram_one_off(w, x):
        value, (gw, gx) = gram(w, x)
        gw = gw.copy()
        gw[3, 5] *= 1.001
        return value, (gw, gx)

    def torch_gram(w, x):
        return 0.5 * ((x @ w.T) ** 2).sum()

    shapes = [(256, 256), (16, 256)]
    result = gl.verify(gram, torch_gram, shapes=shapes, dtypes=("float64", "bfloat16"), max_examples=5, seed=0)
    assert all(s.examples + s.inconclusive == 5 for s in result.summaries)
    with pytest.raises(gl.GradientMismatch, match="'w'"):
        gl.verify(gram_one_off, torch_gram, shapes=shapes, dtypes="bfloat16", max_examples=5, seed=0)
