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
