r"""Every default tolerance, in one place: the error model behind every verdict.

A gradient check holds three results for each compared tensor (the value, and the gradient of
each input), all on the same inputs, rounded to the dtype under test:

- :math:`e`, the reference, computed in float64;
- :math:`t`, torch in the dtype under test;
- :math:`t^{64}`, torch in float64 (the same function re-run; absent only where it cannot run).

It makes two comparisons, each element by element:

1. **The math**, :math:`|e_i - t^{64}_i|`, in float64 whatever the dtype under test: both sides
   compute the same function of the same inputs in float64, so they may differ only by float64
   rounding. A wrong derivation shows here at float64 resolution in every dtype, which is far
   below what any dtype's own rounding could hide.
2. **The dtype**, :math:`|e_i - t_i|` (below float64 only): torch's own rounding in the dtype
   under test, which a dtype-specific bug on the torch side (a custom kernel's backward that
   loses precision in half precision) would exceed.

Each element passes when

.. math::
    |\text{error}_i| \le \text{atol} + \text{rtol}\,|e_i| + \text{ntol}\,S + \text{floor}\,\phi_i

- :math:`\text{rtol}\,|e_i|`: the rounding of the element itself;
- :math:`S = \max(\|e\|_\infty, \|t\|_\infty)` of the tensor: an element that cancels to near
  zero is not held to a precision its terms never had, and a check means the same at every scale
  (a gradient of 1e-8 is judged like one of 1); each tensor has its own :math:`S`, so mixed scales
  across tensors do not excuse each other;
- :math:`\phi_i`, the **measured rounding floor** at that input (:mod:`gradcheck_lab.core.floor`):
  the larger of how far the disagreement moves when the inputs move by a millionth (every
  intermediate re-rounded) and how far each side's result moves when the inputs move by a few
  ulps (a backward-stable computation is exact for inputs moved by a few ulps, so that is what
  rounding *can* do to it): large where sums cancel, tiny elsewhere. It costs extra calls, so it
  is measured only when an element exceeds the a-priori terms.

The a-priori terms (``rtol``, ``ntol``) bound a well-conditioned computation from the unit
roundoff :math:`u`; the floor takes over where conditioning is bad. The verdict:

- every element within its bound: **passed**, provided the bound stays below what the dtype must
  resolve (``resolution`` times :math:`S`);
- in the math comparison, an element beyond the a-priori terms, within the floor, where the floor
  exceeds the resolution: **inconclusive** (float64 rounding at this input can explain the
  disagreement, so the input cannot tell right from wrong);
- otherwise: a **mismatch**.

``atol`` is a true absolute floor, kept tiny so that small wrong gradients are not excused.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch

from gradcheck_lab.core.dtypes import unit_roundoff

_U64 = unit_roundoff(torch.float64)


@dataclass(frozen=True)
class Tolerance:
    """The terms of the bound above, for one comparison.

    ``precision`` names the arithmetic it judges (``"float64"`` for the math comparison, else the
    dtype); ``floor`` multiplies the measured rounding floor; ``resolution`` is the largest bound,
    relative to the tensor's largest magnitude, at which a check still resolves a wrong gradient.
    ``gtol`` multiplies a caller's global scale (optimizer trajectories: the largest magnitude an
    entry has had so far).
    """

    rtol: float
    atol: float
    ntol: float
    gtol: float = 0.0
    floor: float = 0.0
    resolution: float = 1.0
    precision: str = "float64"

    def bound(self, abs_reference: np.ndarray | float, *, scale: float | np.ndarray,
              global_scale: float | np.ndarray = 0.0, floor: np.ndarray | float | None = None, weight: float = 1.0,
              out: np.ndarray | None = None) -> np.ndarray:
        """The bound of the module docstring: ``atol + rtol |e| + ntol S + gtol G + floor phi``, the one place
        it is written.

        ``abs_reference`` is ``|e|`` (an array, written into ``out`` when given, or a number); ``scale`` is
        S, ``global_scale`` G (numbers, or one per element of ``abs_reference``), ``floor`` the measured floor
        phi (or None). For a bound
        summed against weights (the oracle's slack along a direction v: ``sum_i bound_i |v_i|``), pass
        ``abs_reference = sum |e_i||v_i|``, ``floor = sum phi_i |v_i|`` and ``weight = sum |v_i|``.
        """
        bound = np.multiply(abs_reference, self.rtol, out=out)
        bound += (self.atol + self.ntol * scale + self.gtol * global_scale) * weight
        if floor is not None and self.floor:
            bound += self.floor * floor
        return np.asarray(bound)

    def terms(self, abs_reference: float, *, scale: float, global_scale: float = 0.0,
              floor: float = 0.0) -> dict[str, float]:
        """Every term of :meth:`bound` at one element, by name (``gtol*G`` and ``floor*phi`` where they apply)."""
        terms = {"atol": self.atol, "rtol*|e|": self.rtol * abs_reference, "ntol*S": self.ntol * scale}
        if self.gtol:
            terms["gtol*G"] = self.gtol * global_scale
        if self.floor and floor:
            terms["floor*phi"] = self.floor * floor
        return terms

    def describe(self) -> str:
        text = f"rtol={self.rtol:.1e}, atol={self.atol:.1e}, ntol={self.ntol:.1e}"
        text += f", gtol={self.gtol:.1e}" if self.gtol else ""
        return text + (f", measured floor x{self.floor:g}" if self.floor else "")


# --- the math comparison (float64 against float64) -----------------------------------------------
# - rtol: sqrt(u) (1.05e-8) relative to the element. Two float64 evaluations of the same function
#   differ by far more than a few u where a rounded intermediate feeds a cancellation: 1 - tanh(z)^2
#   at a saturated tanh loses u / (1 - tanh^2) relatively, and a fused multiply-add on one side
#   avoids it; such intermediates keep their rounding when the inputs move by a few ulps, so the
#   measured floor cannot see them. A disagreement beyond sqrt(u), half of float64's digits, is no
#   longer such an artefact; it is still 100x below the 1e-6 a float64 check must resolve.
# - ntol: 2^8 u (2.8e-14) of the tensor's largest magnitude, for the reorderings of a reduction
#   (two summation orders differ by ~u sqrt(n) times the root-mean-square term, a few u of the
#   largest sum when terms do not cancel); it keeps a wrong 1e-3 element beside 1e3 ones visible.
# Sums that cancel harder are judged against the measured floor.
MATH_RTOL = _U64**0.5
MATH_NTOL = 2.0**8 * _U64

# The measured floor (gradcheck_lab.core.floor) is the largest change of the disagreement over three
# moves of the inputs, pooled so no element's is below its tensor's median. For a disagreement made
# by rounding, each moved point gives a fresh draw of it: the change is about sqrt(2) times its size,
# and its largest of three is rarely below the disagreement itself. A factor of 4 leaves room for
# the unlucky draws; a wrong derivation's disagreement barely changes over the move, so it stays far
# beyond four times its change.
FLOOR_FACTOR = 4.0

# The moves: a millionth of each element (2^-20), enough to round anew every intermediate whose
# rounding matters (a tanh saturated to 1 - 1e-10 included), small enough that a wrong gradient's
# part of the disagreement changes by less than a quarter of itself for relative conditions up to
# ~2.5e5. Below float64 with no float64 run to compare with, the torch side's own rounding must be
# redrawn too: moves of PERTURBATION_ULPS units of that dtype's roundoff.
MOVE = 2.0**-20
PERTURBATION_ULPS = 4.0

# The conditioning moves: random factors within 1 +- CONDITION_ULPS u of each element. A
# backward-stable computation is exact at inputs moved by a few ulps, so the change of a result
# under such moves is what rounding can do to it (its condition times u), even where the
# disagreement itself does not change under the larger moves above.
CONDITION_ULPS = 4.0

# Wider moves, 2^-10 of each element, measured only when elements are still past the floor, and
# adopted only if the widened floor explains every element of the check: a rounded
# intermediate can sit so close to a representable value that moves of 2^-20 do not re-round it
# (a softmax probability 1 - 3e-12 moves by 7e-17 when its logit of 28 moves by 2^-20, less than
# float64's spacing of 1.1e-16 near 1), while 2^-10 redraws it. It cannot hide a wrong gradient
# the dtype must resolve: an error past `resolution` within the widened floor is inconclusive,
# never passed, and only where the wrong part changes by a quarter of itself over a move of 1e-3,
# i.e. where the gradient's relative condition exceeds ~250.
WIDE_MOVE = 2.0**-10

# --- the dtype comparison (torch in the dtype against the float64 reference) ---------------------
# torch rounds each op's output to the dtype (float16/bfloat16 matmuls and sums accumulate in
# float32), so a correct result carries a few u relative to the element and to the tensor's scale;
# measured on this project's cases: float32 <= 5u, float16 <= 2u, bfloat16 <= 2u of S. 16u covers
# chains of up to ~16 rounded ops; the measured floor (inputs moved by PERTURBATION_ULPS of the
# dtype) takes over where cancellation amplifies it. Its factor is larger than the math
# comparison's: the accumulated rounding of a reduction behaves like perturbing each of its terms,
# which input perturbations reproduce only up to a constant.
DTYPE_ULPS = 16.0
DTYPE_FLOOR_FACTOR = 16.0

# --- resolution: the promise ------------------------------------------------------------------
# A wrong gradient whose worst element is off by `resolution` times its tensor's largest magnitude
# is reported on every input where the check is not inconclusive. float64 checks the math; below
# it, what each dtype must resolve (torch's own error in it is a few u, see above).
RESOLUTION: dict[torch.dtype, float] = {
    torch.float64: 1e-6,
    torch.float32: 1e-5,
    torch.float16: 1e-2,
    torch.bfloat16: 1e-1,
}

# TF32 matmuls keep 10 mantissa bits (u = 2^-11 = 4.9e-4), like float16.
_TF32_ROUNDOFF = 2.0**-11

ATOL = 1e-300
"""A true absolute floor: only an all-zero tensor leans on it (float64's smallest normal is 2.2e-308)."""


def math_tolerance(dtype: torch.dtype, *, rtol: float | None = None, atol: float | None = None) -> Tolerance:
    """The tolerance of the math comparison (reference against torch in float64) in a check in ``dtype``."""
    tol = Tolerance(rtol=MATH_RTOL, atol=ATOL, ntol=MATH_NTOL, floor=FLOOR_FACTOR,
                    resolution=RESOLUTION[dtype], precision="float64")
    return _overridden(tol, rtol, atol)


def gradient_tolerance(
    dtype: torch.dtype,
    *,
    rtol: float | None = None,
    atol: float | None = None,
    numel: int = 1,
    tf32: bool = False,
) -> Tolerance:
    """The tolerance for comparing torch's gradients computed in ``dtype`` with the float64 reference.

    For float64 this is :func:`math_tolerance`. ``rtol``/``atol`` override the defaults; an
    ``rtol`` tighter than the scale term tightens that term too, so an explicit ``rtol`` is never
    silently loosened. ``tf32`` selects TF32's roundoff for float32. ``numel`` (the size of the
    largest input) is accepted for compatibility: reductions are covered by the measured floor.
    """
    del numel
    if dtype == torch.float64:
        return math_tolerance(dtype, rtol=rtol, atol=atol)
    u = _TF32_ROUNDOFF if (tf32 and dtype == torch.float32) else unit_roundoff(dtype)
    tol = Tolerance(rtol=DTYPE_ULPS * u, atol=ATOL, ntol=DTYPE_ULPS * u, floor=DTYPE_FLOOR_FACTOR,
                    resolution=max(RESOLUTION[dtype], 2 * DTYPE_ULPS * u), precision=str(dtype).removeprefix("torch."))
    return _overridden(tol, rtol, atol)


def perturbation_size(precision: str) -> float:
    """Relative size of the moves that measure the rounding floor of a comparison at ``precision``."""
    if precision == "float64":
        return MOVE
    u = _TF32_ROUNDOFF if precision == "tf32" else unit_roundoff(getattr(torch, precision))
    return max(MOVE, PERTURBATION_ULPS * u)


def conditioning_size(precision: str) -> float:
    """Relative size of the few-ulp moves that measure the conditioning part of the floor at ``precision``."""
    u = _TF32_ROUNDOFF if precision == "tf32" else unit_roundoff(getattr(torch, precision))
    return CONDITION_ULPS * u


def _overridden(tol: Tolerance, rtol: float | None, atol: float | None) -> Tolerance:
    if rtol is not None:
        if not (rtol >= 0 and math.isfinite(rtol)):
            raise ValueError(f"rtol must be a finite number >= 0, got {rtol}")
        tol = replace(tol, rtol=rtol, ntol=min(tol.ntol, rtol), resolution=max(tol.resolution, rtol))
    if atol is not None:
        if not (atol >= 0 and math.isfinite(atol)):
            raise ValueError(f"atol must be a finite number >= 0, got {atol}")
        tol = replace(tol, atol=max(atol, ATOL))
    return tol


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
# float16 and bfloat16: the linear worst case 4 u n is vacuous there (bfloat16, u = 2^-8: 1.6 at
# 100 steps, so a doubled update would pass). The parameters are teacher-forced (each step starts
# from torch's), so only state entries carry error from step to step; those are averages with a
# decay below 1 or sums, and each step adds a few round-to-nearest errors of at most u relative
# that are independent and zero-mean, so they accumulate like a random walk: 4 u sqrt(n)
# (bfloat16: 0.16 at 100 steps, 0.22 at 200; float16: 0.020 and 0.028). Measured with every
# reference optimizer against torch on the CPU over 200 steps (NumPy side in float16, or float32
# for bfloat16): at most 12 u (bfloat16 Adamax exp_inf) and 11 u (float16 RMSprop square_avg),
# a fifth of the bound or less. The floors above stay as minimums.
_TRAJECTORY_RANDOM_WALK = (torch.float16, torch.bfloat16)
# float16 has subnormals from 2^-24 to 2^-14: there the spacing is 2^-24 absolute, not u
# relative, so a state entry of 1e-7 gradients is off by half its value after one rounding. An
# absolute term of 4 roundings a step (2^-25 each, the same random-walk growth) covers it, and
# stays below the smallest normal float16 (6.1e-5) up to (2^-14 / 2^-23)^2 = 2.6e5 steps.
_TRAJECTORY_SUBNORMAL_SPACING: dict[torch.dtype, float] = {torch.float16: 2.0**-24}

# Finite differences along a direction are compared with the analytic directional derivative
# relative to sum |g v| (the largest it can be along v), plus the oracle's own error estimate
# (Richardson: the change between steps h and h/2) and its rounding, eps * s / h.
FD_RTOL = 1e-6
FD_SAFETY = 10.0


def trajectory_tolerance(dtype: torch.dtype, steps: int, *, rtol: float | None = None,
                         atol: float | None = None) -> Tolerance:
    """The tolerance for parameters and state after ``steps`` optimizer steps in ``dtype``."""
    growth = math.sqrt(max(steps, 1)) if dtype in _TRAJECTORY_RANDOM_WALK else max(steps, 1)
    scale = max(_TRAJECTORY_FLOOR[dtype], _TRAJECTORY_PER_STEP[dtype] * growth)
    absolute = 4 * _TRAJECTORY_SUBNORMAL_SPACING.get(dtype, 0.0) / 2 * growth
    # gtol multiplies the largest magnitude the entry has had over the trajectory.
    tol = Tolerance(rtol=scale, atol=absolute, ntol=scale, gtol=scale, precision=str(dtype).removeprefix("torch."))
    if rtol is not None:
        tol = replace(tol, rtol=rtol, ntol=rtol, gtol=rtol)
    if atol is not None:
        tol = replace(tol, atol=atol)
    return tol
