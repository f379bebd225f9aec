"""The benchmark workloads: what each backend (NumPy reference, torch on a device) runs, and its work.

Workloads (``n`` is the size): a linear layer ``(n, n) x (n, n)`` forward+backward, the
Linear -> sigmoid -> MSE model forward+backward, an MLP with two hidden layers of width ``n``
forward+backward, a 3x3 convolution forward+backward and the conv classifier model
(:func:`conv_geometry`, :func:`conv_classifier_geometry`), and one step of each optimizer in
:data:`OPTIMIZERS` on ``n * n`` parameters.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from gradcheck_lab.reference import conv as ref_conv
from gradcheck_lab.reference import linear as ref_linear
from gradcheck_lab.reference import models, optim_blocks
from gradcheck_lab.reference import optim as ref_optim
from gradcheck_lab.reference.activations import sigmoid, sigmoid_backward

OPTIMIZERS: dict[str, tuple[str, dict[str, Any], int]] = {
    # workload: (class name in torch.optim and the reference, hyperparameters, arrays read or written a step)
    "adam": ("Adam", {"lr": 1e-3}, 7),  # p, g, m, v read; p, m, v written
    "adamw": ("AdamW", {"lr": 1e-3}, 7),
    "sgd": ("SGD", {"lr": 1e-3, "momentum": 0.9}, 5),
    "rmsprop": ("RMSprop", {"lr": 1e-2}, 5),
    "adagrad": ("Adagrad", {"lr": 1e-2}, 5),
    "adadelta": ("Adadelta", {"lr": 1.0}, 7),
    "adamax": ("Adamax", {"lr": 2e-3}, 7),
    "nadam": ("NAdam", {"lr": 2e-3}, 7),
    "radam": ("RAdam", {"lr": 1e-3}, 7),
}
"""One optimizer-step workload per rule: ``n * n`` parameters, one step, against torch's foreach."""
CONV_WORKLOADS = ("conv", "conv_classifier")
"""Workloads whose ceiling is the conv-shaped GEMM (:func:`conv_gemm_ceiling`)."""
WORKLOADS = ("linear", "sigmoid_mse", "mlp", *CONV_WORKLOADS, *OPTIMIZERS)
QUICK_SIZES = (16, 64, 256, 1024)
NUMPY_BACKEND_DTYPES = {torch.float64: np.float64, torch.float32: np.float32, torch.float16: np.float16}


@dataclass(frozen=True)
class Workload:
    """A callable to time and the work it does: ``flops`` or ``bytes`` per call."""

    run: Callable[[], Any]
    flops: float = 0.0
    bytes: float = 0.0


def random_inputs(rng: np.random.Generator, *shapes: tuple[int, ...], dtype: Any) -> list[np.ndarray]:
    # Not zeros: denormals and zero-skipping would flatter the timings.
    return [(rng.standard_normal(s) / math.sqrt(s[-1])).astype(dtype) for s in shapes]


def numpy_workload(name: str, n: int, dtype: torch.dtype) -> Workload:
    np_dtype = NUMPY_BACKEND_DTYPES.get(dtype)
    if np_dtype is None:
        raise ValueError(f"NumPy has no {dtype}")
    rng = np.random.default_rng(0)
    if name == "linear":
        x, w, b, g = random_inputs(rng, (n, n), (n, n), (n,), (n, n), dtype=np_dtype)
        return Workload(lambda: (ref_linear.linear(x, w, b), ref_linear.linear_backward(g, x, w)), flops=6 * n**3)
    if name == "sigmoid_mse":
        w, x, y = random_inputs(rng, (n, n), (n, n), (n, n), dtype=np_dtype)
        return Workload(lambda: models.sigmoid_mse(w, x, y), flops=6 * n**3)
    if name == "mlp":
        x, y, *ws = random_inputs(rng, (n, n), (n, n), (n, n), (n, n), (n, n), dtype=np_dtype)
        return Workload(lambda: _numpy_mlp(x, y, ws), flops=18 * n**3)
    if name in OPTIMIZERS:
        cls, hyper, arrays = OPTIMIZERS[name]
        params = random_inputs(rng, (n * n,), dtype=np_dtype)
        grads = random_inputs(rng, (n * n,), dtype=np_dtype)
        opt = getattr(ref_optim, cls)(params, **hyper)
        for _ in range(optim_blocks.TUNING_STEPS):  # its first steps choose its layout: not what is timed
            opt.step(grads)
        return Workload(lambda: opt.step(grads), bytes=arrays * n * n * np.dtype(np_dtype).itemsize)
    if name == "conv":
        (batch, channels, side), flops = conv_geometry(n)
        x, w, b = random_inputs(rng, (batch, channels, side, side), (channels, channels, 3, 3), (channels,),
                                dtype=np_dtype)
        g = random_inputs(rng, (batch, channels, side, side), dtype=np_dtype)[0]
        return Workload(lambda: (ref_conv.conv2d(x, w, b, padding=1),
                                 ref_conv.conv2d_backward(g, x, w, True, padding=1)), flops=flops)
    if name == "conv_classifier":
        (batch, channels, side, classes), flops = conv_classifier_geometry(n)
        cw, cb, fw, fb, x = random_inputs(rng, (channels, channels, 3, 3), (channels,),
                                    (classes, channels * side * side // 4), (classes,),
                                    (batch, channels, side, side), dtype=np_dtype)
        target = rng.integers(0, classes, batch)
        return Workload(lambda: models.conv_classifier(cw, cb, fw, fb, x, target), flops=flops)
    raise ValueError(f"unknown workload {name!r}")


# --- conv workload ---

def conv_geometry(n: int) -> tuple[tuple[int, int, int], float]:
    """``(batch, channels, side)`` and the forward+backward FLOPs of the conv workload at size ``n``.

    A 3x3 convolution, padding 1, 64 -> 64 channels, on ``side = n // 8`` square images (at least
    2): n = 256 is the issue's configuration (batch 32, 32x32). The batch is 32 up to that side,
    then shrinks to keep 32 * 32 * 32 pixels, so large ``n`` stays affordable (im2col holds
    ``9 * 64`` values a pixel). Three GEMMs of ``2 * 64 * 576`` FLOPs a pixel: forward, weight, input.
    """
    side = max(2, n // 8)
    batch = max(1, min(32, 32 * 32 * 32 // (side * side)))
    return (batch, 64, side), 3 * 2 * 64 * 64 * 9 * batch * side * side


def conv_classifier_geometry(n: int) -> tuple[tuple[int, int, int, int], float]:
    """``(batch, channels, side, classes)`` and the forward+backward FLOPs of the conv_classifier workload.

    The conv workload's convolution (:func:`conv_geometry`, the side rounded down to even for the
    2x2 pool) -> ReLU -> 2x2 max pool -> Linear to 10 classes -> cross-entropy. Counted: the
    convolution's three GEMMs and the linear layer's three (``2 * classes * channels * side^2 / 4``
    FLOPs an image each); the elementwise steps are not.
    """
    (batch, channels, side), _ = conv_geometry(n)
    side -= side % 2
    classes = 10
    conv = 3 * 2 * channels * channels * 9 * batch * side * side
    fc = 3 * 2 * batch * classes * channels * side * side // 4
    return (batch, channels, side, classes), conv + fc


def _numpy_mlp(x: np.ndarray, y: np.ndarray, ws: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Two sigmoid hidden layers and a linear output with MSE, backpropagated by hand."""
    h1 = sigmoid(x @ ws[0].T)
    h2 = sigmoid(h1 @ ws[1].T)
    out = h2 @ ws[2].T
    g_out = 2 * (out - y) / out.size
    g_h2 = sigmoid_backward(g_out @ ws[2], h2)
    g_h1 = sigmoid_backward(g_h2 @ ws[1], h1)
    return [g_h1.T @ x, g_h2.T @ h1, g_out.T @ h2]


def torch_workload(name: str, n: int, dtype: torch.dtype, device: torch.device) -> Workload:
    gen = torch.Generator(device="cpu").manual_seed(0)

    def leaf(*shape: int, grad: bool = True) -> torch.Tensor:
        t = (torch.randn(*shape, generator=gen, dtype=torch.float32) / math.sqrt(shape[-1])).to(device, dtype)
        return t.requires_grad_(grad)

    if name == "linear":
        x, w, b, g = leaf(n, n), leaf(n, n), leaf(n), leaf(n, n, grad=False)
        return Workload(lambda: torch.autograd.grad((F.linear(x, w, b) * g).sum(), (x, w, b)),
                        flops=6 * n**3)
    if name == "sigmoid_mse":
        w, x, y = leaf(n, n), leaf(n, n), leaf(n, n)
        return Workload(lambda: torch.autograd.grad(
            F.mse_loss(torch.sigmoid(x @ w.T), y), (w, x, y)), flops=6 * n**3)
    if name == "mlp":
        x, y = leaf(n, n, grad=False), leaf(n, n, grad=False)
        ws = [leaf(n, n) for _ in range(3)]

        def mlp() -> Any:
            h = torch.sigmoid(torch.sigmoid(x @ ws[0].T) @ ws[1].T)
            return torch.autograd.grad(F.mse_loss(h @ ws[2].T, y), ws)

        return Workload(mlp, flops=18 * n**3)
    if name in OPTIMIZERS:
        cls, hyper, arrays = OPTIMIZERS[name]
        p = leaf(n * n, grad=False)
        p.grad = leaf(n * n, grad=False)
        opt = getattr(torch.optim, cls)([p], **hyper, foreach=True)
        return Workload(opt.step, bytes=arrays * n * n * p.element_size())
    if name == "conv":
        (batch, channels, side), flops = conv_geometry(n)
        x, w, b = leaf(batch, channels, side, side), leaf(channels, channels, 3, 3), leaf(channels)
        g = leaf(batch, channels, side, side, grad=False)
        return Workload(lambda: torch.autograd.grad(
            (F.conv2d(x, w, b, padding=1) * g).sum(), (x, w, b)), flops=flops)
    if name == "conv_classifier":
        (batch, channels, side, classes), flops = conv_classifier_geometry(n)
        params = [leaf(channels, channels, 3, 3), leaf(channels), leaf(classes, channels * side * side // 4),
                  leaf(classes), leaf(batch, channels, side, side)]
        target = torch.randint(0, classes, (batch,), generator=gen).to(device)

        def conv_classifier() -> Any:
            cw, cb, fw, fb, x = params
            pooled = F.max_pool2d(F.relu(F.conv2d(x, cw, cb, padding=1)), 2)
            return torch.autograd.grad(F.cross_entropy(F.linear(pooled.flatten(1), fw, fb), target), params)

        return Workload(conv_classifier, flops=flops)
    raise ValueError(f"unknown workload {name!r}")

