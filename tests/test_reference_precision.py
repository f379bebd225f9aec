"""A reference computing below float64: failed with its cause named, or judged at its declared precision.

Issues #20 and #21: a NumPy attention computed in float32 used to pass a float64 check (its own float32
rounding set the measured floor, hiding errors of 2e-6 of the gradient). Now the reference's precision is
measured apart from the floor; with ``reference_dtype=`` it is held to twice torch's own error in that
dtype (plus a few units of its last place), so a real bug of 1e-4 still fails.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import gradcheck_lab as gl


def attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, dt: type = np.float64, bug: float = 0.0,
              last_in_float64: bool = False) -> tuple[float, tuple[np.ndarray, ...]]:
    r"""L = sum(P V), P = softmax(Q K^T / sqrt(d)) by rows, computed in ``dt``.

    dL/dV = P^T 1; dL/dP = 1 V^T; the softmax backward per row dS = P * (dP - sum(dP * P));
    dL/dQ = dS K / sqrt(d), dL/dK = dS^T Q / sqrt(d). ``bug`` scales dL/dQ by 1 + bug;
    ``last_in_float64`` does the final division of dQ and dK in float64 (results not float32 numbers).
    """
    q, k, v = (a.astype(dt) for a in (q, k, v))
    root = np.sqrt(q.shape[-1])
    s = q @ k.T / dt(root)
    p = np.exp(s - s.max(-1, keepdims=True))
    p = p / p.sum(-1, keepdims=True)
    out = p @ v
    dp = np.ones_like(out) @ v.T
    ds = p * (dp - (dp * p).sum(-1, keepdims=True))
    if last_in_float64:
        dq = (ds @ k).astype(np.float64) / root * (1 + bug)
        dk = (ds.T @ q).astype(np.float64) / root
    else:
        dq = ds @ k / dt(root) * dt(1 + bug)
        dk = ds.T @ q / dt(root)
    return float(out.sum()), (dq.astype(np.float64), dk.astype(np.float64), p.T.sum(-1, keepdims=True)
                              @ np.ones((1, v.shape[1]), dtype=dt).astype(np.float64))


def torch_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return (torch.softmax(q @ k.T / q.shape[-1] ** 0.5, -1) @ v).sum()


def inputs(seed: int) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    return tuple(rng.normal(size=(8, 16)) for _ in range(3))


SEEDS = range(3)


@pytest.mark.parametrize("seed", SEEDS)
def test_float64_attention_passes(seed: int) -> None:
    report = gl.check_gradients(attention, torch_attention, inputs(seed))
    assert report.verdict == "passed" and report.error_ratio is None


@pytest.mark.parametrize("last_in_float64", [False, True])
@pytest.mark.parametrize("seed", SEEDS)
def test_float32_reference_fails_with_its_cause_named(seed: int, last_in_float64: bool) -> None:
    def reference(q: np.ndarray, k: np.ndarray, v: np.ndarray) -> tuple[float, tuple[np.ndarray, ...]]:
        return attention(q, k, v, np.float32, last_in_float64=last_in_float64)

    with pytest.raises(gl.GradientMismatch) as info:
        gl.check_gradients(reference, torch_attention, inputs(seed))
    message = str(info.value)
    assert "the reference computes in float32" in message and "reference_dtype='float32'" in message
    assert info.value.report.cause is not None


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("seed", SEEDS)
def test_float32_reference_passes_at_its_declared_precision(seed: int, dtype: str) -> None:
    report = gl.check_gradients(lambda q, k, v: attention(q, k, v, np.float32), torch_attention, inputs(seed),
                                dtype=dtype, reference_dtype="float32")
    assert report.verdict == "passed"
    assert report.error_ratio is not None  # the reference's error over torch's own float32 error, stated


@pytest.mark.parametrize("seed", SEEDS)
def test_float32_reference_with_a_real_bug_fails_at_its_declared_precision(seed: int) -> None:
    with pytest.raises(gl.GradientMismatch, match="less accurate than torch in float32") as info:
        gl.check_gradients(lambda q, k, v: attention(q, k, v, np.float32, bug=1e-4), torch_attention, inputs(seed),
                           reference_dtype="float32")
    assert info.value.report.error_ratio > 2.0


def test_float16_reference_needs_its_declaration() -> None:
    def reference(q: np.ndarray, k: np.ndarray, v: np.ndarray) -> tuple[float, tuple[np.ndarray, ...]]:
        return attention(q, k, v, np.float16)

    with pytest.raises(gl.GradientMismatch, match="computes in float16"):
        gl.check_gradients(reference, torch_attention, inputs(0))
    assert gl.check_gradients(reference, torch_attention, inputs(0), reference_dtype="float16").passed
    with pytest.raises(gl.GradientMismatch):
        gl.check_gradients(lambda q, k, v: attention(q, k, v, np.float16, bug=3e-2), torch_attention, inputs(0),
                           reference_dtype="float16")
