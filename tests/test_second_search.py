"""verify_jvp and verify_hvp: right derivations pass a search, wrong ones fail on a shrunk example, seeds reproduce."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gradcheck_lab.reference import second_order as so
from hypothesis import strategies as st

import gradcheck_lab as gl
from gradcheck_lab.gradients.second_search import verify_hvp, verify_jvp

MLP_SHAPES = [(3, 2), (2, 3), (3,), (3, 2), (2,)]


def seeded(shapes, labels=None):
    """Input tuples built from a drawn seed and scale: few draws, so searching and shrinking stay cheap."""
    def build(seed, scale):
        rng = np.random.default_rng(seed)
        arrays = [scale * rng.standard_normal(s) for s in shapes]
        if labels is not None:
            position, size, classes = labels
            arrays[position] = rng.integers(0, classes, size=size)
        return tuple(arrays)

    return st.builds(build, st.integers(0, 2**16), st.sampled_from([1e-3, 0.5, 1.0]))


def torch_mlp(x, W1, b1, W2, b2):
    return torch.tanh(x @ W1 + b1) @ W2 + b2


def jvp_missing_bias(tangents, x, W1, b1, W2, b2):
    dx, dW1, _, dW2, db2 = tangents
    h = np.tanh(x @ W1 + b1)
    return ((1 - h * h) * (dx @ W1 + x @ dW1)) @ W2 + h @ dW2 + db2  # db1 forgotten


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_verify_jvp(dtype):
    result = verify_jvp(so.mlp_forward, so.mlp_jvp, torch_mlp, shapes=MLP_SHAPES, max_examples=5, dtype=dtype)
    assert result.passed and result.examples + result.inconclusive == 5
    assert result.report is not None and result.report.dtype == dtype
    with pytest.raises(gl.GradientMismatch, match="minimal counterexample") as info:
        verify_jvp(so.mlp_forward, jvp_missing_bias, torch_mlp, inputs=seeded(MLP_SHAPES), max_examples=8,
                   dtype=dtype)
    assert "tangents/vectors drawn with seed=" in str(info.value)


def test_verify_jvp_fixed_tangents_and_seed():
    rng = np.random.default_rng(0)
    tangents = tuple(rng.standard_normal(s) for s in MLP_SHAPES)
    first = verify_jvp(so.mlp_forward, so.mlp_jvp, torch_mlp, shapes=MLP_SHAPES, tangents=tangents, max_examples=4,
                       seed=3)
    again = verify_jvp(so.mlp_forward, so.mlp_jvp, torch_mlp, shapes=MLP_SHAPES, tangents=tangents, max_examples=4,
                       seed=3)
    assert first.report.max_abs_error == again.report.max_abs_error


def torch_softmax(W, X, y):
    return torch.nn.functional.cross_entropy(X @ W, y)


def softmax_hvp_halved(vectors, W, X, y):
    return (so.softmax_hvp(vectors, W, X, y)[0] / 2,)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_verify_hvp(dtype):
    inputs = seeded([(4, 3), (6, 4), (6,)], labels=(2, 6, 3))
    result = verify_hvp(so.softmax_hvp, torch_softmax, inputs=inputs, constants=(1, 2), max_examples=6, dtype=dtype)
    assert result.passed and result.report.dtype == dtype
    with pytest.raises(gl.GradientMismatch, match="minimal counterexample"):
        verify_hvp(softmax_hvp_halved, torch_softmax, inputs=inputs, constants=(1, 2), max_examples=6, dtype=dtype)


def test_verify_hvp_inputs_strategy():
    def cubic_hvp(vectors, x):
        return (6 * x * vectors[0],)

    assert verify_hvp(cubic_hvp, lambda x: (x**3).sum(), shapes=[(3,)], max_examples=5).passed
    with pytest.raises(gl.GradientMismatch):
        verify_hvp(lambda v, x: (3 * x * v[0],), lambda x: (x**3).sum(), inputs=seeded([(3,)]), max_examples=5)


def test_verify_argument_errors():
    with pytest.raises(gl.InvalidInputError, match="shapes="):
        verify_jvp(so.mlp_forward, so.mlp_jvp, torch_mlp)
    with pytest.raises(gl.InvalidInputError, match="kinks"):
        verify_hvp(so.softmax_hvp, torch_softmax, shapes=[(3,)], kinks="loose")
    with pytest.raises(gl.InvalidInputError, match="max_examples"):
        verify_jvp(so.mlp_forward, so.mlp_jvp, torch_mlp, shapes=MLP_SHAPES, max_examples=0)
