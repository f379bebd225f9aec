"""The harness must catch the gradient bugs tutorials ship with, and shrink input-dependent ones."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from gradcheck_lab.reference import activations, conv, embedding, linear, losses, models
from gradcheck_lab.reference import normalization as norm
from gradcheck_lab.reference.activations import sigmoid, sigmoid_backward

import gradcheck_lab as gl
from gradcheck_lab.core.comparison import compare
from gradcheck_lab.core.tolerances import gradient_tolerance
from gradcheck_lab.gradients.strategies import same_shape

rng = np.random.default_rng(7)


def mse_missing_factor_two(pred, target):
    grad = (pred - target) / pred.size
    return losses.mse(pred, target), (grad, -grad)


def regression_bias_summed_not_averaged(w, b, x, y):
    loss, (gw, _, gx, gy) = models.linear_regression(w, b, x, y)
    r = x @ w + b - y
    return loss, (gw, np.asarray(2 * r.sum()), gx, gy)


def sigmoid_mse_derivative_at_preactivation(weight, x, y):
    z = x @ weight.T
    p = sigmoid(z)
    gp = 2 * (p - y) / p.size
    gz = sigmoid_backward(gp, z)  # bug: the derivative taken at z, not at sigmoid(z)
    gx, gw, _ = linear.linear_backward(gz, x, weight, has_bias=False)
    return losses.mse(p, y), (gw, gx, -gp)


def linear_weight_gradient_transposed(x, weight, grad_out):
    out = linear.linear(x, weight)
    gx, gw, _ = linear.linear_backward(grad_out, x, weight, has_bias=False)
    return np.sum(out * grad_out), (gx, gw.T, out)


def residual_chain_skips_y(x, w, y):
    r = x * w - y
    return np.sum(r**2), (2 * r * w, 2 * r * x, np.zeros_like(y))


def mse_sign_flipped(pred, target):
    grad = losses.mse_backward(pred, target)
    return losses.mse(pred, target), (-grad, grad)


def mse_sum_instead_of_mean(pred, target):
    grad = losses.mse_backward(pred, target, reduction="sum")
    return losses.mse(pred, target), (grad, -grad)


def sigmoid_mse_missing_sigmoid_derivative(weight, x, y):
    p = sigmoid(x @ weight.T)
    gp = 2 * (p - y) / p.size
    gx, gw, _ = linear.linear_backward(gp, x, weight, has_bias=False)
    return losses.mse(p, y), (gw, gx, -gp)


def _mse_torch(p, t):
    return F.mse_loss(p, t)


PLANTED = {
    "mse missing factor 2": (mse_missing_factor_two, _mse_torch,
                             (rng.standard_normal((3, 4)), rng.standard_normal((3, 4))), "'pred'"),
    "bias summed not averaged": (regression_bias_summed_not_averaged, lambda w, b, x, y: F.mse_loss(x @ w + b, y),
                                 (rng.standard_normal(2), np.array(0.5), rng.standard_normal((6, 2)),
                                  rng.standard_normal(6)), "'b'"),
    "sigmoid derivative at pre-activation": (
        sigmoid_mse_derivative_at_preactivation, lambda W, x, y: F.mse_loss(torch.sigmoid(x @ W.T), y),
        (rng.standard_normal((3, 4)), rng.standard_normal((5, 4)), rng.uniform(0, 1, (5, 3))), "'weight'"),
    "weight gradient transposed": (linear_weight_gradient_transposed, lambda x, W, g: (F.linear(x, W) * g).sum(),
                                   (rng.standard_normal((5, 3)), rng.standard_normal((3, 3)),
                                    rng.standard_normal((5, 3))), "'weight'"),
    "gradient skips one input": (residual_chain_skips_y, lambda x, w, y: ((x * w - y) ** 2).sum(),
                                 (rng.standard_normal(4), rng.standard_normal(4), rng.standard_normal(4)), "'y'"),
    "sign flipped": (mse_sign_flipped, _mse_torch, (rng.standard_normal(5), rng.standard_normal(5)), "'pred'"),
    "sum instead of mean": (mse_sum_instead_of_mean, _mse_torch,
                            (rng.standard_normal(5), rng.standard_normal(5)), "'pred'"),
    "missing sigmoid derivative": (
        sigmoid_mse_missing_sigmoid_derivative, lambda W, x, y: F.mse_loss(torch.sigmoid(x @ W.T), y),
        (rng.standard_normal((2, 3)), rng.standard_normal((4, 3)), rng.uniform(0, 1, (4, 2))), "'weight'"),
}


# --- planted bugs in the activation, loss and embedding references ---

def softmax_jacobian_diagonal_only(x, grad_out):
    y = activations.softmax(x)
    return np.sum(y * grad_out), (grad_out * y * (1 - y), y)  # bug: drops the -y_i y_j off-diagonal terms


def softmax_max_subtracted_in_numerator_only(x, grad_out):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    y = e / np.exp(x).sum(axis=-1, keepdims=True)  # bug: the denominator is not shifted by the same max
    return np.sum(y * grad_out), (activations.softmax_backward(grad_out, y), y)


def cross_entropy_without_one_hot(logits, target):
    return losses.cross_entropy(logits, target), (activations.softmax(logits, axis=1) / len(target),)


def cross_entropy_summed_not_averaged(logits, target):
    return losses.cross_entropy(logits, target), (losses.cross_entropy_backward(logits, target, reduction="sum"),)


def embedding_gradient_overwritten(weight, indices, grad_out):
    out = embedding.embedding(indices, weight)
    grad = np.zeros_like(weight)
    grad[indices.reshape(-1)] = grad_out.reshape(-1, weight.shape[1])  # bug: a repeated row keeps the last one
    return np.sum(out * grad_out), (grad, out)


LOGITS = rng.standard_normal((5, 4)) * 2
LABELS = np.array([0, 3, 1, 1, 2])
INDICES = np.array([[1, 0, 1], [3, 1, 0]])
REFERENCE_PLANTED = {
    "softmax jacobian diagonal only": (softmax_jacobian_diagonal_only,
                                       lambda x, g: (F.softmax(x, -1) * g).sum(),
                                       (rng.standard_normal((3, 4)), rng.standard_normal((3, 4))), "'x'", ()),
    "softmax max subtracted in the numerator only": (
        softmax_max_subtracted_in_numerator_only, lambda x, g: (F.softmax(x, -1) * g).sum(),
        (rng.standard_normal((3, 4)) + 2, rng.standard_normal((3, 4))), "'x'", ()),
    "cross-entropy without the one-hot": (cross_entropy_without_one_hot, F.cross_entropy, (LOGITS, LABELS),
                                          "'logits'", (1,)),
    "cross-entropy summed not averaged": (cross_entropy_summed_not_averaged, F.cross_entropy, (LOGITS, LABELS),
                                          "'logits'", (1,)),
    "embedding gradient overwritten": (embedding_gradient_overwritten, lambda w, i, g: (F.embedding(i, w) * g).sum(),
                                       (rng.standard_normal((4, 3)), INDICES, rng.standard_normal((2, 3, 3))),
                                       "'weight'", (1,)),
}
HALF_DTYPES = ("float16", "bfloat16")


@pytest.mark.parametrize("dtype", [*HALF_DTYPES], ids=str)
@pytest.mark.parametrize("bug", sorted(REFERENCE_PLANTED))
def test_planted_reference_bug_is_reported_in_half_precision(bug, dtype):
    reference_fn, torch_fn, inputs, culprit, constants = REFERENCE_PLANTED[bug]
    with pytest.raises(gl.GradientMismatch) as info:
        gl.check_gradients(reference_fn, torch_fn, inputs, dtype=dtype, constants=constants, finite_differences=True)
    assert culprit in str(info.value)
    assert "the reference gradient is wrong" in str(info.value)


def log_softmax_cross_entropy_max_over_whole_array(logits, target):
    shifted = logits - logits.max()  # bug: one max for the array, not one per row
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    n = len(target)
    grad = np.exp(log_p)
    grad[np.arange(n), target] -= 1
    return -log_p[np.arange(n), target].mean(), (grad / n,)


def bce_with_logits_through_log_sigmoid(logits, target):
    p = 1 / (1 + np.exp(-logits))  # bug: log(p) and log(1 - p) saturate to -inf at large |logits|
    loss = -np.mean(target * np.log(p) + (1 - target) * np.log(1 - p))
    grad_p = -(target / p - (1 - target) / (1 - p)) / p.size
    return loss, (grad_p * p * (1 - p),)


# Subtracting any per-row constant leaves the softmax unchanged, so a whole-array max is only wrong where it
# underflows: a row far below the array's maximum becomes exp(-inf) / 0. Both bugs show as non-finite values.
WIDE_LOGITS = np.stack([rng.standard_normal(4) + 1000, rng.standard_normal(4) - 1000, rng.standard_normal(4)])
HUGE_LOGITS = np.array([[1e4, -1e4, 50.0], [-50.0, 3.0, -1e4]])
NONFINITE_PLANTED = {
    "softmax max over the whole array": (log_softmax_cross_entropy_max_over_whole_array, F.cross_entropy,
                                         (WIDE_LOGITS, np.array([0, 1, 2]))),
    "bce with logits as log(sigmoid)": (bce_with_logits_through_log_sigmoid, F.binary_cross_entropy_with_logits,
                                        (HUGE_LOGITS, rng.uniform(0, 1, HUGE_LOGITS.shape))),
}


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("dtype", ["float64", "float32", *HALF_DTYPES], ids=str)
@pytest.mark.parametrize("bug", sorted(NONFINITE_PLANTED))
def test_planted_overflow_bug_is_reported_as_non_finite(bug, dtype):
    reference_fn, torch_fn, inputs = NONFINITE_PLANTED[bug]
    with pytest.raises(gl.NonFiniteError, match="the reference"):
        gl.check_gradients(reference_fn, torch_fn, inputs, dtype=dtype, constants=(1,))
    # torch stays finite there, and so does the fixed reference in the registry
    case = gl.CASES["cross_entropy_index_mean" if "softmax" in bug else "bce_with_logits"]
    assert gl.check_case(case, inputs, dtype=dtype).passed

# --- normalization, convolution and pooling planted bugs ---

def layer_norm_without_mean_terms(x, w, b, g):
    """rstd * g_hat only: the mean and the variance treated as constants."""
    out = norm.layer_norm(x, w.shape, w, b)
    _, gw, gb = norm.layer_norm_backward(g, x, w.shape, w, b)
    var = x.var(axis=-1, keepdims=True)
    return np.sum(out * g), (g * w / np.sqrt(var + 1e-5), gw, gb, out)


def conv_weight_gradient_as_convolution(x, w, b, g):
    """The weight gradient computed as a true convolution: the kernel comes out flipped."""
    out = conv.conv2d(x, w, b, padding=1)
    gx, gw, gb = conv.conv2d_backward(g, x, w, True, padding=1)
    return np.sum(out * g), (gx, gw[:, :, ::-1, ::-1], gb, out)


def conv_stride_ignored_in_backward(x, w, g):
    """The input gradient placed as if the stride were 1 (col2im at unit stride): the output's positions are
    spread over the input's top-left corner, as a stride-1 convolution with the same output would."""
    out = conv.conv2d(x, w, stride=2)
    _, gw, _ = conv.conv2d_backward(g, x, w, False, stride=2)
    h, v = g.shape[2] + w.shape[2] - 1, g.shape[3] + w.shape[3] - 1
    gx = np.zeros_like(x)
    gx[:, :, :h, :v] = conv.conv2d_backward(g, x[:, :, :h, :v], w, False)[0]
    return np.sum(out * g), (gx, gw, out)


PLANTED.update({
    "layer norm gradient missing the mean terms": (
        layer_norm_without_mean_terms, lambda x, w, b, g: (F.layer_norm(x, w.shape, w, b) * g).sum(),
        (rng.standard_normal((3, 5)), rng.standard_normal(5), rng.standard_normal(5), rng.standard_normal((3, 5))),
        "'x'"),
    "conv weight gradient as convolution (flipped kernel)": (
        conv_weight_gradient_as_convolution, lambda x, w, b, g: (F.conv2d(x, w, b, padding=1) * g).sum(),
        (rng.standard_normal((2, 2, 4, 4)), rng.standard_normal((3, 2, 3, 3)), rng.standard_normal(3),
         rng.standard_normal((2, 3, 4, 4))), "'w'"),
    "conv stride ignored in backward": (
        conv_stride_ignored_in_backward, lambda x, w, g: (F.conv2d(x, w, stride=2) * g).sum(),
        (rng.standard_normal((2, 2, 6, 6)), rng.standard_normal((3, 2, 2, 2)), rng.standard_normal((2, 3, 3, 3))),
        "'x'"),
})


PLANTED.update(REFERENCE_PLANTED)


@pytest.mark.parametrize("bug", sorted(PLANTED))
def test_planted_bug_is_reported_with_the_input_and_the_oracle_verdict(bug, device, dtype):
    reference_fn, torch_fn, inputs, culprit, *constants = PLANTED[bug]
    with pytest.raises(gl.GradientMismatch) as info:
        gl.check_gradients(reference_fn, torch_fn, inputs, device=device, dtype=dtype, finite_differences=True,
                           constants=constants[0] if constants else ())
    message = str(info.value)
    assert culprit in message
    assert "worst element" in message and "tolerance" in message
    assert "the reference gradient is wrong" in message
    assert info.value.report.oracle.disagreeing == ["reference vs autograd", "reference vs finite differences"]


@pytest.mark.parametrize("scale", [1e-8, 1e-4, 1.0, 1e4, 1e8])
def test_bugs_are_caught_at_every_gradient_scale(scale, dtype):
    """A 1% error is caught whether the gradient is 1e-8 or 1e8, and a right gradient passes at both."""
    x = rng.uniform(0.5, 2.0, 6)

    def right(x):
        return np.sum(scale * x**2), (2 * scale * x,)

    def wrong(x):
        return np.sum(scale * x**2), (2.02 * scale * x,)

    torch_fn = lambda t: (scale * t**2).sum()  # noqa: E731
    assert gl.check_gradients(right, torch_fn, (x,), dtype=dtype).passed
    with pytest.raises(gl.GradientMismatch):
        gl.check_gradients(wrong, torch_fn, (x,), dtype=dtype)


def test_a_wrong_small_element_beside_large_ones_is_caught_in_float64():
    x = np.array([1e-3, 1e3])

    def wrong_small_element(x):
        g = 3 * x**2
        g[0] *= 1.5
        return np.sum(x**3), (g,)

    with pytest.raises(gl.GradientMismatch, match=r"worst element \[0\]"):
        gl.check_gradients(wrong_small_element, lambda t: (t**3).sum(), (x,))


def test_transposed_weight_gradient_of_a_rectangular_layer_is_a_shape_error():
    x, w, g = rng.standard_normal((5, 3)), rng.standard_normal((2, 3)), rng.standard_normal((5, 2))
    with pytest.raises(gl.ReferenceContractError, match=r"shape \(3, 2\)"):
        gl.check_gradients(linear_weight_gradient_transposed, lambda x, W, g: (F.linear(x, W) * g).sum(), (x, w, g))


def test_verify_shrinks_an_input_dependent_bug_to_a_minimal_counterexample():
    def wrong_above_one(x):
        return np.sum(x**2), (np.where(np.abs(x) > 1, 0.0, 2 * x),)

    with pytest.raises(gl.GradientMismatch) as info:
        gl.verify(wrong_above_one, lambda t: (t**2).sum(), inputs=same_shape(1), max_examples=200, seed=1,
                  shrink_budget=math.inf)
    (x,) = info.value.inputs
    assert x.size == 1
    assert 1 < abs(float(x.reshape(-1)[0])) <= 2
    assert "minimal counterexample" in str(info.value)




def max_pool_every_tied_maximum_gets_the_gradient(x, g):
    out = conv.max_pool2d(x, 2, 1)
    windows = np.lib.stride_tricks.sliding_window_view(x, (2, 2), axis=(2, 3))
    grad = np.zeros_like(x)
    for i in range(2):
        for j in range(2):
            hit = windows[..., i, j] == out  # every element equal to the window's max
            grad[:, :, i:i + out.shape[2], j:j + out.shape[3]] += np.where(hit, g, 0.0)
    return np.sum(out * g), (grad,)


def test_every_tied_maximum_receiving_the_gradient_is_reported_at_the_kink(dtype):
    """Ties are kinks: each tied element alone lies between its one-sided derivatives, so only the
    strict check (torch's convention: the first maximum) catches the bug; the message says why."""
    x = np.array([[[[1.0, 1.0, 0.0], [0.0, 1.0, -1.0], [2.0, 2.0, 2.0]]]])
    g = rng.uniform(0.5, 1.5, (1, 1, 2, 2))
    torch_fn = lambda x, g: (F.max_pool2d(x, 2, 1) * g).sum()  # noqa: E731
    with pytest.raises(gl.GradientMismatch, match="sits on a kink") as info:
        gl.check_gradients(max_pool_every_tied_maximum_gets_the_gradient, torch_fn, (x, g), dtype=dtype,
                           constants=(1,))
    assert "'x'" in str(info.value)
    right = lambda x, g: (np.sum(conv.max_pool2d(x, 2, 1) * g), (conv.max_pool2d_backward(g, x, 2, 1),))  # noqa: E731
    assert gl.check_gradients(right, torch_fn, (x, g), dtype=dtype, constants=(1,)).passed


def batch_norm_biased_running_var(x, running_mean, running_var, momentum=0.1):
    """The running variance updated with the biased (normalizing) variance instead of the unbiased one."""
    out = norm.batch_norm(x, running_mean, None, training=True, momentum=momentum)
    running_var *= 1 - momentum
    running_var += momentum * x.var(axis=0)
    return out


def test_batch_norm_with_the_biased_variance_in_the_running_estimate_is_reported(dtype, dtype_name):
    if dtype == torch.bfloat16:
        pytest.skip("NumPy has no bfloat16 to keep running statistics in")
    x = rng.standard_normal((5, 3)).astype(dtype_name)
    tol = gradient_tolerance(dtype)
    results = {}
    for label, fn in (("right", lambda x, m, v: norm.batch_norm(x, m, v, training=True)),
                      ("biased", batch_norm_biased_running_var)):
        mean, var = np.zeros(3, dtype_name), np.ones(3, dtype_name)
        fn(x, mean, var)
        results[label] = var
    torch_var = torch.ones(3, dtype=dtype)
    F.batch_norm(torch.tensor(x), torch.zeros(3, dtype=dtype), torch_var, training=True)
    assert compare(results["right"].astype(np.float64), torch_var.double().numpy(), tol).passed
    assert not compare(results["biased"].astype(np.float64), torch_var.double().numpy(), tol).passed
