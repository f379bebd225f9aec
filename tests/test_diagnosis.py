"""Diagnosis: every kind has a planted bug that must produce it, in the report and in the message."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import gradcheck_lab as gl
from gradcheck_lab.core.diagnosis import diagnose

rng = np.random.default_rng(5)
X, W, B = rng.standard_normal((8, 3)), rng.standard_normal((3, 5)), rng.standard_normal(5)


def affine_tanh(x, w, b):
    """sum(tanh(x @ w + b)): d/dz = 1 - tanh(z)**2, then the affine chain rule."""
    y = np.tanh(x @ w + b)
    dz = 1 - y**2
    return y.sum(), (dz @ w.T, x.T @ dz, dz.sum(axis=0))


def torch_affine_tanh(x, w, b):
    return torch.tanh(x @ w + b).sum()


def planted(change):
    def reference(x, w, b):
        value, grads = affine_tanh(x, w, b)
        return value, change(list(grads), x, w, b)

    return reference


def _diagnosis(reference, inputs=(X, W, B), torch_fn=torch_affine_tanh, dtype="float64"):
    with pytest.raises(gl.GradientMismatch) as exc:
        gl.check_gradients(reference, torch_fn, inputs, dtype=dtype)
    assert exc.value.report.diagnosis and f"diagnosis: {exc.value.report.diagnosis}" in str(exc.value)
    return exc.value.report.diagnosis


def _set(k, value):
    def change(grads, *_):
        grads[k] = value(grads[k])
        return grads

    return change


@pytest.mark.parametrize(("change", "expected"), [
    (_set(1, lambda g: 2 * g), "'w' (input 1): 2 times torch's: a term counted twice"),
    (_set(1, lambda g: g / 2), "'w' (input 1): 0.5 times torch's: a term counted half"),
    (_set(0, lambda g: -g), "'x' (input 0): the sign is flipped"),
    (_set(1, lambda g: g / 8), "'w' (input 1): 0.125 times torch's: averaged over axis 0 of 'x' (input 0) (8) "
                               "instead of summed?"),
    (_set(2, lambda g: g * 8), "'b' (input 2): 8 times torch's: summed over axis 0 of 'x' (input 0) (8) instead "
                               "of averaged?"),
    (_set(0, lambda g: g / 24), "divided by the size of 'x' (input 0) (24) once too often?"),
    (_set(0, np.zeros_like), "'x' (input 0): all zeros where torch's is not"),
    (_set(2, lambda g: g * 1.37), "'b' (input 2): 1.37 times torch's"),
    (_set(0, lambda g: np.concatenate([np.zeros_like(g[:1]), g[:-1]])),
     "'x' (input 0): torch's shifted by +1 along axis 0 (where they overlap): an off-by-one"),
])
def test_each_kind_of_planted_bug_gets_its_diagnosis(change, expected, dtype):
    assert expected in _diagnosis(planted(change), dtype=dtype)


def _forward(change):
    """affine_tanh with its value (the forward) changed and its gradients right."""
    def reference(x, w, b):
        value, grads = affine_tanh(x, w, b)
        return change(value), grads

    return reference


@pytest.mark.parametrize(("change", "expected"), [
    (lambda v: v / 8, "the value (forward): 0.125 times torch's: averaged over axis 0 of 'x' (input 0) (8) instead "
                      "of summed?, and every gradient agrees"),
    (lambda v: 2 * v, "the value (forward): 2 times torch's: a factor 2 too many"),
    (lambda v: -v, "the value (forward): the sign is flipped"),
    (lambda v: v + 0.25, "the value (forward): every gradient agrees, so the forward computes a different function"),
])
def test_a_wrong_forward_is_diagnosed_as_the_value_with_right_gradients(change, expected, dtype):
    assert expected in _diagnosis(_forward(change), dtype=dtype)


def test_a_value_and_gradients_off_by_the_same_factor_name_both():
    def summed(x, w, b):  # the loss summed over the batch where torch averages: value and gradients 8x
        value, grads = affine_tanh(x, w, b)
        return value, grads

    text = _diagnosis(summed, torch_fn=lambda x, w, b: torch_affine_tanh(x, w, b) / 8)
    assert text.startswith("the value (forward): 8 times torch's: summed over axis 0 of 'x' (input 0) (8)")
    assert "every gradient agrees" not in text and "the gradient of 'w' (input 1): 8 times torch's" in text


def test_transposed_and_axes_permuted():
    def square(w, v):
        return np.sum(np.sin(w) * v), (np.cos(w).T * v.T, np.sin(w))

    w, v = rng.standard_normal((4, 4)), rng.standard_normal((4, 4))
    assert "'w' (input 0): transposed" in _diagnosis(square, (w, v), lambda w, v: (torch.sin(w) * v).sum())

    def cube(t):
        return np.sum(t**3), (np.transpose(3 * t**2, (0, 2, 1)),)

    t = rng.standard_normal((2, 3, 3))
    assert "axes permuted as (0, 2, 1)" in _diagnosis(cube, (t,), lambda t: (t**3).sum())


def test_a_flipped_kernel_and_an_uncropped_padding_are_named():
    from gradcheck_lab.reference import conv

    x, w = rng.standard_normal((2, 3, 6, 6)), rng.standard_normal((4, 3, 3, 3))

    def backward(grad_out, x, w):
        grad_x, grad_w, _ = conv.conv2d_backward(grad_out, x, w, has_bias=False, padding=1)
        return grad_x, grad_w[:, :, ::-1, ::-1]  # the weight gradient as a convolution

    with pytest.raises(gl.GradientMismatch) as exc:
        gl.check_vjp(lambda x, w: conv.conv2d(x, w, padding=1), backward,
                     lambda x, w: torch.nn.functional.conv2d(x, w, padding=1), (x, w))
    assert "the gradient of 'w' (input 1): reversed along axes (2, 3): a convolution where torch computes a " \
           "correlation" in exc.value.report.diagnosis

    def uncropped(grad_out, x, w):  # the input gradient read from the padded grid's corner, not its middle
        grad_x, grad_w, _ = conv.conv2d_backward(grad_out, x, w, has_bias=False, padding=1)
        padded = np.pad(grad_x, ((0, 0), (0, 0), (1, 1), (1, 1)))
        return padded[:, :, :6, :6], grad_w

    with pytest.raises(gl.GradientMismatch) as exc:
        gl.check_vjp(lambda x, w: conv.conv2d(x, w, padding=1), uncropped,
                     lambda x, w: torch.nn.functional.conv2d(x, w, padding=1), (x, w))
    assert "the gradient of 'x' (input 0): torch's shifted by +1 along axes (2, 3)" in exc.value.report.diagnosis


def test_swapped_gradients():
    def product(a, b):
        return np.sum(a * b), (a, b)  # d/da = b and d/db = a, returned the other way round

    a, b = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    text = _diagnosis(product, (a, b), lambda a, b: (a * b).sum())
    assert "'a' (input 0): it equals torch's gradient of 'b' (input 1): swapped" in text
    assert "'b' (input 1): it equals torch's gradient of 'a' (input 0)" in text


def test_only_some_elements_wrong_with_count_and_fraction():
    def last_column_dropped(grads, *_):
        grads[1] = grads[1].copy()
        grads[1][:, -1] = 0.0
        return grads

    text = _diagnosis(planted(last_column_dropped))
    assert ("'w' (input 1): only 3 of 15 elements (20%) are wrong, at [0, 4], [1, 4], [2, 4] (exactly indices [4] of "
            "axis 1, whatever the other axes)") in text
    assert "(the reference has 0 at every one of them)" in text


def test_float32_reference_and_mutation_are_diagnosed():
    def in_float32_and_doubled(x, w, b):
        value, grads = affine_tanh(x.astype(np.float32), w.astype(np.float32), b.astype(np.float32))
        return value, (grads[0], 2 * grads[1], grads[2])

    with pytest.raises(gl.GradientMismatch) as exc:
        gl.check_gradients(in_float32_and_doubled, torch_affine_tanh, (X, W, B))
    text = exc.value.report.diagnosis
    assert "in a precision below float64" in text and "'w' (input 1): 2 times torch's" in text

    def mutates_and_doubles(x, w, b):
        value, grads = affine_tanh(x, w, b)
        x *= 0  # corrupts the caller's array in place
        return value, (grads[0], 2 * grads[1], grads[2])

    with pytest.raises(gl.GradientMismatch) as exc, pytest.warns(gl.ReferenceMutationWarning):
        gl.check_gradients(mutates_and_doubles, torch_affine_tanh, (X, W, B))
    text = exc.value.report.diagnosis
    assert "modifies its input(s) 'x' (input 0) in place" in text and "2 times torch's" in text


def test_no_diagnosis_when_nothing_fits_and_none_on_a_pass():
    def wrong_derivative(x, w, b):  # 1 - y instead of 1 - y**2: no simple pattern
        y = np.tanh(x @ w + b)
        dz = 1 - y
        return y.sum(), (dz @ w.T, x.T @ dz, dz.sum(axis=0))

    with pytest.raises(gl.GradientMismatch) as exc:
        gl.check_gradients(wrong_derivative, torch_affine_tanh, (X, W, B))
    assert exc.value.report.diagnosis is None and "diagnosis:" not in str(exc.value)
    assert gl.check_gradients(affine_tanh, torch_affine_tanh, (X, W, B)).diagnosis is None


@settings(max_examples=30, deadline=None, database=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from([-1.0, 0.5, 2.0, 1 / 6, 6.0, 1.37]))
def test_diagnose_finds_any_planted_factor_and_nothing_in_noise(seed, factor):
    r = np.random.default_rng(seed)
    t = r.standard_normal((6, 4))
    wrong = np.ones(t.shape, bool)
    shapes = [("x", (6, 4))]
    text = diagnose([factor * t], [t], ["x"], [wrong], shapes)
    assert text is not None and ("sign is flipped" in text if factor == -1 else f"{factor:.6g} times" in text)
    noisy = t + 1e-3 * np.abs(t).max() * r.standard_normal(t.shape)
    assert diagnose([noisy], [t], ["x"], [wrong], shapes) is None


def test_a_factor_of_two_axes_is_named_as_averaging_over_both():
    t = rng.standard_normal(5)
    text = diagnose([t / 12], [t], ["h"], [np.ones(5, bool)], [("h", (5,)), ("x", (3, 4, 5))])
    assert text == "the gradient of h: 0.0833333 times torch's: averaged over axes (0, 1) of x (3*4) instead of summed?"


def huber(pred, target, delta=1.0):
    """Huber loss (mean); d/dpred = clip(pred - target, -delta, delta) / N and d/dtarget = -d/dpred."""
    d = pred - target
    grad = np.clip(d, -delta, delta) / d.size
    value = np.where(np.abs(d) <= delta, 0.5 * d**2, delta * (np.abs(d) - 0.5 * delta)).mean()
    return value, (grad, -grad)


def test_a_missing_sign_is_named_a_sign_not_a_swap():
    pred, target = rng.standard_normal((6, 4)) * 2, rng.standard_normal((6, 4))

    def target_not_negated(pred, target):
        value, (grad, _) = huber(pred, target)
        return value, (grad, grad)  # d/dtarget returned without its minus sign

    text = _diagnosis(target_not_negated, (pred, target), torch.nn.functional.huber_loss)
    assert "'target' (input 1): the sign is flipped" in text and "swapped" not in text
    assert gl.check_gradients(huber, torch.nn.functional.huber_loss, (pred, target)).passed


def test_only_k_of_n_is_not_said_when_nearly_every_element_is_wrong():
    def all_but_one_column_doubled(grads, *_):
        grads[0] = grads[0].copy()
        grads[0][:, :-1] *= 1 + np.arange(2)  # 8 of 24 elements of x right, the rest off
        grads[1] = grads[1] * np.where(np.arange(15).reshape(3, 5) == 0, 1.0, 1.5)  # 14 of 15 of w wrong
        return grads

    text = _diagnosis(planted(all_but_one_column_doubled))
    assert "'w' (input 1): only" not in text
    assert "'x' (input 0): only 8 of 24 elements" in text  # a third wrong: still a pattern worth naming


def bce(p, y):
    """Binary cross-entropy (mean) of probabilities: d/dp = (p - y) / (p (1 - p)) / N, unclamped (NaN where
    the harness's moves take p out of (0, 1), which it reads as a point it cannot use)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        value = -(y * np.log(p) + (1 - y) * np.log1p(-p)).mean()
        return value, ((p - y) / (p * (1 - p)) / p.size,)


def test_where_torch_clamps_its_own_backward_torch_is_named_as_the_side_that_departs():
    """torch's binary_cross_entropy floors p(1 - p) at 1e-12 in its backward: at p = 7e-13 its gradient is
    about 1/1.45 of the derivative of its own value, which the reference gives."""
    p, y = np.array([0.3, 7e-13, 0.6, 0.9]), np.array([1.0, 1.0, 0.0, 1.0])
    with pytest.raises(gl.GradientMismatch) as exc:
        gl.check_gradients(bce, torch.nn.functional.binary_cross_entropy, (p, y), constants=(1,))
    text = exc.value.report.diagnosis
    assert text and "torch departs, not the reference" in text and "times torch's" not in text
    # A reference that is wrong at the same element is not excused: torch's value says so.
    def wrong(p, y):
        value, (grad,) = bce(p, y)
        return value, (grad * 1.45,)

    with pytest.raises(gl.GradientMismatch) as exc:
        gl.check_gradients(wrong, torch.nn.functional.binary_cross_entropy, (p, y), constants=(1,))
    assert "torch departs" not in (exc.value.report.diagnosis or "")
