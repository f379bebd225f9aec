"""The case registry: each case binds a NumPy reference to its torch equivalent.

Adding an op is adding one :func:`register` call: the generic tests, ``gradcheck-lab verify``
and the benchmarks sweep :data:`CASES`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from hypothesis import strategies as st

from gradcheck_lab.core.dtypes import FLOAT_DTYPES, dtype_name, resolve_dtype
from gradcheck_lab.core.report import Report
from gradcheck_lab.gradients import strategies as gst
from gradcheck_lab.gradients.check import check_gradients
from gradcheck_lab.gradients.inputs import ReferenceFn, TorchFn
from gradcheck_lab.optim.check import OptimizerReport, Schedule, check_optimizer
from gradcheck_lab.reference import activations as ref_activations
from gradcheck_lab.reference import conv as ref_conv
from gradcheck_lab.reference import embedding as ref_embedding
from gradcheck_lab.reference import linear as ref_linear
from gradcheck_lab.reference import losses as ref_losses
from gradcheck_lab.reference import lr_scheduler as ref_sched
from gradcheck_lab.reference import models, tutorial
from gradcheck_lab.reference import normalization as ref_norm
from gradcheck_lab.reference import optim as ref_optim
from gradcheck_lab.reference.activations import sigmoid, sigmoid_backward

ALL_DTYPES = tuple(FLOAT_DTYPES)


@dataclass(frozen=True)
class Case:
    """A reference/torch pair with the inputs it is checked on.

    ``inputs`` is a hypothesis strategy of input tuples (float64, or integer for data);
    ``dtypes`` the dtypes it supports; ``tolerances`` optional per-dtype
    ``{"rtol": ..., "atol": ...}`` overrides, each with a reason in ``description``;
    ``constants`` the indices of data inputs (labels, targets, masks: see ``check_gradients``);
    ``options`` further keyword arguments for ``check_gradients`` (``kinks=...``, say).
    """

    name: str
    reference: ReferenceFn
    torch_fn: TorchFn
    inputs: st.SearchStrategy[tuple[Any, ...]]
    dtypes: tuple[str, ...] = ALL_DTYPES
    tolerances: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    description: str = ""
    constants: tuple[int, ...] = ()
    options: Mapping[str, Any] = field(default_factory=dict)

    def check_options(self, dtype: str) -> dict[str, Any]:
        """The keyword arguments ``check_gradients`` takes for this case in ``dtype``."""
        return {"constants": self.constants, **self.options, **self.tolerances.get(dtype, {})}


CASES: dict[str, Case] = {}


def register(case: Case) -> Case:
    """Add a case to :data:`CASES`; names are unique."""
    if case.name in CASES:
        raise ValueError(f"a case named {case.name!r} is already registered")
    for dtype in case.dtypes:
        resolve_dtype(dtype)
    CASES[case.name] = case
    return case


def get_case(case: Case | str) -> Case:
    if isinstance(case, Case):
        return case
    try:
        return CASES[case]
    except KeyError:
        raise KeyError(f"no case named {case!r}; known cases: {', '.join(sorted(CASES))}") from None


def check_case(case: Case | str, inputs: Any, *, device: str | torch.device = "cpu",
               dtype: str | torch.dtype = "float64", **kwargs: Any) -> Report:
    """:func:`check_gradients` for a registered case (by object or name), with its tolerance overrides."""
    case = get_case(case)
    options = {**case.check_options(dtype_name(resolve_dtype(dtype))), **kwargs}
    return check_gradients(case.reference, case.torch_fn, inputs, device=device, dtype=dtype, **options)


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


# --- normalization, convolution and pooling cases ---
# Non-scalar ops are checked through the scalar <op(inputs), grad_out> with grad_out a data input
# (constants=): its gradient would only repeat the forward. Arrays are built from a drawn seed.

def _rng_arrays(draw: st.DrawFn, *shapes: tuple[int, ...]) -> list[np.ndarray]:
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1), label="seed"))
    return [np.clip(rng.standard_normal(s), -gst.DEFAULT_BOUND, gst.DEFAULT_BOUND) for s in shapes]


def _distinct(draw: st.DrawFn, shape: tuple[int, ...]) -> np.ndarray:
    """Distinct multiples of 1/32 in (-4, 4), exact in bfloat16: no ties, so no kinks, in a max."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1), label="seed"))
    size = int(np.prod(shape))
    return ((rng.permutation(size) - size // 2) / 32.0).reshape(shape)


@st.composite
def layer_norm_inputs(draw: st.DrawFn, dims: int, affine: bool) -> tuple[np.ndarray, ...]:
    """``(x, [weight, bias,] grad_out)`` with ``dims`` normalized trailing dimensions."""
    lead = tuple(draw(gst.sides(3)) for _ in range(draw(st.integers(1, 2))))
    norm = tuple(draw(st.integers(2, 5)) for _ in range(dims))
    x, w, b, g = _rng_arrays(draw, (*lead, *norm), norm, norm, (*lead, *norm))
    return (x, w, b, g) if affine else (x, g)


@st.composite
def batch_norm_inputs(draw: st.DrawFn, spatial: bool, eval_mode: bool = False) -> tuple[np.ndarray, ...]:
    """``(x, weight, bias, grad_out[, running_mean, running_var])``; at least 4 values per channel."""
    n, c = draw(st.integers(2, 4)), draw(gst.sides(3))
    shape = (n, c, draw(st.integers(1, 3)), draw(st.integers(2, 3))) if spatial else (draw(st.integers(4, 6)), c)
    x, w, b, g, mean = _rng_arrays(draw, shape, (c,), (c,), shape, (c,))
    if not eval_mode:
        return x, w, b, g
    var = np.random.default_rng(draw(st.integers(0, 2**16), label="var seed")).uniform(0.25, 4.0, c)
    return x, w, b, g, mean, var


def _layer_norm_vjp(affine: bool) -> ReferenceFn:
    def layer_norm_vjp(x: np.ndarray, *rest: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        *params, g = rest
        shape = x.shape[1:] if not params else params[0].shape
        out = ref_norm.layer_norm(x, shape, *params)
        grads = ref_norm.layer_norm_backward(g, x, shape, *params)
        return np.sum(out * g), tuple(v for v in grads if v is not None)

    layer_norm_vjp.__doc__ = f"<layer_norm(x{', w, b' if affine else ''}), grad_out> over x's trailing dimensions."
    return layer_norm_vjp


def _torch_layer_norm(x: torch.Tensor, *rest: torch.Tensor) -> torch.Tensor:
    *params, g = rest
    shape = tuple(params[0].shape) if params else tuple(x.shape[1:])
    weight, bias = params if params else (None, None)
    out: torch.Tensor = (F.layer_norm(x, shape, weight, bias) * g).sum()
    return out


def batch_norm_train_vjp(x: np.ndarray, weight: np.ndarray, bias: np.ndarray,
                         grad_out: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """<batch_norm(x, w, b, training=True), grad_out>; the running buffers do not enter the output."""
    out = ref_norm.batch_norm(x, np.zeros(x.shape[1]), np.ones(x.shape[1]), weight, bias, training=True)
    return np.sum(out * grad_out), ref_norm.batch_norm_backward(grad_out, x, weight, training=True)


def _torch_batch_norm_train(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    mean, var = torch.zeros_like(w.detach()), torch.ones_like(w.detach())
    return (F.batch_norm(x, mean, var, w, b, training=True) * g).sum()


def batch_norm_eval_vjp(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, grad_out: np.ndarray,
                        running_mean: np.ndarray, running_var: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """<batch_norm(x, w, b) in eval mode, grad_out>: normalized by the running buffers (data)."""
    out = ref_norm.batch_norm(x, running_mean, running_var, weight, bias, training=False)
    grads = ref_norm.batch_norm_backward(grad_out, x, weight, training=False, running_mean=running_mean,
                                         running_var=running_var)
    return np.sum(out * grad_out), grads


def _torch_batch_norm_eval(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, g: torch.Tensor,
                           mean: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    return (F.batch_norm(x, mean, var, w, b, training=False) * g).sum()


@st.composite
def conv2d_inputs(draw: st.DrawFn, conv: Mapping[str, Any], bias: bool = True) -> tuple[np.ndarray, ...]:
    """``(x, weight[, bias], grad_out)`` for ``conv2d(**conv)``, the input just large enough or larger."""
    groups = conv.get("groups", 1)
    s, p, d = (ref_conv._pair(conv.get(k, v), k) for k, v in (("stride", 1), ("padding", 0), ("dilation", 1)))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    n, cg, og = draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    h = max(1, d[0] * (kh - 1) + 1 - 2 * p[0]) + draw(st.integers(0, 4))
    w = max(1, d[1] * (kw - 1) + 1 - 2 * p[1]) + draw(st.integers(0, 4))
    out = [(size + 2 * p[a] - d[a] * (k - 1) - 1) // s[a] + 1 for a, (size, k) in enumerate(((h, kh), (w, kw)))]
    arrays = _rng_arrays(draw, (n, cg * groups, h, w), (og * groups, cg, kh, kw), (og * groups,),
                         (n, og * groups, *out))
    return tuple(arrays) if bias else (arrays[0], arrays[1], arrays[3])


def _conv2d_vjp(conv: Mapping[str, Any], bias: bool) -> ReferenceFn:
    def conv2d_vjp(x: np.ndarray, weight: np.ndarray, *rest: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        *b, g = rest
        out = ref_conv.conv2d(x, weight, *b, **conv)
        grad_x, grad_w, grad_b = ref_conv.conv2d_backward(g, x, weight, has_bias=bias, **conv)
        return np.sum(out * g), (grad_x, grad_w, grad_b) if bias else (grad_x, grad_w)

    conv2d_vjp.__doc__ = f"<conv2d(x, weight{', bias' if bias else ''}, {conv}), grad_out>"
    return conv2d_vjp


def _torch_conv2d(conv: Mapping[str, Any]) -> TorchFn:
    def run(x: torch.Tensor, weight: torch.Tensor, *rest: torch.Tensor) -> torch.Tensor:
        *b, g = rest
        out: torch.Tensor = (F.conv2d(x, weight, b[0] if b else None, **conv) * g).sum()
        return out

    return run


@st.composite
def pool_inputs(draw: st.DrawFn, pool: Mapping[str, Any], distinct: bool) -> tuple[np.ndarray, np.ndarray]:
    """``(x, grad_out)`` for a 2-D pooling; ``distinct``: no two elements of x equal (no ties)."""
    k = ref_conv._pair(pool["kernel_size"], "kernel_size")
    s = ref_conv._pair(pool.get("stride") or k, "stride")
    p = ref_conv._pair(pool.get("padding", 0), "padding")
    n, c = draw(st.integers(1, 2)), draw(gst.sides(3))
    h, w = (k[a] - 2 * p[a] + draw(st.integers(0, 4)) for a in range(2))
    shape = (n, c, max(h, 1), max(w, 1))
    out = [(shape[2 + a] + 2 * p[a] - k[a]) // s[a] + 1 for a in range(2)]
    x, g = _rng_arrays(draw, shape, (n, c, *out))
    return (_distinct(draw, shape) if distinct else x), g


def _pool_vjp(forward: Any, backward: Any, pool: Mapping[str, Any]) -> ReferenceFn:
    def pool_vjp(x: np.ndarray, grad_out: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        return np.sum(forward(x, **pool) * grad_out), (backward(grad_out, x, **pool),)

    pool_vjp.__doc__ = f"<{forward.__name__}(x, {pool}), grad_out>"
    return pool_vjp


def _norm_conv_cases() -> list[Case]:
    cases = [
        Case("layer_norm_affine_2dims", _layer_norm_vjp(True), _torch_layer_norm, layer_norm_inputs(2, True),
             description="layer_norm over the last two dimensions with weight and bias", constants=(-1,)),
        Case("layer_norm_1dim", _layer_norm_vjp(False), _torch_layer_norm, layer_norm_inputs(1, False),
             description="layer_norm over the last dimension, no weight or bias", constants=(-1,)),
        Case("batch_norm_train_2d", batch_norm_train_vjp, _torch_batch_norm_train, batch_norm_inputs(False),
             description="batch_norm on (N, C), training (batch statistics)", constants=(-1,)),
        Case("batch_norm_train_4d", batch_norm_train_vjp, _torch_batch_norm_train, batch_norm_inputs(True),
             description="batch_norm on (N, C, H, W), training (batch statistics)", constants=(-1,)),
        Case("batch_norm_eval_4d", batch_norm_eval_vjp, _torch_batch_norm_eval, batch_norm_inputs(True, True),
             description="batch_norm on (N, C, H, W), eval (running statistics as data)", constants=(3, 4, 5)),
    ]
    convs: list[tuple[str, dict[str, Any], bool]] = [
        ("conv2d_pad1", {"padding": 1}, True),
        ("conv2d_stride2_nobias", {"stride": 2, "padding": (1, 0)}, False),
        ("conv2d_dilation2_groups2", {"stride": (1, 2), "padding": 2, "dilation": 2, "groups": 2}, True),
    ]
    for name, conv, bias in convs:
        cases.append(Case(name, _conv2d_vjp(conv, bias), _torch_conv2d(conv), conv2d_inputs(conv, bias),
                          description=f"conv2d {conv}{'' if bias else ' without bias'}", constants=(-1,)))
    pools: list[tuple[str, dict[str, Any]]] = [
        ("k2", {"kernel_size": 2}), ("k3_s2_p1", {"kernel_size": 3, "stride": 2, "padding": 1}),
        ("k3x2_s1", {"kernel_size": (3, 2), "stride": 1})]
    for suffix, pool in pools:
        cases.append(Case(f"max_pool2d_{suffix}", _pool_vjp(ref_conv.max_pool2d, ref_conv.max_pool2d_backward, pool),
                          partial(_torch_pool, F.max_pool2d, pool), pool_inputs(pool, distinct=True),
                          description=f"max_pool2d {pool} on inputs without ties", constants=(-1,)))
        cases.append(Case(f"avg_pool2d_{suffix}", _pool_vjp(ref_conv.avg_pool2d, ref_conv.avg_pool2d_backward, pool),
                          partial(_torch_pool, F.avg_pool2d, pool), pool_inputs(pool, distinct=False),
                          description=f"avg_pool2d {pool} (count_include_pad=True)", constants=(-1,)))
    return cases


def _torch_pool(op: Any, pool: Mapping[str, Any], x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    out: torch.Tensor = (op(x, **pool) * g).sum()
    return out


for _case in _norm_conv_cases():
    register(_case)


@dataclass(frozen=True)
class OptimizerCase:
    """A NumPy optimizer and its torch.optim class with the hyperparameters they are checked under."""

    name: str
    numpy_cls: type
    torch_cls: type
    hyper: Mapping[str, Any]
    shapes: tuple[tuple[int, ...], ...] = ((4, 3), (3,), (2, 2, 2))
    steps: int = 100
    # float16 cannot hold Adam's default eps (1e-8 rounds to 0), so both sides divide 0 by 0.
    dtypes: tuple[str, ...] = ("float64", "float32")
    description: str = ""
    # The matrix check_optimizer covers (see there): groups by index, a scheduler on both sides,
    # gradients that are None at some steps, a state-dict swap after a step.
    param_groups: tuple[Mapping[str, Any], ...] | None = None
    scheduler: Schedule | None = None
    none_grads: bool = False
    swap_state_at: int | None = None


OPTIMIZER_CASES: dict[str, OptimizerCase] = {}


def register_optimizer(case: OptimizerCase) -> OptimizerCase:
    """Add an optimizer case to :data:`OPTIMIZER_CASES`; names are unique."""
    if case.name in OPTIMIZER_CASES:
        raise ValueError(f"an optimizer case named {case.name!r} is already registered")
    OPTIMIZER_CASES[case.name] = case
    return case


def check_optimizer_case(case: OptimizerCase | str, *, device: str | torch.device = "cpu",
                         dtype: str | torch.dtype = "float64", **kwargs: Any) -> OptimizerReport:
    """:func:`check_optimizer` for a registered optimizer case."""
    case = OPTIMIZER_CASES[case] if isinstance(case, str) else case
    options = {"hyper": case.hyper, "shapes": case.shapes, "steps": case.steps, "param_groups": case.param_groups,
               "scheduler": case.scheduler, "none_grads": case.none_grads, "swap_state_at": case.swap_state_at,
               **kwargs}
    return check_optimizer(case.numpy_cls, case.torch_cls, device=device, dtype=dtype, **options)


def _optimizer_cases() -> list[OptimizerCase]:
    sgd = [
        ("sgd", {"lr": 0.1}),
        ("sgd_momentum", {"lr": 0.05, "momentum": 0.9}),
        ("sgd_momentum_dampening_wd", {"lr": 0.05, "momentum": 0.9, "dampening": 0.3, "weight_decay": 0.01}),
        ("sgd_nesterov_maximize", {"lr": 0.05, "momentum": 0.8, "nesterov": True, "maximize": True}),
    ]
    adam: list[tuple[str, type, type, dict[str, Any]]] = [
        ("adam", ref_optim.Adam, torch.optim.Adam, {"lr": 1e-3}),
        ("adam_amsgrad_wd", ref_optim.Adam, torch.optim.Adam, {"lr": 1e-2, "amsgrad": True, "weight_decay": 0.1}),
        ("adam_maximize_betas", ref_optim.Adam, torch.optim.Adam,
         {"lr": 3e-3, "betas": (0.5, 0.9), "eps": 1e-6, "maximize": True}),
        ("adamw", ref_optim.AdamW, torch.optim.AdamW, {"lr": 1e-3}),
        ("adamw_amsgrad", ref_optim.AdamW, torch.optim.AdamW, {"lr": 1e-2, "amsgrad": True, "weight_decay": 0.1}),
    ]
    return ([OptimizerCase(name, ref_optim.SGD, torch.optim.SGD, hyper, description=f"SGD {hyper}")
             for name, hyper in sgd]
            + [OptimizerCase(name, np_cls, t_cls, hyper, description=f"{t_cls.__name__} {hyper}")
               for name, np_cls, t_cls, hyper in adam])


for _opt_case in _optimizer_cases():
    register_optimizer(_opt_case)


# --- optimizer matrix cases (issue 10): every torch.optim rule, groups, schedulers ---

_HALF = ("float64", "float32", "float16", "bfloat16")


def _schedule(name: str, **kwargs: Any) -> Schedule:
    torch_kwargs = {"cycle_momentum": False} if name == "OneCycleLR" else {}
    return Schedule(getattr(ref_sched, name), getattr(torch.optim.lr_scheduler, name), kwargs, torch_kwargs)


def _half_life(step: int) -> float:
    return float(0.5 ** (step / 20))


def _matrix_cases() -> list[OptimizerCase]:
    o, t = ref_optim, torch.optim
    plain: list[tuple[str, type, type, dict[str, Any], tuple[str, ...]]] = [  # name, classes, hyper, dtypes
        ("rmsprop", o.RMSprop, t.RMSprop, {"lr": 1e-2}, ("float64", "float32")),
        ("rmsprop_centered_momentum_wd", o.RMSprop, t.RMSprop,
         {"lr": 1e-3, "alpha": 0.9, "centered": True, "momentum": 0.9, "weight_decay": 0.1, "maximize": True},
         ("float64", "float32")),
        ("adagrad", o.Adagrad, t.Adagrad, {"lr": 1e-2}, ("float64", "float32")),
        ("adagrad_lr_decay_init_acc_wd", o.Adagrad, t.Adagrad,
         {"lr": 0.1, "lr_decay": 0.05, "initial_accumulator_value": 0.1, "weight_decay": 0.1, "eps": 1e-6},
         ("float64", "float32")),
        ("adadelta", o.Adadelta, t.Adadelta, {}, ("float64", "float32")),
        ("adadelta_rho_wd_maximize", o.Adadelta, t.Adadelta,
         {"lr": 0.5, "rho": 0.8, "eps": 1e-4, "weight_decay": 0.1, "maximize": True}, _HALF),
        ("adamax", o.Adamax, t.Adamax, {}, ("float64", "float32")),
        ("adamax_betas_wd", o.Adamax, t.Adamax, {"lr": 1e-2, "betas": (0.5, 0.9), "weight_decay": 0.1},
         ("float64", "float32")),
        ("nadam", o.NAdam, t.NAdam, {}, ("float64", "float32")),
        ("nadam_decoupled_momentum_decay", o.NAdam, t.NAdam,
         {"lr": 1e-2, "momentum_decay": 0.02, "weight_decay": 0.1, "decoupled_weight_decay": True},
         ("float64", "float32")),
        ("nadam_l2_maximize", o.NAdam, t.NAdam, {"lr": 1e-2, "weight_decay": 0.1, "maximize": True},
         ("float64", "float32")),
        ("radam", o.RAdam, t.RAdam, {}, ("float64", "float32")),
        ("radam_decoupled_short_horizon", o.RAdam, t.RAdam,  # beta2 0.9: rectification starts at step 6
         {"lr": 1e-2, "betas": (0.8, 0.9), "weight_decay": 0.1, "decoupled_weight_decay": True},
         ("float64", "float32")),
        ("adam_decoupled_flag", o.Adam, t.Adam, {"lr": 1e-2, "weight_decay": 0.1, "decoupled_weight_decay": True},
         ("float64", "float32")),
    ]
    cases = [OptimizerCase(name, np_cls, t_cls, hyper, dtypes=dtypes, steps=60, description=f"{t_cls.__name__} {hyper}")
             for name, np_cls, t_cls, hyper, dtypes in plain]
    groups = ({"params": [0], "lr": 3e-2, "weight_decay": 0.1}, {"params": [1, 2]})
    # (name, numpy class, torch class, hyper, first group's own options, schedule, dtypes)
    matrix: list[tuple[str, type, type, dict[str, Any], dict[str, Any], Schedule, tuple[str, ...]]] = [
        ("sgd_groups_steplr", o.SGD, t.SGD, {"lr": 0.05, "momentum": 0.9},
         {"nesterov": True}, _schedule("StepLR", step_size=7, gamma=0.5), _HALF),
        ("adam_groups_cosine", o.Adam, t.Adam, {"lr": 1e-3, "eps": 1e-3},
         {"amsgrad": True}, _schedule("CosineAnnealingLR", T_max=25, eta_min=1e-4), _HALF),
        ("adamw_groups_onecycle", o.AdamW, t.AdamW, {"lr": 1e-3},
         {}, _schedule("OneCycleLR", max_lr=[5e-2, 1e-2], total_steps=70), ("float64", "float32")),
        ("rmsprop_groups_exponential", o.RMSprop, t.RMSprop, {"lr": 1e-3, "eps": 1e-3},
         {"centered": True, "momentum": 0.5}, _schedule("ExponentialLR", gamma=0.97), _HALF),
        ("adagrad_groups_multistep", o.Adagrad, t.Adagrad, {"lr": 1e-2},
         {"lr_decay": 0.01}, _schedule("MultiStepLR", milestones=[5, 20, 20], gamma=0.5), ("float64", "float32")),
        ("adadelta_groups_lambda", o.Adadelta, t.Adadelta, {"lr": 1.0},
         {"rho": 0.5}, _schedule("LambdaLR", lr_lambda=_half_life), ("float64", "float32")),
        ("adamax_groups_linear", o.Adamax, t.Adamax, {"lr": 2e-3, "eps": 1e-3},
         {"betas": (0.5, 0.99)}, _schedule("LinearLR", start_factor=0.25, total_iters=30), _HALF),
        ("nadam_groups_cosine", o.NAdam, t.NAdam, {"lr": 2e-3, "eps": 1e-3},
         {"momentum_decay": 0.02}, _schedule("CosineAnnealingLR", T_max=15), _HALF),
        ("radam_groups_linear", o.RAdam, t.RAdam, {"lr": 1e-3, "eps": 1e-3},
         {"betas": (0.8, 0.9), "decoupled_weight_decay": True}, _schedule("LinearLR", total_iters=10), _HALF),
    ]
    for name, np_cls, t_cls, hyper, own, schedule, dtypes in matrix:
        case_groups = ({**groups[0], **own}, groups[1])
        cases.append(OptimizerCase(
            name, np_cls, t_cls, hyper, dtypes=dtypes, steps=60, param_groups=case_groups, scheduler=schedule,
            none_grads=True, swap_state_at=25,
            description=f"{t_cls.__name__} {hyper}, groups {own}, {schedule.torch_cls.__name__}, None grads, "
                        "state swapped after step 25"))
    return cases


for _opt_case in _matrix_cases():
    register_optimizer(_opt_case)
