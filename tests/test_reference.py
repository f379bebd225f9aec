"""The NumPy references: torch-free, stable, shape-general, documented."""

from __future__ import annotations

import inspect
import subprocess
import sys
import warnings

import numpy as np
import pytest
from gradcheck_lab.reference import activations, linear, losses, models, optim, tutorial
from hypothesis import given

from gradcheck_lab.strategies import arrays, shapes


def test_importing_reference_does_not_import_torch():
    code = ("import sys, gradcheck_lab.reference, gradcheck_lab.reference.optim, gradcheck_lab.reference.models, "
            "gradcheck_lab.reference.tutorial; "
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
             models.sigmoid_mse, tutorial.residual_chain, optim.sgd_update_, optim.adam_update_]


@pytest.mark.parametrize("fn", BACKWARDS, ids=lambda f: f.__name__)
def test_every_backward_writes_out_its_derivation(fn):
    doc = inspect.getdoc(fn) or ""
    assert ".. math::" in doc or ":math:" in doc, f"{fn.__name__} has no derivation in its docstring"
