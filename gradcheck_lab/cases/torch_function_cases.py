r"""Custom ``torch.autograd.Function`` kernels that compute in float32 whatever their inputs' dtype, with planted twins.

Each :class:`TorchFunctionCase` pairs a candidate (``SomeFunction.apply``) with the torch composition it replaces
and an input maker; :data:`TORCH_FUNCTION_CASES` lists the right kernels and their twins, each twin with the
bug it plants and the dtypes in which it must be reported. Run ``python -m gradcheck_lab.cases.torch_function_cases``
to measure every case over many seeds (the numbers quoted in :mod:`gradcheck_lab.gradients.torch_function_rule`).

**Softmax cross-entropy over a vocabulary** (logits :math:`z \in \mathbb{R}^{N\times V}`, targets :math:`y`, rows
with ``y == -100`` ignored, :math:`n` rows kept): :math:`L = \frac1n \sum_{i\,kept} (\operatorname{lse}(z_i) -
z_{i y_i})`. With :math:`p = \operatorname{softmax}(z_i)`, :math:`\partial \operatorname{lse}/\partial z_i = p` and
:math:`\partial z_{iy_i}/\partial z_i = e_{y_i}`, so :math:`\partial L / \partial z_i = (p - e_{y_i}) / n` on kept
rows and 0 on ignored ones, times the upstream gradient.

**LayerNorm over the last axis** (:math:`\hat x = (x - \mu)\,r`, :math:`r = (\sigma^2 + \epsilon)^{-1/2}`,
:math:`y = \hat x\, w + b`, :math:`H` features): with :math:`d\hat x = dy\, w`,
:math:`dx = r\,(d\hat x - \overline{d\hat x} - \hat x\, \overline{d\hat x\, \hat x})` (bars: means over the
:math:`H` features; the first mean from :math:`\partial\mu`, the second from :math:`\partial\sigma^2`),
:math:`dw = \sum_{rows} dy\, \hat x`, :math:`db = \sum_{rows} dy`. The backward recomputes :math:`\mu, r` from the
saved input with differentiable ops, so its double backward is right too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

IGNORE_INDEX = -100
VOCABULARY = 32_768
FEATURES = 1024
EPS = 1e-5


def wide(t: torch.Tensor) -> torch.Tensor:
    """``t`` in the accumulation dtype: float32 for float16/bfloat16/float32 inputs, float64 for float64 ones."""
    return t.to(torch.promote_types(t.dtype, torch.float32))


# --- softmax cross-entropy -------------------------------------------------------------------------------------

def _cross_entropy_forward(ctx: Any, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    ctx.save_for_backward(logits, target)
    z = wide(logits)
    kept = target != IGNORE_INDEX
    picked = z.gather(-1, target.clamp_min(0)[:, None]).squeeze(-1)
    loss = ((torch.logsumexp(z, dim=-1) - picked) * kept).sum() / kept.sum().clamp_min(1)
    return loss.to(logits.dtype)


def _cross_entropy_grad(logits: torch.Tensor, target: torch.Tensor, g: torch.Tensor, *, onehot_term: bool = True,
                        masked: bool = True) -> torch.Tensor:
    """(softmax(z) - onehot(y)) / n on kept rows, times g, in float32 (differentiable: double backward works)."""
    z = wide(logits)
    kept = target != IGNORE_INDEX
    grad = torch.softmax(z, dim=-1)
    if onehot_term:
        grad = grad - torch.zeros_like(z).scatter(-1, target.clamp_min(0)[:, None], 1.0)
    if masked:
        grad = grad * kept[:, None]
    return (grad * (wide(g) / kept.sum().clamp_min(1))).to(logits.dtype)


class SoftmaxCrossEntropy(torch.autograd.Function):
    """Fused softmax cross-entropy (mean over kept rows, ``IGNORE_INDEX`` rows ignored), float32 inside."""

    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return _cross_entropy_forward(ctx, logits, target)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor, None]:
        logits, target = ctx.saved_tensors
        return _cross_entropy_grad(logits, target, g), None


class CrossEntropyMissingOnehot(SoftmaxCrossEntropy):
    """Twin: the backward forgets the ``- onehot(y)`` term (the derivative of the picked logit)."""

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor, None]:
        logits, target = ctx.saved_tensors
        return _cross_entropy_grad(logits, target, g, onehot_term=False), None


class CrossEntropyMaskForwardOnly(SoftmaxCrossEntropy):
    """Twin: ignored rows are masked in the forward but still get a gradient in the backward."""

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor, None]:
        logits, target = ctx.saved_tensors
        return _cross_entropy_grad(logits, target, g, masked=False), None


class OnlineSoftmaxCrossEntropy(SoftmaxCrossEntropy):
    """The same loss with the log-sum-exp computed the way tiled kernels do: over blocks of the vocabulary,
    keeping a running maximum and a rescaled running sum (float32). A right kernel, summing in another order."""

    block = 4096

    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(logits, target)
        z = wide(logits)
        running_max = torch.full(z.shape[:-1], -torch.inf, dtype=z.dtype, device=z.device)
        running_sum = torch.zeros_like(running_max)
        for start in range(0, z.shape[-1], OnlineSoftmaxCrossEntropy.block):
            chunk = z[:, start:start + OnlineSoftmaxCrossEntropy.block]
            new_max = torch.maximum(running_max, chunk.amax(-1))
            running_sum = running_sum * torch.exp(running_max - new_max) + torch.exp(chunk - new_max[:, None]).sum(-1)
            running_max = new_max
        kept = target != IGNORE_INDEX
        picked = z.gather(-1, target.clamp_min(0)[:, None]).squeeze(-1)
        loss = ((running_max + torch.log(running_sum) - picked) * kept).sum() / kept.sum().clamp_min(1)
        return loss.to(logits.dtype)


def cross_entropy_reference(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """torch's composition: ``F.cross_entropy`` with the same ``ignore_index``."""
    return F.cross_entropy(logits, target, ignore_index=IGNORE_INDEX)


def cross_entropy_inputs(seed: int, rows: int = 4, vocabulary: int = VOCABULARY) -> tuple[np.ndarray, np.ndarray]:
    """Logits of scale 3 (a softmax far from uniform) and targets, the last row ignored."""
    rng = np.random.default_rng([seed, 0xCE])
    target = rng.integers(0, vocabulary, size=rows)
    target[-1] = IGNORE_INDEX
    return 3.0 * rng.standard_normal((rows, vocabulary)), target


# --- LayerNorm ------------------------------------------------------------------------------------------------

def _sequential_sum(x: torch.Tensor) -> torch.Tensor:
    """Sum over the last axis one element after another in ``x``'s own dtype: an accumulator in bfloat16."""
    acc = torch.zeros(x.shape[:-1], dtype=x.dtype, device=x.device)
    for j in range(x.shape[-1]):
        acc = acc + x[..., j]
    return acc[..., None]


def _statistics(x: torch.Tensor, low_precision_sums: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and reciprocal standard deviation over the last axis, in float32 (or summed in ``x``'s dtype)."""
    if low_precision_sums:
        n = x.shape[-1]
        mean = _sequential_sum(x) / n
        var = _sequential_sum((x - mean) ** 2) / n
        return wide(mean), torch.rsqrt(wide(var) + EPS)
    z = wide(x)
    mean = z.mean(-1, keepdim=True)
    return mean, torch.rsqrt(((z - mean) ** 2).mean(-1, keepdim=True) + EPS)


def _layer_norm_grads(x: torch.Tensor, w: torch.Tensor, g: torch.Tensor, mean: torch.Tensor, rstd: torch.Tensor, *,
                      second_term: bool = True, weight_scale: float = 1.0) -> tuple[torch.Tensor, ...]:
    xhat = (wide(x) - mean) * rstd
    dy = wide(g)
    dxhat = dy * wide(w)
    inner = dxhat - dxhat.mean(-1, keepdim=True)
    if second_term:
        inner = inner - xhat * (dxhat * xhat).mean(-1, keepdim=True)
    dx = rstd * inner
    rows = dy.reshape(-1, dy.shape[-1])
    dw = (rows * xhat.reshape(rows.shape)).sum(0) * weight_scale
    return dx.to(x.dtype), dw.to(w.dtype), rows.sum(0).to(w.dtype)


class LayerNorm(torch.autograd.Function):
    """LayerNorm over the last axis, statistics and gradients accumulated in float32; the backward recomputes the
    statistics from the saved input, so it is differentiable (double backward)."""

    low_precision_sums = False

    @classmethod
    def forward(cls, ctx: Any, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, w)
        mean, rstd = _statistics(x, cls.low_precision_sums)
        return ((wide(x) - mean) * rstd * wide(w) + wide(b)).to(x.dtype)

    @classmethod
    def backward(cls, ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x, w = ctx.saved_tensors
        return _layer_norm_grads(x, w, g, *_statistics(x, cls.low_precision_sums))


class LayerNormMissingTerm(LayerNorm):
    """Twin: the backward drops ``- xhat * mean(dxhat * xhat)``, the path through the variance."""

    @classmethod
    def backward(cls, ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x, w = ctx.saved_tensors
        return _layer_norm_grads(x, w, g, *_statistics(x), second_term=False)


class LayerNormWeightGradAveraged(LayerNorm):
    """Twin: the weight's gradient (only) is averaged over the rows instead of summed."""

    @classmethod
    def backward(cls, ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x, w = ctx.saved_tensors
        return _layer_norm_grads(x, w, g, *_statistics(x), weight_scale=1.0 / (x.numel() // x.shape[-1]))


class LayerNormLowPrecisionSums(LayerNorm):
    """Twin: mean and variance accumulated one element at a time in the input's dtype (bfloat16: 8 bits)."""

    low_precision_sums = True


class LayerNormSavedStatistics(LayerNorm):
    """Twin for ``order=2``: the backward reuses the mean and rstd saved by the forward (computed without
    autograd), so its first derivatives are right but its double backward misses their dependence on x."""

    @classmethod
    def forward(cls, ctx: Any, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        mean, rstd = _statistics(x)
        ctx.save_for_backward(x, w, mean, rstd)
        return ((wide(x) - mean) * rstd * wide(w) + wide(b)).to(x.dtype)

    @classmethod
    def backward(cls, ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x, w, mean, rstd = ctx.saved_tensors
        return _layer_norm_grads(x, w, g, mean, rstd)


def layer_norm_reference(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """torch's composition: ``F.layer_norm`` over the last axis."""
    return F.layer_norm(x, (x.shape[-1],), w, b, EPS)


def layer_norm_inputs(seed: int, rows: int = 32, features: int = FEATURES) -> tuple[np.ndarray, ...]:
    """Activations with an offset (the mean matters), weights near 1, small biases."""
    rng = np.random.default_rng([seed, 0x1A])
    x = 2.0 * rng.standard_normal((rows, features)) + 0.5
    return x, 1.0 + 0.1 * rng.standard_normal(features), 0.1 * rng.standard_normal(features)


# --- mean squared error: a scalar output, where torch's own error is sometimes near 0 by luck ----------------------

class MeanSquaredError(torch.autograd.Function):
    r""":math:`L = \frac1n \sum_i (a_i - b_i)^2`, :math:`\partial L/\partial a = 2(a - b)/n = -\partial L/\partial b`;
    the sum accumulated in float32 in blocks of 256 (another order than torch's)."""

    @staticmethod
    def forward(ctx: Any, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(a, b)
        squares = ((wide(a) - wide(b)) ** 2).reshape(-1)
        padded = torch.nn.functional.pad(squares, (0, -squares.numel() % 256))
        return (padded.reshape(-1, 256).sum(0).sum() / squares.numel()).to(a.dtype)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a, b = ctx.saved_tensors
        grad = 2 * (wide(a) - wide(b)) * (wide(g) / a.numel())
        return grad.to(a.dtype), (-grad).to(b.dtype)


def mse_reference(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """torch's composition: ``F.mse_loss`` (mean reduction)."""
    return F.mse_loss(a, b)


def mse_inputs(seed: int, size: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng([seed, 0x35E])
    return rng.standard_normal(size), rng.standard_normal(size)


# --- the registry -------------------------------------------------------------------------------------------

LOW_PRECISION = ("bfloat16", "float16", "float32")


@dataclass(frozen=True)
class TorchFunctionCase:
    """A candidate, the torch composition it replaces, its inputs, and the bug it plants (None: a right kernel).

    ``wrong_in`` lists the dtypes in which the check must report it, ``right_in`` those in which the twin is in fact
    a right kernel (summing in its inputs' dtype is right in float32); in the others the bug is at the dtype's
    resolution limit (reported on some inputs, not all). ``order`` is the order that shows it.
    """

    name: str
    candidate: Callable[..., torch.Tensor]
    reference: Callable[..., torch.Tensor]
    inputs: Callable[[int], tuple[np.ndarray, ...]]
    constants: tuple[int, ...] = ()
    bug: str | None = None
    wrong_in: tuple[str, ...] = ()
    right_in: tuple[str, ...] = ()
    order: int = 1


def _ce(name: str, candidate: Callable[..., torch.Tensor], **planted: Any) -> TorchFunctionCase:
    return TorchFunctionCase(name, candidate, cross_entropy_reference, cross_entropy_inputs, constants=(1,),
                             **planted)


def _ln(name: str, candidate: Callable[..., torch.Tensor], **planted: Any) -> TorchFunctionCase:
    return TorchFunctionCase(name, candidate, layer_norm_reference, layer_norm_inputs, **planted)


def _cases() -> dict[str, TorchFunctionCase]:
    cases = [
        _ce("softmax_cross_entropy", SoftmaxCrossEntropy.apply),
        _ce("softmax_cross_entropy/online", OnlineSoftmaxCrossEntropy.apply),
        _ce("softmax_cross_entropy/missing_onehot", CrossEntropyMissingOnehot.apply,
            bug="a missing term: the backward forgets - onehot(y)", wrong_in=LOW_PRECISION),
        _ce("softmax_cross_entropy/mask_forward_only", CrossEntropyMaskForwardOnly.apply,
            bug="a mask applied in the forward but not in the backward", wrong_in=LOW_PRECISION),
        TorchFunctionCase("mean_squared_error", MeanSquaredError.apply, mse_reference, mse_inputs),
        _ln("layer_norm", LayerNorm.apply),
        _ln("layer_norm/missing_term", LayerNormMissingTerm.apply,
            bug="a missing term: the path through the variance", wrong_in=LOW_PRECISION),
        _ln("layer_norm/weight_grad_averaged", LayerNormWeightGradAveraged.apply,
            bug="a wrong scale in one gradient only: dw averaged over rows", wrong_in=LOW_PRECISION),
        _ln("layer_norm/bfloat16_sums", LayerNormLowPrecisionSums.apply,
            bug="mean and variance accumulated in bfloat16 over 1024 elements", wrong_in=("bfloat16", "float16"),
            right_in=("float32",)),
        _ln("layer_norm/saved_statistics", LayerNormSavedStatistics.apply,
            bug="double backward misses the statistics' dependence on x", wrong_in=("float16", "float32"), order=2),
    ]
    return {case.name: case for case in cases}


TORCH_FUNCTION_CASES: dict[str, TorchFunctionCase] = _cases()


def measure(seeds: int = 100, dtypes: tuple[str, ...] = LOW_PRECISION, names: tuple[str, ...] = ()) -> list[str]:
    """Every case (or those named) over ``seeds`` seeds in each dtype: how often it is reported, its error ratio
    (median and extremes), and the resolution floor at which it would pass, in ulps at the tensor's scale:
    ``max over tensors of (candidate error - factor * torch's error) / (eps * scale)``, the largest over the seeds
    for a right kernel (the floor it needs), the smallest for a twin (the floor that would hide it)."""
    from gradcheck_lab.errors import GradientMismatch
    from gradcheck_lab.gradients.torch_function import check_torch_function

    lines = []
    for case in TORCH_FUNCTION_CASES.values():
        if names and case.name not in names:
            continue
        for dtype in dtypes:
            eps = float(torch.finfo(getattr(torch, dtype)).eps)
            reported, ratios, needed = 0, [], []
            for seed in range(seeds):
                try:
                    report = check_torch_function(case.candidate, case.reference, case.inputs(seed), dtype=dtype,
                                                  constants=case.constants, order=case.order, seed=seed)
                except GradientMismatch as exc:
                    report, reported = exc.report, reported + 1
                ratios.append(report.error_ratio)
                needed.append(max((t.candidate_error - report.factor * t.reference_error) / (eps * t.scale)
                                  for t in report.tensors.values()))
            expect = ("reported" if dtype in case.wrong_in else "passes" if case.bug is None or dtype in case.right_in
                      else "either")
            floor = max(needed) if expect == "passes" else min(needed)
            lines.append(f"{case.name:40s} {dtype:9s} must be {expect:8s}: reported {reported:3d}/{seeds}, error ratio "
                         f"median {np.median(ratios):8.3g} [{min(ratios):.3g}, {max(ratios):.3g}], floor that "
                         f"{'it needs' if expect == 'passes' else 'hides it on a seed'} {floor:8.3g} ulps")
            print(lines[-1], flush=True)
    return lines


if __name__ == "__main__":
    import sys

    measure(int(sys.argv[1]) if len(sys.argv) > 1 else 100, names=tuple(sys.argv[2:]))
