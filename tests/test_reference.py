"""The NumPy references: torch-free, stable, shape-general, documented."""

from __future__ import annotations

import inspect
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from gradcheck_lab.reference import activations, embedding, linear, losses, models, optim, tutorial
from hypothesis import given

from gradcheck_lab.gradients.strategies import arrays, shapes


def test_importing_reference_does_not_import_torch():
    code = ("import sys, gradcheck_lab.reference, gradcheck_lab.reference.optim, gradcheck_lab.reference.models, "
            "gradcheck_lab.reference.tutorial, gradcheck_lab.reference.embedding; "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16])
def test_sigmoid_is_stable_at_extremes_and_keeps_dtype(dtype):
    x = np.array([-1000.0, -30.0, 0.0, 30.0, 1000.0], dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = activations.sigmoid(x)
    assert out.dtype == dtype
    assert out[0] == 0 and out[-1] == 1 and out[2] == 0.5
    assert np.all(np.diff(out) >= 0)


def test_sigmoid_of_integers_is_float64():
    assert activations.sigmoid(np.array([0, 1])).dtype == np.float64


@given(arrays((5,), bound=50.0))
def test_sigmoid_symmetry(x):
    np.testing.assert_allclose(activations.sigmoid(-x), 1 - activations.sigmoid(x), atol=1e-15)


@given(shapes(min_dims=0))
def test_mse_reductions_and_gradient_shapes(shape):
    rng = np.random.default_rng(0)
    p, t = rng.standard_normal(shape), rng.standard_normal(shape)
    total = losses.mse(p, t, "sum")
    np.testing.assert_allclose(losses.mse(p, t, "mean") * p.size, total)
    assert losses.mse_backward(p, t).shape == p.shape


def test_mse_rejects_bad_reduction_and_shapes():
    with pytest.raises(ValueError, match="reduction"):
        losses.mse(np.ones(2), np.ones(2), "max")
    with pytest.raises(ValueError, match="shape"):
        losses.mse(np.ones(2), np.ones(3))


def test_linear_shapes_and_missing_bias():
    x, w = np.ones((2, 3, 4)), np.ones((5, 4))
    assert linear.linear(x, w).shape == (2, 3, 5)
    gx, gw, gb = linear.linear_backward(np.ones((2, 3, 5)), x, w, has_bias=False)
    assert gx.shape == x.shape and gw.shape == w.shape and gb is None
    with pytest.raises(ValueError, match="does not fit"):
        linear.linear(np.ones((2, 3)), w)


def test_models_return_one_gradient_per_argument():
    rng = np.random.default_rng(1)
    loss, grads = models.linear_regression(rng.standard_normal(3), np.array(0.1), rng.standard_normal((4, 3)),
                                           rng.standard_normal(4))
    assert np.ndim(loss) == 0 and [g.shape for g in grads] == [(3,), (), (4, 3), (4,)]
    loss, grads = models.sigmoid_mse(rng.standard_normal((2, 3)), rng.standard_normal(3), rng.standard_normal(2))
    assert [g.shape for g in grads] == [(2, 3), (3,), (2,)]


BACKWARDS = [activations.sigmoid_backward, losses.mse_backward, linear.linear_backward, models.linear_regression,
             models.sigmoid_mse, tutorial.residual_chain, optim.sgd_update_, optim.adam_update_,
             activations.tanh_backward, activations.relu_backward, activations.leaky_relu_backward,
             activations.gelu_backward, activations.softmax_backward, activations.log_softmax_backward,
             losses.logsumexp_backward, losses.cross_entropy_backward,
             losses.binary_cross_entropy_with_logits_backward, embedding.embedding_backward, models.mlp_classifier,
             models.conv_classifier]


@pytest.mark.parametrize("fn", BACKWARDS, ids=lambda f: f.__name__)
def test_every_backward_writes_out_its_derivation(fn):
    doc = inspect.getdoc(fn) or ""
    assert ".. math::" in doc or ":math:" in doc, f"{fn.__name__} has no derivation in its docstring"


# --- activations, losses, embedding ---

EXTREME = np.array([[-1e4, -50.0, -1.0, 0.0, 1.0, 50.0, 1e4], [3.0, 0.5, -0.5, 0.0, 2.0, -2.0, 1.0]])


def _forwards_and_backwards(x):
    """Every new forward and backward at ``x`` (its dtype), with a ones upstream gradient."""
    g = np.ones_like(x)
    labels = np.array([0, 6])
    probs = activations.softmax(x[::-1].copy(), axis=1)
    return {
        "tanh": activations.tanh(x), "tanh_backward": activations.tanh_backward(g, activations.tanh(x)),
        "relu": activations.relu(x), "relu_backward": activations.relu_backward(g, x),
        "leaky_relu": activations.leaky_relu(x), "leaky_relu_backward": activations.leaky_relu_backward(g, x),
        "gelu": activations.gelu(x), "gelu_backward": activations.gelu_backward(g, x),
        "gelu_tanh": activations.gelu(x, "tanh"), "gelu_tanh_backward": activations.gelu_backward(g, x, "tanh"),
        "softmax": activations.softmax(x), "softmax_backward": activations.softmax_backward(g, activations.softmax(x)),
        "log_softmax": activations.log_softmax(x),
        "log_softmax_backward": activations.log_softmax_backward(g, activations.log_softmax(x)),
        "logsumexp": losses.logsumexp(x), "logsumexp_backward": losses.logsumexp_backward(g[:, 0], x),
        "cross_entropy": losses.cross_entropy(x, labels, label_smoothing=0.1),
        "cross_entropy_backward": losses.cross_entropy_backward(x, labels, label_smoothing=0.1),
        "cross_entropy_probs": losses.cross_entropy(x, probs, "none"),
        "cross_entropy_probs_backward": losses.cross_entropy_backward(x, probs, "none"),
        "bce": losses.binary_cross_entropy_with_logits(x, probs, "none", pos_weight=np.full(7, 2.0, x.dtype)),
        "bce_backward": losses.binary_cross_entropy_with_logits_backward(x, probs, pos_weight=np.full(7, 2.0, x.dtype)),
        "embedding_backward": embedding.embedding_backward(x, np.array([1, 1]), 3),
    }


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16])
def test_new_references_are_finite_at_logits_of_1e4_without_warnings_and_keep_dtype(dtype):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        results = _forwards_and_backwards(EXTREME.astype(dtype))
    for name, value in results.items():
        assert value.dtype == dtype, name
        assert np.all(np.isfinite(value)), name


def test_softmax_of_a_row_beyond_the_float16_range_underflows_to_zero_without_warnings():
    x = np.array([65504.0, -65504.0, 0.0], dtype=np.float16)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(activations.softmax(x), np.array([1, 0, 0], dtype=np.float16))
        assert activations.log_softmax(x)[0] == 0


def test_extreme_values_have_the_exact_limits():
    x = EXTREME[0]
    np.testing.assert_array_equal(activations.gelu(x)[[0, -1]], [0.0, 1e4])
    np.testing.assert_array_equal(activations.gelu_backward(np.ones(7), x)[[0, -1]], [0.0, 1.0])
    np.testing.assert_array_equal(activations.gelu(x, "tanh")[[0, -1]], [0.0, 1e4])
    assert losses.logsumexp(x) == 1e4
    # softplus(1e4) = 1e4: the BCE of a confident wrong prediction is its logit, not inf
    assert losses.binary_cross_entropy_with_logits(np.array([1e4]), np.array([0.0])) == 1e4


def test_gelu_and_its_slope_are_accurate_to_float64_precision_in_the_tails_too():
    mpmath = pytest.importorskip("mpmath")  # a dependency of torch (through sympy)
    mpmath.mp.dps = 40
    x = np.linspace(-30, 9, 157)
    cdf = [mpmath.ncdf(mpmath.mpf(v)) for v in x]
    exact = np.array([float(mpmath.mpf(v) * c) for v, c in zip(x, cdf, strict=True)])
    slope = np.array([float(c + mpmath.mpf(v) * mpmath.npdf(mpmath.mpf(v))) for v, c in zip(x, cdf, strict=True)])
    # In the left tail gelu's condition number is about x**2 (erfc(z) moves by 2 z**2 relative to a relative
    # change of z): rounding x / sqrt(2) alone costs that many ulps. Within 4 ulps of that bound, and no worse.
    u = np.finfo(np.float64).eps / 2
    bound = 4 * u * (1 + x**2)
    assert np.all(np.abs(activations.gelu(x) - exact) <= bound * np.abs(exact))
    got = activations.gelu_backward(np.ones_like(x), x)
    terms = np.array([float(c) for c in cdf]) + np.abs(x) * np.exp(-x * x / 2) / np.sqrt(2 * np.pi)
    assert np.all(np.abs(got - slope) <= bound * terms)  # Phi(x) + x phi(x) cancels for x < 0


def test_kinks_follow_torch():
    zero = np.zeros(2)
    np.testing.assert_array_equal(activations.relu_backward(np.ones(2), zero), [0, 0])
    # torch's threshold_backward: only x <= 0 blocks the gradient (a NaN x passes it), and a blocked
    # NaN or Inf gradient gives 0
    x, g = np.array([np.nan, -1.0, 2.0, 0.0]), np.array([3.0, np.nan, 5.0, np.inf])
    leaf = torch.tensor(x, requires_grad=True)
    (expected,) = torch.autograd.grad(torch.relu(leaf), leaf, torch.tensor(g))
    np.testing.assert_array_equal(activations.relu_backward(g, x), expected.numpy())
    np.testing.assert_array_equal(activations.leaky_relu_backward(np.ones(2), zero, 0.3), [0.3, 0.3])


@given(shapes(min_dims=1, max_dims=3))
def test_softmax_rows_sum_to_one_and_log_softmax_is_its_log(shape):
    x = np.random.default_rng(0).standard_normal(shape) * 30
    for axis in range(len(shape)):
        np.testing.assert_allclose(activations.softmax(x, axis).sum(axis=axis), 1.0, rtol=1e-12)
        np.testing.assert_allclose(np.exp(activations.log_softmax(x, axis)), activations.softmax(x, axis),
                                   rtol=1e-12, atol=1e-300)
        np.testing.assert_allclose(losses.logsumexp(x, axis), np.log(np.exp(x).sum(axis=axis)), rtol=1e-12)


def test_cross_entropy_reductions_and_index_probability_agreement():
    rng = np.random.default_rng(2)
    logits, labels = rng.standard_normal((4, 3, 2)), rng.integers(0, 3, (4, 2))
    one_hot = np.moveaxis(np.eye(3)[labels], -1, 1)
    per_position = losses.cross_entropy(logits, labels, "none")
    assert per_position.shape == (4, 2)
    np.testing.assert_allclose(losses.cross_entropy(logits, labels, "sum"), per_position.sum())
    np.testing.assert_allclose(losses.cross_entropy(logits, labels), per_position.mean())
    np.testing.assert_allclose(losses.cross_entropy(logits, one_hot, "none"), per_position)
    np.testing.assert_allclose(losses.cross_entropy_backward(logits, labels, label_smoothing=0.3),
                               losses.cross_entropy_backward(logits, one_hot, label_smoothing=0.3))
    np.testing.assert_allclose(losses.cross_entropy_backward(logits, labels).sum(axis=1), 0, atol=1e-15)


def test_loss_arguments_are_validated():
    with pytest.raises(ValueError, match="reduction"):
        losses.cross_entropy(np.ones((2, 3)), np.array([0, 1]), "max")
    with pytest.raises(ValueError, match="shape"):
        losses.cross_entropy(np.ones((2, 3)), np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="class indices"):
        losses.cross_entropy(np.ones((2, 3)), np.array([0, 3]))
    with pytest.raises(ValueError, match="label_smoothing"):
        losses.cross_entropy(np.ones((2, 3)), np.array([0, 1]), label_smoothing=1.5)
    with pytest.raises(ValueError, match="approximate"):
        activations.gelu(np.ones(2), "erf")
    with pytest.raises(ValueError, match="indices"):
        embedding.embedding(np.array([0, 5]), np.ones((5, 2)))


def test_embedding_gradient_accumulates_repeated_rows():
    grad = embedding.embedding_backward(np.ones((2, 3, 2)), np.array([[0, 2, 0], [0, 1, 1]]), 4)
    np.testing.assert_array_equal(grad[:, 0], [3, 2, 1, 0])
    assert embedding.embedding(np.array([[2, 2]]), np.arange(8.0).reshape(4, 2)).shape == (1, 2, 2)


def test_mlp_classifier_returns_one_gradient_per_array_but_target():
    rng = np.random.default_rng(4)
    w1, b1, w2, b2, x = (rng.standard_normal(s).astype(np.float32) for s in [(5, 3), (5,), (4, 5), (4,), (6, 3)])
    loss, grads = models.mlp_classifier(w1, b1, w2, b2, x, rng.integers(0, 4, 6))
    assert np.ndim(loss) == 0 and loss.dtype == np.float32
    assert [g.shape for g in grads] == [(5, 3), (5,), (4, 5), (4,), (6, 3)]
    assert all(g.dtype == np.float32 for g in grads)


def test_conv_classifier_returns_one_gradient_per_array_but_target():
    pytest.importorskip("gradcheck_lab.reference.conv")
    rng = np.random.default_rng(5)
    shapes = [(3, 2, 3, 3), (3,), (4, 3 * 2 * 3), (4,), (2, 2, 4, 6)]
    arrays = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    loss, grads = models.conv_classifier(*arrays, rng.integers(0, 4, 2))
    assert np.ndim(loss) == 0 and loss.dtype == np.float32
    assert [g.shape for g in grads] == shapes
    assert all(g.dtype == np.float32 for g in grads)
