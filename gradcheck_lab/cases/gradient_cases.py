"""The catalogue of gradient cases: losses, activations, linear layers, classifiers, the tutorial's functions.

Each is registered in :data:`~gradcheck_lab.cases.registry.CASES` when the registry is imported. Non-scalar ops
are checked through the scalar ``<op(x), grad_out>`` (adapters below); inputs are built from a hypothesis-drawn
seed, shape and scale with a NumPy Generator (cheap for any size; shrinking still reaches small shapes).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from hypothesis import strategies as st

from gradcheck_lab.cases.registry import Case, register
from gradcheck_lab.gradients import strategies as gst
from gradcheck_lab.gradients.inputs import ReferenceFn
from gradcheck_lab.reference import activations as ref_activations
from gradcheck_lab.reference import embedding as ref_embedding
from gradcheck_lab.reference import linear as ref_linear
from gradcheck_lab.reference import losses as ref_losses
from gradcheck_lab.reference import models, tutorial
from gradcheck_lab.reference.activations import sigmoid, sigmoid_backward

# --- adapters: an op with a non-scalar output is checked through the scalar <op(x), grad_out> ---

def sigmoid_vjp(x: np.ndarray, grad_out: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    r"""Scalar :math:`\langle \sigma(x), g \rangle`.

    Its gradient in ``x`` is the sigmoid backward of ``g``; in ``g`` it is :math:`\sigma(x)`.
    """
    out = sigmoid(x)
    return np.sum(out * grad_out), (sigmoid_backward(grad_out, out), out)


def _mse_pair(reduction: Literal["mean", "sum"]) -> ReferenceFn:
    def mse_loss(pred: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        grad = ref_losses.mse_backward(pred, target, reduction)
        return ref_losses.mse(pred, target, reduction), (grad, -grad)

    mse_loss.__doc__ = f"MSE with reduction={reduction!r}; the target's gradient is minus the prediction's."
    return mse_loss


def linear_vjp(x: np.ndarray, weight: np.ndarray, bias: np.ndarray,
               grad_out: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    r"""Scalar :math:`\langle x W^\top + b, g \rangle`: the three linear gradients, and the output for ``g``."""
    out = ref_linear.linear(x, weight, bias)
    grad_x, grad_w, grad_b = ref_linear.linear_backward(grad_out, x, weight, has_bias=True)
    assert grad_b is not None  # has_bias=True
    return np.sum(out * grad_out), (grad_x, grad_w, grad_b, out)


def linear_nobias_vjp(x: np.ndarray, weight: np.ndarray,
                      grad_out: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    r"""Scalar :math:`\langle x W^\top, g \rangle` for a linear layer without bias."""
    out = ref_linear.linear(x, weight)
    grad_x, grad_w, _ = ref_linear.linear_backward(grad_out, x, weight, has_bias=False)
    return np.sum(out * grad_out), (grad_x, grad_w, out)


def _linear_torch(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    return (F.linear(x, weight, bias) * g).sum()


def _linear_nobias_torch(x: torch.Tensor, weight: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    return (F.linear(x, weight) * g).sum()


def _gradient_cases() -> list[Case]:
    cases = [
        Case("sigmoid", sigmoid_vjp, lambda x, g: (torch.sigmoid(x) * g).sum(), gst.same_shape(2),
             description="logistic sigmoid, through <sigmoid(x), grad_out>"),
        Case("mse_mean", _mse_pair("mean"), lambda p, t: F.mse_loss(p, t, reduction="mean"), gst.same_shape(2),
             description="mean squared error, reduction='mean'"),
        Case("mse_sum", _mse_pair("sum"), lambda p, t: F.mse_loss(p, t, reduction="sum"), gst.same_shape(2),
             description="squared error, reduction='sum'"),
        Case("linear_regression", models.linear_regression,
             lambda w, b, x, y: F.mse_loss(x @ w + b, y), gst.regression_inputs(),
             description="y = x @ w + b with the mean squared error"),
        Case("sigmoid_mse", models.sigmoid_mse,
             lambda weight, x, y: F.mse_loss(torch.sigmoid(F.linear(x, weight)), y), gst.sigmoid_mse_inputs(),
             description="Linear (no bias) -> sigmoid -> MSE"),
        Case("mean_of_squares", tutorial.mean_of_squares, lambda x: (x**2).mean(), gst.same_shape(1),
             description="d/dx mean(x**2) = 2x/N"),
        Case("sum_of_two_squares", tutorial.sum_of_two_squares, lambda a, b: (a**2 + b**2).sum(),
             gst.same_shape(2), description="x1**2 + x2**2"),
        Case("square_plus_twice", tutorial.square_plus_twice, lambda a, b: (a**2 + 2 * b).sum(),
             gst.same_shape(2), description="sum(x1**2 + 2*x2)"),
        Case("residual_chain", tutorial.residual_chain, lambda x, w, y: ((x * w - y) ** 2).sum(),
             gst.same_shape(3), description="loss = (x*w - y)**2"),
    ]
    for dims in (1, 2):
        cases.append(Case(f"linear_bias_{dims + 1}d", linear_vjp, _linear_torch,
                          gst.linear_inputs(batch_dims=dims, bias=True),
                          description=f"x @ W.T + b, {dims + 1}-D input"))
        cases.append(Case(f"linear_nobias_{dims + 1}d", linear_nobias_vjp, _linear_nobias_torch,
                          gst.linear_inputs(batch_dims=dims, bias=False),
                          description=f"x @ W.T, {dims + 1}-D input"))
    return cases


for _case in _gradient_cases():
    register(_case)


# --- activation, loss, embedding and classifier cases ---
# Inputs are built from a hypothesis-drawn seed, shape and scale with a NumPy Generator (cheap for any
# size; shrinking still reaches small shapes). Non-scalar ops are checked through <op(x), g>, g drawn too.
# log_softmax, logsumexp and BCE with logits also draw logits up to 1e4. Two do not, for the harness's sake
# (their references are stable there: tests/test_reference.py): softmax, whose backward y * (g - <g, y>)
# cancels in every saturated slice, so a tensor of saturated slices holds only ~1e-15 values that differ
# from torch's float64 by an ulp of the intermediate sum (0.7% of the tensor), beyond the measured floor;
# and cross-entropy, where a confident right prediction's loss rounds to 0 in float64 (torch's too) while
# its gradient is ~1e-23, and the finite-difference oracle reports "both gradients may share a mistake".

LARGE_LOGITS = 1e4
"""Bound of the logits drawn for the ops that must stay stable there (softmax family, BCE with logits)."""


def _generator(draw: st.DrawFn) -> np.random.Generator:
    return np.random.default_rng(draw(st.integers(0, 2**32 - 1), label="seed"))


def _scaled(draw: st.DrawFn, rng: np.random.Generator, shape: tuple[int, ...], bound: float = 4.0) -> np.ndarray:
    """Normal draws times a drawn scale, clipped to ``[-bound, bound]``; sometimes with exact zeros."""
    scales = [0.5, 1.0, 2.0] if bound <= 4.0 else [0.5, 1.0, 2.0, bound / 4]
    x = np.clip(rng.standard_normal(shape) * draw(st.sampled_from(scales), label="scale"), -bound, bound)
    if draw(st.booleans(), label="zeros"):
        x[rng.random(shape) < 0.2] = 0.0
    return x


@st.composite
def _x_and_grad(draw: st.DrawFn, bound: float = 4.0) -> tuple[np.ndarray, ...]:
    """``(x, grad_out)`` of one drawn shape; ``x`` within ``[-bound, bound]``."""
    shape = draw(gst.shapes(min_dims=1, max_dims=3), label="shape")
    rng = _generator(draw)
    return _scaled(draw, rng, shape, bound), rng.standard_normal(shape)


@st.composite
def _reduced_x_and_grad(draw: st.DrawFn, bound: float = 4.0) -> tuple[np.ndarray, ...]:
    """``(x, grad_out)`` for a reduction over the last axis: ``grad_out`` lacks it."""
    shape = draw(gst.shapes(min_dims=1, max_dims=3), label="shape")
    rng = _generator(draw)
    return _scaled(draw, rng, shape, bound), rng.standard_normal(shape[:-1])


@st.composite
def _classification(draw: st.DrawFn, spatial: int = 0, probabilities: bool = False,
                    with_grad: bool = False) -> tuple[np.ndarray, ...]:
    """``(logits (N, C, d...), target[, grad_out])``: class indices (integers) or probabilities."""
    n, c = draw(gst.sides(5), label="N"), draw(st.integers(2, 5), label="C")
    rest = tuple(draw(gst.sides(3), label="d") for _ in range(spatial))
    rng = _generator(draw)
    logits = _scaled(draw, rng, (n, c, *rest))
    target: np.ndarray
    if probabilities:
        target = np.moveaxis(rng.dirichlet(np.ones(c), size=(n, *rest)), -1, 1)
    else:
        target = rng.integers(0, c, (n, *rest))
    return (logits, target, rng.standard_normal((n, *rest))) if with_grad else (logits, target)


@st.composite
def _binary(draw: st.DrawFn, pos_weight: bool = False, bound: float = LARGE_LOGITS) -> tuple[np.ndarray, ...]:
    """``(logits, target in [0, 1][, pos_weight over the last axis])``."""
    shape = draw(gst.shapes(min_dims=1, max_dims=3), label="shape")
    rng = _generator(draw)
    parts = [_scaled(draw, rng, shape, bound), rng.uniform(0, 1, shape)]
    if pos_weight:
        parts.append(rng.uniform(0.25, 4.0, shape[-1:]))
    return tuple(parts)


@st.composite
def _embedding_inputs(draw: st.DrawFn) -> tuple[np.ndarray, ...]:
    """``(weight (V, D), indices, grad_out)``; the indices always repeat a row."""
    vocab, dim = draw(st.integers(2, 6), label="V"), draw(gst.sides(4), label="D")
    idx_shape = draw(gst.shapes(min_dims=1, max_dims=2, max_side=4), label="index shape")
    rng = _generator(draw)
    indices = rng.integers(0, vocab, idx_shape if np.prod(idx_shape) > 1 else (2,))
    indices.reshape(-1)[-1] = indices.reshape(-1)[0]
    return _scaled(draw, rng, (vocab, dim)), indices, rng.standard_normal((*indices.shape, dim))


@st.composite
def _mlp_inputs(draw: st.DrawFn) -> tuple[np.ndarray, ...]:
    """``(w1, b1, w2, b2, x, target)`` for Linear(D, H) -> ReLU -> Linear(H, C) -> cross-entropy."""
    n, d, h, c = (draw(st.integers(1, 6), label=name) for name in "NDHC")
    rng = _generator(draw)
    return (rng.standard_normal((h, d)) / np.sqrt(d), rng.standard_normal(h), rng.standard_normal((c, h)) / np.sqrt(h),
            rng.standard_normal(c), _scaled(draw, rng, (n, d)), rng.integers(0, c, n))


def _elementwise_vjp(forward: Any, backward: Any, from_output: bool = False, **kw: Any) -> ReferenceFn:
    """The scalar <forward(x), g> with gradients (backward(g, out or x), forward(x))."""

    def vjp(x: np.ndarray, grad_out: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        out = forward(x, **kw)
        return np.sum(out * grad_out), (backward(grad_out, out if from_output else x, **kw), out)

    vjp.__doc__ = f"Scalar <{forward.__name__}(x), grad_out>; its backward and its output as the two gradients."
    return vjp


def logsumexp_vjp(x: np.ndarray, grad_out: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """Scalar <logsumexp(x, axis=-1), grad_out>."""
    out = ref_losses.logsumexp(x)
    return np.sum(out * grad_out), (ref_losses.logsumexp_backward(grad_out, x), out)


def _cross_entropy_fn(reduction: Literal["mean", "sum", "none"], label_smoothing: float = 0.0) -> ReferenceFn:
    def cross_entropy(logits: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        loss = ref_losses.cross_entropy(logits, target, reduction, label_smoothing)
        return loss, (ref_losses.cross_entropy_backward(logits, target, reduction, label_smoothing),)

    cross_entropy.__doc__ = f"cross_entropy(reduction={reduction!r}, label_smoothing={label_smoothing})."
    return cross_entropy


def cross_entropy_none_vjp(logits: np.ndarray, target: np.ndarray,
                           grad_out: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """Scalar <cross_entropy(logits, target, reduction='none', label_smoothing=0.2), grad_out>."""
    losses = ref_losses.cross_entropy(logits, target, "none", 0.2)
    grad = ref_losses.cross_entropy_backward(logits, target, "none", 0.2, grad_out=grad_out)
    return np.sum(losses * grad_out), (grad, losses)


def bce_with_logits(logits: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """binary_cross_entropy_with_logits, reduction='mean'."""
    return (ref_losses.binary_cross_entropy_with_logits(logits, target),
            (ref_losses.binary_cross_entropy_with_logits_backward(logits, target),))


def bce_with_logits_pos_weight(logits: np.ndarray, target: np.ndarray,
                               pos_weight: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """binary_cross_entropy_with_logits with pos_weight, reduction='sum'."""
    return (ref_losses.binary_cross_entropy_with_logits(logits, target, "sum", pos_weight),
            (ref_losses.binary_cross_entropy_with_logits_backward(logits, target, "sum", pos_weight),))


def embedding_vjp(weight: np.ndarray, indices: np.ndarray,
                  grad_out: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """Scalar <embedding(indices, weight), grad_out>: the accumulated weight gradient, and the output."""
    out = ref_embedding.embedding(indices, weight)
    return np.sum(out * grad_out), (ref_embedding.embedding_backward(grad_out, indices, weight.shape[0]), out)


def _mlp_torch(w1: torch.Tensor, b1: torch.Tensor, w2: torch.Tensor, b2: torch.Tensor, x: torch.Tensor,
               target: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(F.linear(F.relu(F.linear(x, w1, b1)), w2, b2), target)


@st.composite
def _conv_classifier_inputs(draw: st.DrawFn) -> tuple[np.ndarray, ...]:
    """``(conv_weight, conv_bias, fc_weight, fc_bias, x, target)``: 3x3 conv -> ReLU -> 2x2 pool -> Linear."""
    n, c, f, k = (draw(st.integers(lo, hi), label=name) for name, lo, hi in
                  (("N", 1, 3), ("C", 1, 2), ("F", 1, 3), ("K", 2, 4)))
    h, w = (2 * draw(st.integers(1, 3), label=name) for name in "HW")
    rng = _generator(draw)
    # Weights scaled by 1/sqrt(fan-in) keep the logits O(1): a confident right prediction's loss would
    # round to 0 while its gradient does not (see the note above on cross-entropy).
    return (rng.standard_normal((f, c, 3, 3)) / np.sqrt(9 * c), rng.standard_normal(f),
            rng.standard_normal((k, f * h * w // 4)) / np.sqrt(f * h * w / 4), rng.standard_normal(k),
            _scaled(draw, rng, (n, c, h, w)), rng.integers(0, k, n))


def _conv_classifier_torch(conv_weight: torch.Tensor, conv_bias: torch.Tensor, fc_weight: torch.Tensor,
                           fc_bias: torch.Tensor, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    pooled = F.max_pool2d(F.relu(F.conv2d(x, conv_weight, conv_bias, padding=1)), 2)
    return F.cross_entropy(F.linear(pooled.flatten(1), fc_weight, fc_bias), target)


def _call(name: str, kwargs: Mapping[str, Any]) -> str:
    return f"{name}(x{''.join(f', {k}={v!r}' for k, v in kwargs.items())})"


def _activation_cases() -> list[Case]:
    act = ref_activations
    elementwise: list[tuple[str, Any, Any, bool, dict[str, Any], Any]] = [
        ("tanh", act.tanh, act.tanh_backward, True, {}, torch.tanh),
        ("relu", act.relu, act.relu_backward, False, {}, F.relu),
        ("leaky_relu", act.leaky_relu, act.leaky_relu_backward, False, {"negative_slope": 0.2},
         lambda x: F.leaky_relu(x, 0.2)),
        ("gelu", act.gelu, act.gelu_backward, False, {}, F.gelu),
        ("gelu_tanh", act.gelu, act.gelu_backward, False, {"approximate": "tanh"},
         lambda x: F.gelu(x, approximate="tanh")),
        ("softmax", act.softmax, act.softmax_backward, True, {}, lambda x: F.softmax(x, -1)),
        ("softmax_dim0", act.softmax, act.softmax_backward, True, {"axis": 0}, lambda x: F.softmax(x, 0)),
        ("log_softmax", act.log_softmax, act.log_softmax_backward, True, {}, lambda x: F.log_softmax(x, -1)),
    ]
    cases = [Case(name, _elementwise_vjp(fwd, bwd, from_output, **kw),
                  lambda x, g, op=op: (op(x) * g).sum(), _x_and_grad(LARGE_LOGITS if name == "log_softmax" else 4.0),
                  description=f"{_call(fwd.__name__, kw)}, through <{fwd.__name__}(x), grad_out>"
                  + (", logits up to 1e4" if name == "log_softmax" else ""))
             for name, fwd, bwd, from_output, kw, op in elementwise]
    return [
        *cases,
        Case("logsumexp", logsumexp_vjp, lambda x, g: (torch.logsumexp(x, -1) * g).sum(),
             _reduced_x_and_grad(LARGE_LOGITS),
             description="logsumexp over the last axis, through <logsumexp(x), grad_out>, logits up to 1e4"),
        Case("cross_entropy_index_mean", _cross_entropy_fn("mean"), F.cross_entropy, _classification(),
             constants=(1,), description="cross-entropy, class indices, (N, C), reduction='mean'"),
        Case("cross_entropy_index_sum_smoothed", _cross_entropy_fn("sum", 0.1),
             lambda z, t: F.cross_entropy(z, t, reduction="sum", label_smoothing=0.1), _classification(spatial=2),
             constants=(1,), description="cross-entropy, class indices, (N, C, d1, d2), sum, label_smoothing=0.1"),
        Case("cross_entropy_probs_none", cross_entropy_none_vjp,
             lambda z, t, g: (F.cross_entropy(z, t, reduction="none", label_smoothing=0.2) * g).sum(),
             _classification(spatial=1, probabilities=True, with_grad=True), constants=(1,),
             description="cross-entropy, class probabilities, (N, C, d1), reduction='none', label_smoothing=0.2"),
        Case("bce_with_logits", bce_with_logits, F.binary_cross_entropy_with_logits, _binary(), constants=(1,),
             description="binary cross-entropy with logits, reduction='mean', logits up to 1e4"),
        Case("bce_with_logits_pos_weight", bce_with_logits_pos_weight,
             lambda z, t, w: F.binary_cross_entropy_with_logits(z, t, reduction="sum", pos_weight=w),
             _binary(pos_weight=True, bound=4.0), constants=(1, 2),
             description="binary cross-entropy with logits, pos_weight, reduction='sum'"),
        Case("embedding", embedding_vjp, lambda w, i, g: (F.embedding(i, w) * g).sum(), _embedding_inputs(),
             constants=(1,), description="embedding lookup with repeated indices, through <embedding, grad_out>"),
        Case("mlp_classifier", models.mlp_classifier, _mlp_torch, _mlp_inputs(), constants=(5,),
             description="Linear -> ReLU -> Linear -> cross-entropy (class indices, mean)"),
        Case("conv_classifier", models.conv_classifier, _conv_classifier_torch, _conv_classifier_inputs(),
             constants=(5,), description="3x3 conv (padding 1) -> ReLU -> 2x2 max pool -> Linear -> cross-entropy"),
    ]


for _case in _activation_cases():
    register(_case)
