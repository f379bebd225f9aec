"""A right gradient that is exactly zero passes; a wrong small gradient is still reported (issue #20).

The bound's scale must not collapse to torch's rounding noise where the true gradient is exactly zero
(KL(softmax(p) || softmax(q)) at p = q = 0: the reference gives exact zeros, torch ~1e-18), and the
fix must not hide a real error at a small but nonzero gradient.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import gradcheck_lab as gl

DTYPES = ["float64", "float32", "float16", "bfloat16"]


def _log_softmax(z: np.ndarray) -> np.ndarray:
    m = z.max(-1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(-1, keepdims=True))


def kl(p: np.ndarray, q: np.ndarray, q_scale: float = 1.0) -> tuple[float, tuple[np.ndarray, np.ndarray]]:
    """KL(softmax(p) || softmax(q)) averaged over rows ("batchmean").

    With s = softmax(p), r = softmax(q), L = sum_i s_i (log s_i - log r_i) per row:
    dL/dp_i = s_i (log s_i - log r_i - L) (the softmax Jacobian applied to log s - log r + 1, the 1 vanishing
    because sum_i s_i (delta_ij - s_j) = 0), and dL/dq_i = r_i - s_i (log-softmax's Jacobian applied to -s).
    ``q_scale`` plants a wrong factor in dL/dq.
    """
    lp, lq = _log_softmax(p), _log_softmax(q)
    sp, sq = np.exp(lp), np.exp(lq)
    n = p.shape[0]
    row = (sp * (lp - lq)).sum(-1, keepdims=True)
    return float(row.sum() / n), (sp * ((lp - lq) - row) / n, q_scale * (sq - sp) / n)


def kl_dropping_q(p: np.ndarray, q: np.ndarray) -> tuple[float, tuple[np.ndarray, np.ndarray]]:
    """A wrong reference: "the gradient in q is zero" (true only where p = q)."""
    value, (gp, gq) = kl(p, q)
    return value, (gp, np.zeros_like(gq))


def torch_kl(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    return F.kl_div(F.log_softmax(q, -1), F.softmax(p, -1), reduction="batchmean")


@pytest.mark.parametrize("dtype", DTYPES)
def test_exact_zero_gradient_passes(dtype: str) -> None:
    """At p = q = 0 every gradient is exactly zero; torch's float64 backward leaves ~1e-18 of rounding."""
    p = np.zeros((3, 5))
    report = gl.check_gradients(kl, torch_kl, (p, p.copy()), dtype=dtype)
    assert report.verdict == "passed"


@pytest.mark.parametrize("dtype", DTYPES)
def test_wrong_factor_at_a_small_gradient_is_reported(dtype: str) -> None:
    """p and q a few 1e-6 apart: the gradient in q is ~1e-7; a 1.5x factor on it is a mistake."""
    rng = np.random.default_rng(1)
    p = rng.normal(size=(3, 5))
    q = p + 1e-2 * rng.normal(size=(3, 5))
    with pytest.raises(gl.GradientMismatch, match="'q'"):
        gl.check_gradients(lambda p, q: kl(p, q, q_scale=1.5), torch_kl, (p, q), dtype=dtype)


@pytest.mark.parametrize("scale", [1e-1, 1e-2])
def test_dropped_small_gradient_is_reported(scale: float) -> None:
    """A reference returning exact zeros where the true gradient is small but nonzero is wrong."""
    rng = np.random.default_rng(2)
    p = rng.normal(size=(3, 5))
    q = p + scale * rng.normal(size=(3, 5))
    with pytest.raises(gl.GradientMismatch, match="'q'"):
        gl.check_gradients(kl_dropping_q, torch_kl, (p, q))
    assert gl.check_gradients(kl, torch_kl, (p, q)).verdict == "passed"


def test_dropped_gradient_at_zero_inputs_is_reported() -> None:
    """At p = 0 and q != 0 (every input of p exactly zero) a wrong zero gradient in q is still seen."""
    q = np.random.default_rng(3).normal(size=(3, 5))
    with pytest.raises(gl.GradientMismatch, match="'q'"):
        gl.check_gradients(kl_dropping_q, torch_kl, (np.zeros((3, 5)), q))
    assert gl.check_gradients(kl, torch_kl, (np.zeros((3, 5)), q)).verdict == "passed"
