"""Kinks as people write them: endpoints, elements exactly on a kink, ties as a group, every element, rounding."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import gradcheck_lab as gl
from gradcheck_lab.core.kinks import examine_kinks

SELU_SCALE, SELU_ALPHA = 1.0507009873554805, 1.6732632423543772


def _with_zeros(seed: int, shape=(64, 64), scale=3.0, every=4):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) * scale
    x.flat[::every] = 0.0
    return x, rng.standard_normal(shape)


def leaky_relu_ge(x, g, slope=0.01):
    """LeakyReLU with its derivative written with ``x >= 0``: the right one-sided derivative at 0."""
    return np.sum(np.where(x > 0, x, slope * x) * g), (g * np.where(x >= 0, 1.0, slope),)


def selu_ge(x, g):
    out = SELU_SCALE * np.where(x > 0, x, SELU_ALPHA * np.expm1(x))
    return np.sum(out * g), (g * SELU_SCALE * np.where(x >= 0, 1.0, SELU_ALPHA * np.exp(x)),)


def leaky_relu_wrong_slope(x, g):
    return np.sum(np.where(x > 0, x, 0.01 * x) * g), (g * np.where(x >= 0, 1.0, 0.02),)


ENDPOINTS = {
    "leaky_relu": (leaky_relu_ge, lambda x, g: (F.leaky_relu(x, 0.01) * g).sum()),
    "selu": (selu_ge, lambda x, g: (F.selu(x) * g).sum()),
}


@pytest.mark.parametrize("name", sorted(ENDPOINTS))
@pytest.mark.parametrize("seed", range(4))
def test_a_reference_equal_to_one_sided_derivative_passes_on_every_kink_element(name, seed):
    """1024 elements exactly at 0 (far past the 64 the search used to examine), whatever the draw."""
    reference, torch_fn = ENDPOINTS[name]
    x, g = _with_zeros(seed)
    report = gl.check_gradients(reference, torch_fn, (x, g), constants=(1,), kinks="subgradient")
    assert report.passed
    with pytest.raises(gl.GradientMismatch, match="sits on a kink"):
        gl.check_gradients(reference, torch_fn, (x, g), constants=(1,))


def test_a_wrong_slope_on_the_kinked_side_is_still_reported_under_subgradient():
    x, g = _with_zeros(0)
    with pytest.raises(gl.GradientMismatch, match="disagrees"):
        gl.check_gradients(leaky_relu_wrong_slope, ENDPOINTS["leaky_relu"][1], (x, g), constants=(1,),
                           kinks="subgradient")


LAM = 0.1


def _l1_inputs():
    rng = np.random.default_rng(0)
    return np.zeros((8, 4)), rng.standard_normal((32, 8)), rng.standard_normal((32, 4))


def l1_regression(w, x, t, factor=1.0):
    """MSE + LAM |W|_1 with sign(0) = 0: a subgradient at W = 0."""
    r = x @ w - t
    return 0.5 * np.sum(r**2) / 32 + LAM * np.abs(w).sum(), (x.T @ r / 32 + factor * LAM * np.sign(w),)


def torch_l1_regression(w, x, t):
    return 0.5 * ((x @ w - t) ** 2).sum() / 32 + LAM * torch.where(w >= 0, w, -w).sum()  # abs'(0) = 1 here


def test_an_l1_penalty_exactly_on_its_kink_passes_while_other_inputs_are_nonzero():
    report = gl.check_gradients(l1_regression, torch_l1_regression, _l1_inputs(), constants=(1, 2),
                                kinks="subgradient")
    assert report.passed


def test_an_l1_penalty_with_a_wrong_subgradient_is_reported():
    def tripled(w, x, t):
        r = x @ w - t
        return 0.5 * np.sum(r**2) / 32 + LAM * np.abs(w).sum(), (x.T @ r / 32 + 3 * LAM * np.where(w >= 0, 1, -1),)

    with pytest.raises(gl.GradientMismatch, match="not between them"):
        gl.check_gradients(tripled, torch_l1_regression, _l1_inputs(), constants=(1, 2), kinks="subgradient")


def _pool_windows(x):
    n, c, h, w = x.shape
    return x.reshape(n, c, h // 2, 2, w // 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(n, c, h // 2, w // 2, 4)


def _from_windows(windows, shape):
    n, c, h, w = shape
    return windows.reshape(n, c, h // 2, w // 2, 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(shape)


def pool_last_of_ties(x, g):
    """2x2 max pool; the gradient goes to the last tied maximum (torch gives it to the first)."""
    windows = _pool_windows(x)
    last = 3 - np.argmax(windows[..., ::-1], axis=-1)
    grad = np.zeros_like(windows)
    np.put_along_axis(grad, last[..., None], g[..., None], axis=-1)
    return np.sum(windows.max(-1) * g), (_from_windows(grad, x.shape),)


def pool_every_tie(x, g):
    """The double-counting bug: every tied maximum receives the full gradient."""
    windows = _pool_windows(x)
    out = windows.max(-1)
    grad = np.where(windows == out[..., None], g[..., None], 0.0)
    return np.sum(out * g), (_from_windows(grad, x.shape),)


def torch_pool(x, g):
    return (F.max_pool2d(x, 2) * g).sum()


def _pool_inputs(seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 2, (2, 3, 8, 8)).astype(np.float64)  # 0s and 1s: a tie in most windows (96 windows)
    return x, rng.uniform(0.5, 1.5, (2, 3, 4, 4))


@pytest.mark.parametrize("seed", range(2))
def test_ties_are_judged_as_a_group(seed):
    inputs = _pool_inputs(seed)
    assert gl.check_gradients(pool_last_of_ties, torch_pool, inputs, constants=(1,), kinks="subgradient").passed
    with pytest.raises(gl.GradientMismatch, match="summed over the tie") as info:
        gl.check_gradients(pool_every_tie, torch_pool, inputs, constants=(1,), kinks="subgradient")
    assert "sits on a kink" in str(info.value)


def test_examine_kinks_mutates_nothing_and_returns_every_element_on_a_kink():
    x, g = _with_zeros(1, shape=(40, 30), every=3)  # 400 elements at 0
    inputs = [x, g]
    reference = leaky_relu_ge(x, g)[1][0]
    torch_grad = g * np.where(x > 0, 1.0, 0.01)

    def value_at(point):
        return float(np.sum(np.where(point[0] > 0, point[0], 0.01 * point[0]) * point[1]))

    disputed = reference != torch_grad
    copies = [x.copy(), g.copy(), reference.copy(), torch_grad.copy()]
    findings = examine_kinks(["value", "x"], [np.array(0.0), reference], [np.array(0.0), torch_grad],
                             [np.zeros(()), np.full(x.shape, 1e-12)], [np.zeros((), bool), disputed], value_at,
                             inputs, [0], value_at(inputs), subgradient=True)
    assert {f.index for f in findings} == {tuple(int(i) for i in idx) for idx in np.argwhere(disputed)}
    assert all(f.status == "accepted" for f in findings)
    for before, after in zip(copies, [x, g, reference, torch_grad], strict=True):
        np.testing.assert_array_equal(before, after)
    strict = examine_kinks(["value", "x"], [np.array(0.0), reference], [np.array(0.0), torch_grad],
                           [np.zeros(()), np.full(x.shape, 1e-12)], [np.zeros((), bool), disputed], value_at,
                           inputs, [0], value_at(inputs), subgradient=False)
    assert len(strict) == disputed.sum() and all(f.status == "rejected" for f in strict)


def cancelling_relu(x, w, g):
    """A ReLU layer whose pre-activation sums in another order than torch's (its last term last)."""
    z = (x[:, 0] * w[0] + x[:, 2] * w[2]) + x[:, 1] * w[1]
    dz = g * (z > 0)
    return np.sum(np.maximum(z, 0) * g), (np.outer(dz, w), x.T @ dz)


def torch_cancelling_relu(x, w, g):
    return (torch.relu((x[:, 0] * w[0] + x[:, 1] * w[1]) + x[:, 2] * w[2]) * g).sum()


def test_a_branch_flipped_by_rounding_next_to_a_kink_is_inconclusive():
    """x[0] cancels: NumPy's pre-activation is 2e-9 > 0, torch's rounds to exactly 0 (relu'(0) = 0)."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((6, 3))
    x[0] = [1e8, 2e-9, -2e8]
    w, g = np.array([0.5, 1.0, 0.25]), rng.standard_normal(6)
    with pytest.warns(gl.InconclusiveWarning, match="of the kink") as record:
        report = gl.check_gradients(cancelling_relu, torch_cancelling_relu, (x, w, g), constants=(2,))
    assert report.verdict == "inconclusive"
    assert "different branches by rounding" in str(record[0].message)
    # The same layer on inputs that do not cancel passes; one with a wrong derivative is still reported.
    x[0] = [1.0, 2.0, -3.0]
    assert gl.check_gradients(cancelling_relu, torch_cancelling_relu, (x, w, g), constants=(2,)).passed

    def doubled(x, w, g):
        value, (gx, gw) = cancelling_relu(x, w, g)
        return value, (2 * gx, gw)

    with warnings.catch_warnings():
        warnings.simplefilter("error", gl.InconclusiveWarning)
        with pytest.raises(gl.GradientMismatch, match="'x'"):
            gl.check_gradients(doubled, torch_cancelling_relu, (x, w, g), constants=(2,))
