"""Reports are keyed by plain parameter name; display labels are for messages (and old keys, deprecated)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import gradcheck_lab as gl

X, W = np.array([0.5, -1.0, 2.0]), np.array([1.5, 0.25, -3.0])


def product(x: np.ndarray, w: np.ndarray) -> tuple[float, tuple[np.ndarray, np.ndarray]]:
    """L = sum(x * w): dL/dx = w, dL/dw = x."""
    return float((x * w).sum()), (w, x)


def torch_product(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return (x * w).sum()


def test_gradients_are_keyed_by_plain_name_and_labelled_for_messages() -> None:
    report = gl.check_gradients(product, torch_product, (X, W))
    assert set(report.gradients) == {"x", "w"} and set(report.math) == {"value", "x", "w"}
    assert report.labels == {"x": "'x' (input 0)", "w": "'w' (input 1)"}
    assert report.worst_input in {"value", "x", "w"}
    assert report.to_dict()["gradients"].keys() == {"x", "w"}


def test_unnamed_inputs_are_input0_input1() -> None:
    report = gl.check_gradients(lambda *a: product(*a), torch_product, (X, W))
    assert set(report.gradients) == {"input0", "input1"}


def test_old_label_keys_and_field_names_still_resolve_with_a_deprecation_warning() -> None:
    report = gl.check_gradients(product, torch_product, (X, W))
    with pytest.deprecated_call():
        assert report.gradients["'x' (input 0)"] is report.gradients["x"]
    with pytest.deprecated_call():
        assert report.expected == report.reference_value
    with pytest.deprecated_call():
        assert report.actual == report.torch_value
    with pytest.raises(KeyError):
        report.gradients["nope"]


def test_the_message_names_the_input_by_its_label_the_report_by_its_name() -> None:
    with pytest.raises(gl.GradientMismatch, match=r"the gradient of 'w' \(input 1\) disagrees") as info:
        gl.check_gradients(lambda x, w: (product(x, w)[0], (w, 2 * x)), torch_product, (X, W))
    report = info.value.report
    assert report.worst_input == "w" and not report.math["w"].passed
    assert (report.reference_value, report.torch_value) == (report.math["w"].expected, report.math["w"].actual)


def test_second_order_reports_are_keyed_like_first_order_ones() -> None:
    """check_jvp's product is report.gradients["jvp"], check_hvp's and check_hessian's are under the input's
    name; the display labels of the last release still resolve, with a DeprecationWarning."""
    jvp = gl.check_jvp(lambda x: x**3, lambda t, x: 3 * x**2 * t[0], lambda x: x**3, (X,))
    assert set(jvp.gradients) == {"jvp"} and set(jvp.math) == {"value", "jvp"} and jvp.worst_input in jvp.math
    with pytest.deprecated_call():
        assert jvp.gradients["the JVP (d out along the tangents)"] is jvp.gradients["jvp"]
    hessian = gl.check_hessian(lambda x: np.diag(6 * x), lambda x: (x**3).sum(), (X,))
    assert set(hessian.gradients) == {"x"} and hessian.worst_input == "x"
    with pytest.deprecated_call():
        assert hessian.gradients["the Hessian of 'x' (input 0)"] is hessian.gradients["x"]
    hvp = gl.check_hvp(lambda v, x: (6 * x * v[0],), lambda x: (x**3).sum(), (X,))
    assert set(hvp.gradients) == {"x"}
    with pytest.raises(gl.GradientMismatch, match=r"the Hessian of 'x' \(input 0\) disagrees") as info:
        gl.check_hessian(lambda x: np.diag(6.1 * x), lambda x: (x**3).sum(), (X,))
    assert info.value.report.worst_input == "x"
