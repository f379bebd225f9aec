"""The catalogue of normalization, convolution and pooling cases, registered when the registry is imported.

Non-scalar ops are checked through the scalar ``<op(inputs), grad_out>`` with ``grad_out`` a data input
(``constants=``): its gradient would only repeat the forward. Arrays are built from a drawn seed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from hypothesis import strategies as st

from gradcheck_lab.cases.registry import Case, register
from gradcheck_lab.gradients import strategies as gst
from gradcheck_lab.gradients.inputs import ReferenceFn, TorchFn
from gradcheck_lab.reference import conv as ref_conv
from gradcheck_lab.reference import normalization as ref_norm


def _pair(value: int | Sequence[int]) -> tuple[int, int]:
    """A conv or pool size given as an int or a pair, as a pair."""
    if isinstance(value, int):
        return value, value
    first, second = value
    return int(first), int(second)


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
    s, p, d = (_pair(conv.get(k, v)) for k, v in (("stride", 1), ("padding", 0), ("dilation", 1)))
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
    k = _pair(pool["kernel_size"])
    s = _pair(pool.get("stride") or k)
    p = _pair(pool.get("padding", 0))
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
