r"""Every default tolerance, in one place.

An element of a compared tensor passes when

.. math::
    |a_i - e_i| \le \text{atol} + \text{rtol}\,|e_i| + \text{ntol}\,S_t + \text{gtol}\,S_g
                  + \text{noise}\,\nu_i

where :math:`e` is the float64 reference, :math:`a` the torch result, and

- :math:`\text{rtol}\,|e_i|`: the rounding of the element itself;
- :math:`S_t = \max(\|e\|_\infty, \|a\|_\infty)` of the tensor: elements that cancel to near
  zero are not held to a precision their inputs never had, and a check means the same at
  every scale (a gradient of 1e-8 is judged like one of 1);
- :math:`S_g`, the largest magnitude over all gradients of the check (for the value: its
  condition scale :math:`\sum_k \langle |\nabla_k f|, |x_k| \rangle`), times
  :math:`\text{gtol} = 16\,u\sqrt{n}`: the random-walk rounding of reductions over the
  :math:`n` elements of the largest input;
- :math:`\nu_i = |a^{(64)}_i - a_i|`, for dtypes below float64: the measured rounding noise of
  the torch side, from re-running the torch function in float64 on the same rounded inputs.
  It widens the bound only where torch itself cannot do better in that dtype.

``atol`` is a true absolute floor, kept tiny so that small wrong gradients are not excused.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

from gradcheck_lab.dtypes import unit_roundoff


@dataclass(frozen=True)
class Tolerance:
    """The terms of the bound above; ``noise`` multiplies the measured torch noise."""

    rtol: float
    atol: float
    ntol: float
    gtol: float = 0.0
    noise: float = 0.0

    def describe(self) -> str:
        parts = f"rtol={self.rtol:.1e}, atol={self.atol:.1e}, ntol={self.ntol:.1e}"
        return parts + (f", noise x{self.noise:g}" if self.noise else "")


# float64 checks the math, not the rounding: rounding differences are ~1e-16 relative, and any
# real bug is orders of magnitude above 1e-7 (torch.testing's float64 default). ntol = 1e-13 is
# ~1000u: room for sqrt(n) u accumulation, yet a wrong 3e-6 element beside a 3e6 one is caught.
# Below float64 the measured noise term carries the rigour: |ref - a| <= |ref - a64| + |a64 - a|,
# where the first term is float64-level and the second is measured; 4x leaves room to spare.
# The per-dtype terms then bound a well-conditioned computation from the unit roundoff u:
# float32 (u = 6e-8): rtol 1e-5 is ~170u, a chain of ~10 rounded ops plus sqrt(n) u of accumulation
# for n up to ~10^4; ntol 1e-6 (~16u) for elements that cancel.
# float16 (u = 4.9e-4) and bfloat16 (u = 3.9e-3): rtol 16u for ~8 ops whose outputs are rounded to the
# dtype (torch accumulates matmuls and sums in float32, so n adds little on top); ntol u.
# atol is a floor for all-zero tensors only, far below any gradient worth checking.
_GRADIENT_DEFAULTS: dict[torch.dtype, Tolerance] = {
    torch.float64: Tolerance(rtol=1e-7, atol=1e-15, ntol=1e-13),
    torch.float32: Tolerance(rtol=1e-5, atol=1e-15, ntol=1e-6, noise=4.0),
    torch.float16: Tolerance(rtol=16 * unit_roundoff(torch.float16), atol=1e-15,
                             ntol=unit_roundoff(torch.float16), noise=4.0),
    torch.bfloat16: Tolerance(rtol=16 * unit_roundoff(torch.bfloat16), atol=1e-15,
                              ntol=unit_roundoff(torch.bfloat16), noise=4.0),
}

# TF32 matmuls keep 10 mantissa bits (u = 2^-11 = 4.9e-4): the same 16u as float16.
_TF32 = Tolerance(rtol=16 * 2.0**-11, atol=1e-15, ntol=2.0**-11, noise=4.0)

# Optimizer trajectories are fed the same gradients on both sides, so errors do not feed back:
# they grow at most linearly with the number of steps. float64 must stay tight enough to see
# an eps placement difference (~1e-3 relative on 1e-6 gradients, ~1e-8 on unit ones).
_TRAJECTORY_PER_STEP: dict[torch.dtype, float] = {
    torch.float64: 4 * unit_roundoff(torch.float64),
    torch.float32: 4 * unit_roundoff(torch.float32),
    torch.float16: 4 * unit_roundoff(torch.float16),
    torch.bfloat16: 4 * unit_roundoff(torch.bfloat16),
}
_TRAJECTORY_FLOOR: dict[torch.dtype, float] = {
    torch.float64: 1e-12,
    torch.float32: 1e-5,
    torch.float16: 1e-2,
    torch.bfloat16: 5e-2,
}

# Finite differences along a direction are compared with the analytic directional derivative
# relative to ||g||_2 (the largest it can be for a unit direction), plus the oracle's own error
# estimate (Richardson: the change between steps h and h/2) and its rounding, eps * |f| / h.
FD_RTOL = 1e-6
FD_SAFETY = 10.0


def without_measured_noise(tol: Tolerance) -> Tolerance:
    """The fallback when the torch function cannot run in float64: the element-wise rtol for cancelling elements too."""
    return replace(tol, ntol=max(tol.ntol, tol.rtol), noise=0.0)


def gradient_tolerance(
    dtype: torch.dtype,
    *,
    rtol: float | None = None,
    atol: float | None = None,
    numel: int = 1,
    tf32: bool = False,
) -> Tolerance:
    """The tolerance for comparing gradients computed in ``dtype`` with the float64 reference.

    ``rtol``/``atol`` override the defaults; an ``rtol`` tighter than a default scale term
    tightens that term too, so an explicit ``rtol`` is never silently loosened. ``numel`` is the
    size of the largest input (the reduction size); ``tf32`` selects the TF32 tolerance.
    """
    tol = _TF32 if (tf32 and dtype == torch.float32) else _GRADIENT_DEFAULTS[dtype]
    tol = replace(tol, gtol=16 * unit_roundoff(dtype) * math.sqrt(max(numel, 1)))
    if rtol is not None:
        if rtol < 0:
            raise ValueError(f"rtol must be >= 0, got {rtol}")
        tol = replace(tol, rtol=rtol, ntol=min(tol.ntol, rtol), gtol=min(tol.gtol, rtol))
    if atol is not None:
        if atol < 0:
            raise ValueError(f"atol must be >= 0, got {atol}")
        tol = replace(tol, atol=atol)
    return tol


def trajectory_tolerance(dtype: torch.dtype, steps: int, *, rtol: float | None = None,
                         atol: float | None = None) -> Tolerance:
    """The tolerance for parameters and state after ``steps`` optimizer steps in ``dtype``."""
    scale = max(_TRAJECTORY_FLOOR[dtype], _TRAJECTORY_PER_STEP[dtype] * max(steps, 1))
    # gtol multiplies the largest magnitude the entry has had over the trajectory.
    tol = Tolerance(rtol=scale, atol=0.0, ntol=scale, gtol=scale)
    if rtol is not None:
        tol = replace(tol, rtol=rtol, ntol=rtol, gtol=rtol)
    if atol is not None:
        tol = replace(tol, atol=atol)
    return tol
