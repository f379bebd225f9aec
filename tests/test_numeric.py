"""The finite-difference oracle and the Taylor remainder test, on their own."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

import gradcheck_lab as gl
from gradcheck_lab.core import memory
from gradcheck_lab.core import oracle as numeric
from gradcheck_lab.gradients.strategies import arrays, shapes


def smooth(x, y):
    return float(np.sum(np.sin(x) * y + x**2 * np.cos(y)))


def smooth_grads(x, y):
    return [np.cos(x) * y + 2 * x * np.cos(y), np.sin(x) - x**2 * np.sin(y)]


@given(shape=shapes(max_dims=2), data=st.data())
def test_central_differences_match_the_analytic_directional_derivative(shape, data):
    x, y = data.draw(arrays(shape)), data.draw(arrays(shape))
    for v in numeric.random_directions([shape, shape], 2, seed=data.draw(st.integers(0, 100))):
        estimate = numeric.central_difference(smooth, [x, y], v)
        norm = float(sum(np.linalg.norm(g) for g in smooth_grads(x, y)))
        assert numeric.fd_agrees(numeric.dot(smooth_grads(x, y), v), estimate, norm)


@given(shape=shapes(max_dims=2), data=st.data())
def test_taylor_orders_tell_a_right_gradient_from_a_wrong_one(shape, data):
    x = data.draw(arrays(shape, bound=2.0))
    y = data.draw(arrays(shape, bound=2.0))
    (v,) = numeric.random_directions([shape, shape], 1, seed=3)
    right = numeric.taylor_test(smooth, [x, y], smooth_grads(x, y), v)
    assert right.passed
    wrong_grads = smooth_grads(x, y)
    wrong_grads[0] = wrong_grads[0] + 0.5 * np.sign(v[0])  # a wrong gradient visible along v
    wrong = numeric.taylor_test(smooth, [x, y], wrong_grads, v)
    assert not wrong.passed
    assert abs(wrong.order - 1) < 0.2


def test_a_linear_function_has_an_exact_remainder():
    x = np.array([1.0, 2.0, 3.0])
    (v,) = numeric.random_directions([(3,)], 1)
    result = numeric.taylor_test(lambda x: float(np.sum(3 * x)), [x], [np.full(3, 3.0)], v)
    assert result.exact and result.passed


def test_random_directions_are_unit_deterministic_and_cheap_at_size():
    shapes_ = [(2048, 2048), (7,)]
    first = numeric.random_directions(shapes_, 2, seed=5)
    again = numeric.random_directions(shapes_, 2, seed=5)
    for d, e in zip(first, again, strict=True):
        assert math.isclose(sum(float(np.sum(p**2)) for p in d), 1.0, rel_tol=1e-12)
        for p, q in zip(d, e, strict=True):
            np.testing.assert_array_equal(p, q)
    assert [p.shape for p in first[0]] == shapes_


def test_relative_directions_keep_tiny_elements_resolvable():
    x = [np.array([1e-81, 0.0, 5.0])]
    (v,) = numeric.random_directions([(3,)], 1)
    rel = numeric.relative_direction(v, x)
    np.testing.assert_allclose(np.abs(rel[0]), np.abs(v[0]) * np.array([1e-81, 1.0, 5.0]))


class SquareMissingTwo(torch.autograd.Function):
    """A custom backward with the same mistake as the reference below: the factor 2 is missing."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return (x**2).sum()

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * x


def test_a_mistake_shared_by_reference_and_custom_backward_is_caught_by_the_oracle():
    x = np.array([0.5, -1.5, 2.0])
    with pytest.raises(gl.GradientMismatch, match="both gradients may share a mistake") as info:
        gl.check_gradients(lambda x: (np.sum(x**2), (x,)), SquareMissingTwo.apply, (x,), finite_differences=True)
    votes = info.value.report.oracle
    assert votes.reference_vs_autograd and not votes.reference_vs_fd and not votes.autograd_vs_fd
    # Without the oracle the shared mistake is invisible: that is what the third vote is for.
    assert gl.check_gradients(lambda x: (np.sum(x**2), (x,)), SquareMissingTwo.apply, (x,)).passed


def test_a_wrong_torch_side_is_blamed_on_torch():
    class Wrong(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return (x**3).sum()

        @staticmethod
        def backward(ctx, grad):
            (x,) = ctx.saved_tensors
            return grad * 3 * x  # should be 3 x**2

    x = np.array([0.5, -1.5, 2.0])
    with pytest.raises(gl.GradientMismatch, match="the torch side is wrong"):
        gl.check_gradients(lambda x: (np.sum(x**3), (3 * x**2,)), Wrong.apply, (x,), finite_differences=True)


def test_relative_directions_equal_random_directions_scaled_by_the_inputs():
    x = [np.array([[1e-81, 0.0, -5.0], [2.0, 3e4, -1e-8]]), np.array([0.5, 0.0, 7.0, -1.0, 2.0]), np.array(-3.0)]
    directions, magnitude = numeric.relative_directions(x, 3, seed=7)
    for v, u in zip(directions, numeric.random_directions([a.shape for a in x], 3, seed=7), strict=True):
        for got, want, m in zip(v, numeric.relative_direction(u, x), magnitude, strict=True):
            np.testing.assert_array_equal(got, want)
            np.testing.assert_array_equal(np.abs(got), m)


@pytest.mark.parametrize("seed", range(12))
def test_the_oracle_abstains_where_its_steps_cross_relu_kinks_at_exact_zeros(seed):
    """relu(x) * g at x = 0 with g of both signs: the one-sided gaps along v cancel (9 of 20 seeds said
    "both gradients may share a mistake" for this right gradient); along v's entries of one sign they do not."""
    x, g = np.array([0.0, 0.0, 1.0, -2.0]), np.array([1.0, -1.0, 0.5, 2.0])
    report = gl.check_case("relu", (x, g), finite_differences=True, seed=seed)
    assert report.passed and report.oracle is not None and report.oracle.disagreeing == []

    class ReluMissingHalf(torch.autograd.Function):
        """relu with half its slope, in the reference and in torch alike: the oracle must still see it."""

        @staticmethod
        def forward(ctx, t):
            ctx.save_for_backward(t)
            return torch.relu(t)

        @staticmethod
        def backward(ctx, grad):
            (t,) = ctx.saved_tensors
            return grad * (t > 0) * 0.5

    def half(x, g):
        return np.sum(np.maximum(x, 0) * g), (0.5 * g * (x > 0),)

    y = np.array([0.5, -1.0, 2.0, 1.5])
    with pytest.raises(gl.GradientMismatch, match="share a mistake"):
        gl.check_gradients(half, lambda t, g: (ReluMissingHalf.apply(t) * g).sum(),
                           (y, np.array([1.0, -1.0, 0.5, 2.0])), constants=(1,), finite_differences=True, seed=seed)


def cross_entropy_missing_mean(z, y):
    """Softmax cross-entropy (mean over the batch) whose gradient forgets the 1/N."""
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    grad = p.copy()
    grad[np.arange(len(y)), y] -= 1
    return -np.log(p[np.arange(len(y)), y]).mean(), (grad,)


@pytest.mark.parametrize("n", [2, 3, 4])
def test_the_oracle_never_vouches_where_its_direction_cannot_tell_the_gradients_apart(n):
    """At all-zero logits with two classes every row of the gradient sums to 0: a direction moving a row's two
    zeros alike sees nothing, and finite differences "agreed with both" the reference and torch."""
    z, y = np.zeros((n, 2)), np.arange(n) % 2
    with pytest.raises(gl.GradientMismatch) as info:
        gl.check_gradients(cross_entropy_missing_mean, F.cross_entropy, (z, y), constants=(1,),
                           finite_differences=True)
    votes = info.value.report.oracle
    assert not (votes.reference_vs_fd and votes.autograd_vs_fd), votes.verdict()

    def right(z, y):
        value, (grad,) = cross_entropy_missing_mean(z, y)
        return value, (grad / len(y),)

    assert gl.check_gradients(right, F.cross_entropy, (z, y), constants=(1,), finite_differences=True).passed


def test_a_check_that_cannot_fit_in_free_memory_is_refused_before_any_work():
    calls = []

    def reference(x):
        calls.append(1)
        return np.sum(x**2), (2 * x,)

    x = np.ones(1000)
    with pytest.raises(gl.GradcheckError, match="GiB are free: check a smaller input, or pass finite_differences"):
        memory.require_memory((x,), oracle=True, available=8 * 1000 * 11)
    with pytest.raises(MemoryError):  # the typed error is a MemoryError too
        memory.require_memory((x,), oracle=False, available=8 * 1000 * 5)
    memory.require_memory((x,), oracle=False, available=8 * 1000 * 7)
    memory.require_memory((x,), oracle=True, available=8 * 1000 * 13)
    assert calls == []
    free = memory.available_memory()
    if free is not None:  # an input larger than the free memory: refused before the reference runs
        huge = np.lib.stride_tricks.as_strided(np.zeros(1), shape=(free // 8 + 1,), strides=(0,))
        with pytest.raises(gl.GradcheckError, match="free"):
            gl.check_gradients(reference, lambda t: (t**2).sum(), (huge,))
        assert calls == []


ORACLE_PEAK = """
import numpy as np
from gradcheck_lab.core import votes

def status(field):
    return int(open("/proc/self/status").read().split(field + ":")[1].split()[0]) * 1024

x = np.random.default_rng(0).standard_normal(2_000_000)
grads = [3 * x]  # a mistake both sides share: the confirmation and the staircase probe run too
magnitudes, condition = [np.abs(grads[0])], float(np.dot(np.abs(grads[0]), np.abs(x)))
with open("/proc/self/clear_refs", "w") as fh:
    fh.write("5")  # resets the peak (VmHWM) to the current resident size
rss = status("VmRSS")
result = votes.oracle_votes(lambda p: float(np.dot(p[0], p[0])), [x], [0], float(np.dot(x, x)), grads, magnitudes,
                             grads, lambda v, r: 0.0, reference_vs_autograd=True, condition=condition, count=3, seed=0)
assert result.shared_mistake, result
print((status("VmHWM") - rss) / x.nbytes)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_the_oracle_peak_extra_memory_stays_within_its_budget():
    """Three directions and a confirmed shared mistake on 2M float64 elements: at most ORACLE_MEMORY x the input
    (8.3x before the directions were streamed and the staircase probe worked in place)."""
    out = subprocess.run([sys.executable, "-c", ORACLE_PEAK], capture_output=True, text=True, check=True)
    assert float(out.stdout) <= memory.ORACLE_MEMORY, out.stdout


def test_the_oracle_confirms_along_zero_dimensional_inputs():
    """0-d inputs at 0 (a shrunk example of the case suite) reach the kink test of a confirmation."""
    report = gl.check_case("residual_chain", (np.array(0.0), np.array(0.0), np.array(0.0)), finite_differences=True)
    assert report.passed
    report = gl.check_case("linear_regression", (np.array([0.0]), np.array(0.0), np.array([[1.0]]), np.array([0.0])),
                           dtype="float32", finite_differences=True)
    assert report.passed
