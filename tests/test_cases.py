"""Every registered case, property-based, on every device and dtype the plugin gives, against autograd and FD."""

from __future__ import annotations

import warnings

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import gradcheck_lab as gl

CASE_NAMES = sorted(gl.CASES)


@pytest.mark.parametrize("name", CASE_NAMES)
@given(data=st.data())
def test_case_agrees_with_autograd_and_finite_differences(name, device, dtype, dtype_name, data):
    case = gl.CASES[name]
    if dtype_name not in case.dtypes:
        pytest.skip(f"{name} does not support {dtype_name}")
    inputs = data.draw(case.inputs, label="inputs")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", gl.InconclusiveWarning)
        report = gl.check_case(case, inputs, device=device, dtype=dtype, finite_differences=True)
    assume(report.verdict != "inconclusive")  # such an input is no evidence either way (DESIGN.md, verdicts)
    assert report.passed
    assert report.oracle is not None and report.oracle.disagreeing == []
    assert report.ratio <= 1.0


def test_registry_holds_the_issue_cases():
    expected = {"sigmoid", "mse_mean", "mse_sum", "linear_bias_2d", "linear_nobias_2d", "linear_bias_3d",
                "linear_nobias_3d", "linear_regression", "sigmoid_mse", "mean_of_squares",
                "sum_of_two_squares", "square_plus_twice", "residual_chain",
                "tanh", "relu", "leaky_relu", "gelu", "gelu_tanh", "softmax", "softmax_dim0", "log_softmax",
                "logsumexp", "cross_entropy_index_mean", "cross_entropy_index_sum_smoothed",
                "cross_entropy_probs_none", "bce_with_logits", "bce_with_logits_pos_weight", "embedding",
                "mlp_classifier"}
    assert expected <= set(gl.CASES)


def test_registering_a_duplicate_name_is_an_error():
    with pytest.raises(ValueError, match="already registered"):
        gl.register(gl.CASES["sigmoid"])


def test_check_case_accepts_a_name_and_reports_unknown_names():
    import numpy as np

    report = gl.check_case("mean_of_squares", (np.array([1.0, -2.0]),))
    assert report.passed
    with pytest.raises(KeyError, match="no case named"):
        gl.check_case("no_such_case", (np.array([1.0]),))
