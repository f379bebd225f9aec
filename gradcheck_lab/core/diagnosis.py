r"""How a gradient is wrong: the patterns hand derivations fall into, read off the reference and torch's gradients.

For a wrong gradient :math:`r` against the right one :math:`t` (NumPy only, float64):

- all zeros: :math:`r = 0 \ne t` (a gradient never written, a branch of backward missing);
- another input's gradient: :math:`r \approx t_j` for another input :math:`j` (returned in the wrong order);
- transposed: :math:`r \approx t^\top` (or another permutation of the axes) where :math:`t \ne t^\top`;
- reversed along some axes (a kernel flipped: convolution for correlation);
- shifted by one or two places along an axis, or the last two (padding cropped from the wrong side);
- a constant factor: :math:`r \approx c\,t` with :math:`c = \langle r, t\rangle / \langle t, t\rangle`,
  named when :math:`c` is :math:`-1`, :math:`2`, :math:`1/2`, or a dimension :math:`n` (or size) of an
  input or its reciprocal (averaged instead of summed, or the reverse);
- only :math:`k` of :math:`n` elements wrong (a boundary, padding or indexing case).

The first pattern that fits a gradient is its diagnosis; "fits" means to :data:`FIT` of the
gradient's largest magnitude, far looser than rounding and far tighter than any other mistake.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np

from gradcheck_lab.core.kinks import ValueAt, one_sided

FIT = 1e-6
"""A pattern fits when it reproduces the reference to this fraction of the largest magnitude."""


def _close(a: np.ndarray, b: np.ndarray) -> bool:
    scale = max(float(np.max(np.abs(a), initial=0.0)), float(np.max(np.abs(b), initial=0.0)))
    return a.shape == b.shape and scale > 0 and float(np.max(np.abs(a - b), initial=0.0)) <= FIT * scale


def _near(c: float, target: float) -> bool:
    return abs(c - target) <= 1e-6 * abs(target)


def _dimension_hint(c: float, shapes: Sequence[tuple[str, tuple[int, ...]]]) -> str | None:
    """Name ``c`` as a dimension or size of an input (its reciprocal: averaged instead of summed)."""
    for name, shape in shapes:
        for axis, n in enumerate(shape):
            if n < 2:
                continue
            if _near(c, 1 / n):
                return f"averaged over axis {axis} of {name} ({n}) instead of summed?"
            if _near(c, n):
                return f"summed over axis {axis} of {name} ({n}) instead of averaged?"
        for a, b in itertools.combinations(range(len(shape)), 2):
            n = shape[a] * shape[b]
            if len(shape) > 2 and shape[a] > 1 and shape[b] > 1:
                if _near(c, 1 / n):
                    return f"averaged over axes ({a}, {b}) of {name} ({shape[a]}*{shape[b]}) instead of summed?"
                if _near(c, n):
                    return f"summed over axes ({a}, {b}) of {name} ({shape[a]}*{shape[b]}) instead of averaged?"
        size = math.prod(shape)
        if len(shape) > 1 and size > 1:
            if _near(c, 1 / size):
                return f"divided by the size of {name} ({size}) once too often?"
            if _near(c, size):
                return f"multiplied by the size of {name} ({size}), or a mean taken as a sum?"
    return None


def constant_factor(r: np.ndarray, t: np.ndarray, shapes: Sequence[tuple[str, tuple[int, ...]]]) -> str | None:
    """``r = c t`` for a constant ``c`` other than 1: the factor, named where it can be."""
    tt = float(np.sum(t * t))
    if tt == 0.0:
        return None
    c = float(np.sum(r * t)) / tt
    if c == 0.0 or _near(c, 1.0) or not _close(r, c * t):
        return None
    if _near(c, -1.0):
        return "the sign is flipped (a factor of -1)"
    hint = _dimension_hint(c, shapes) or (
        "a term counted twice, or a 1/2 missing (as in the derivative of x**2 / 2)?" if _near(c, 2.0)
        else "a term counted half, or a factor 2 missing (the derivative of x**2 is 2x)?" if _near(c, 0.5)
        else None)
    return f"{c:.6g} times torch's" + (f": {hint}" if hint else "")


def transposed(r: np.ndarray, t: np.ndarray) -> str | None:
    """``r`` is ``t`` with its axes permuted (and ``t`` is not symmetric under that permutation)."""
    if r.ndim < 2 or r.ndim > 4:
        return None
    for perm in itertools.permutations(range(r.ndim)):
        if perm == tuple(range(r.ndim)):
            continue
        moved = np.transpose(t, perm)
        if moved.shape == r.shape and _close(r, moved) and not _close(t, moved):
            return "transposed" if r.ndim == 2 else f"its axes permuted as {perm}"
    return None


def reversed_axes(r: np.ndarray, t: np.ndarray) -> str | None:
    """``r`` is ``t`` read backwards along some axes (and ``t`` is not symmetric that way): for a
    kernel's last two axes, the classic convolution-for-correlation mistake."""
    if r.shape != t.shape or r.ndim < 1 or r.ndim > 4:
        return None
    for count in range(1, r.ndim + 1):
        for axes in itertools.combinations(range(r.ndim), count):
            if any(r.shape[a] < 2 for a in axes):
                continue
            moved = np.flip(t, axes)
            if _close(r, moved) and not _close(t, moved):
                where = f"axis {axes[0]}" if count == 1 else f"axes {axes}"
                hint = (": a convolution where torch computes a correlation (the kernel flipped), or the reverse?"
                        if r.ndim >= 2 and axes == (r.ndim - 2, r.ndim - 1) else "")
                return f"reversed along {where}{hint}"
    return None


def shifted(r: np.ndarray, t: np.ndarray) -> str | None:
    """``r`` is ``t`` moved by one or two places along an axis, or along the last two together (where the
    two overlap): an off-by-one, or padding cropped from the wrong side."""
    if r.shape != t.shape or r.ndim < 1:
        return None
    last_two: list[tuple[tuple[int, ...], int]] = [((r.ndim - 2, r.ndim - 1), k) for k in (1, -1, 2, -2)]
    moves = (last_two if r.ndim >= 2 else []) + [((a,), k) for a in range(r.ndim) for k in (1, -1, 2, -2)]
    for axes, k in moves:
        if any(r.shape[a] <= 2 * abs(k) for a in axes):  # too little overlap to tell
            continue
        dst = [slice(None)] * r.ndim
        src = [slice(None)] * r.ndim
        for a in axes:
            dst[a], src[a] = (slice(k, None), slice(None, -k)) if k > 0 else (slice(None, k), slice(-k, None))
        part, moved, stays = r[tuple(dst)], t[tuple(src)], t[tuple(dst)]
        if np.any(moved) and _close(part, moved) and not _close(stays, moved):
            where = f"axis {axes[0]}" if len(axes) == 1 else f"axes {axes}"
            return (f"torch's shifted by {k:+d} along {where} (where they overlap): an off-by-one, or padding "
                    "cropped from the wrong side?")
    return None


PARTIAL_AT_MOST = 0.9
"""Past this fraction of the elements wrong, "only k of n" explains nothing (a boundary case touches few)."""


def partial(r: np.ndarray, wrong: np.ndarray) -> str | None:
    """Only some elements are wrong: their count, fraction and first places (not when nearly all are)."""
    k, n = int(wrong.sum()), wrong.size
    if k == 0 or k >= PARTIAL_AT_MOST * n:
        return None
    places = ", ".join(str([int(i) for i in idx]) for idx in np.argwhere(wrong)[:3])
    zeros = " (the reference has 0 at every one of them)" if not np.any(r[wrong]) else ""
    return (f"only {k} of {n} elements ({100 * k / n:.3g}%) are wrong, at {places}{', ...' if k > 3 else ''}"
            f"{_slices(wrong)}{zeros}: a boundary, padding or indexing case?")


def _slices(wrong: np.ndarray) -> str:
    """`` (exactly indices [0, 1] of axis 1)`` when whether an element is wrong depends on one axis only."""
    if wrong.ndim < 2:
        return ""
    for axis in range(wrong.ndim):
        others = tuple(a for a in range(wrong.ndim) if a != axis)
        anywhere, everywhere = wrong.any(axis=others), wrong.all(axis=others)
        if np.array_equal(anywhere, everywhere):
            idx = [int(i) for i in np.flatnonzero(anywhere)]
            listed = str(idx[:6])[:-1] + (", ...]" if len(idx) > 6 else "]")
            return f" (exactly indices {listed} of axis {axis}, whatever the other axes)"
    return ""


def diagnose_one(k: int, reference: Sequence[np.ndarray], truth: Sequence[np.ndarray], names: Sequence[str],
                 wrong: np.ndarray, shapes: Sequence[tuple[str, tuple[int, ...]]]) -> str | None:
    """The first pattern that fits the gradient of input ``k``."""
    r, t = np.asarray(reference[k], dtype=np.float64), np.asarray(truth[k], dtype=np.float64)
    if not (np.all(np.isfinite(r)) and np.all(np.isfinite(t))):
        return None
    if not np.any(r) and np.any(t):
        return "all zeros where torch's is not: is it ever written, or is a branch of backward missing?"
    if _close(r, -t):  # before "swapped": d/dtarget = -d/dpred makes a missing sign look like another gradient
        return "the sign is flipped (a factor of -1): a minus sign missing, or a difference taken the other way round?"
    for j, other in enumerate(truth):
        if j != k and np.shape(other) == r.shape and _close(r, np.asarray(other)) and not _close(t, np.asarray(other)):
            return f"it equals torch's gradient of {names[j]}: swapped (returned in the wrong order)?"
    own = [(names[k], r.shape)] + [s for s in shapes if s[0] != names[k]]
    return (transposed(r, t) or reversed_axes(r, t) or constant_factor(r, t, own) or shifted(r, t)
            or partial(r, wrong))


def diagnose(reference: Sequence[np.ndarray], truth: Sequence[np.ndarray], names: Sequence[str],
             wrong: Sequence[np.ndarray], shapes: Sequence[tuple[str, tuple[int, ...]]]) -> str | None:
    """A short text saying how the reference's gradients are wrong, where a pattern fits (None otherwise).

    ``reference``/``truth`` hold the gradients of the inputs ``names`` (the reference's, and torch's
    in float64); ``wrong`` marks the elements past their bound; ``shapes`` lists every input's name
    and shape (data inputs too), whose dimensions may explain a constant factor.
    """
    found = []
    for k, mask in enumerate(wrong):
        if np.any(mask):
            text = diagnose_one(k, reference, truth, names, np.asarray(mask), shapes)
            if text:
                found.append(f"the gradient of {names[k]}: {text}")
    return "; ".join(found[:3]) or None


def diagnose_value(reference: float, truth: float, gradients_agree: bool,
                   shapes: Sequence[tuple[str, tuple[int, ...]]]) -> str | None:
    """How the reference's value (its forward) is wrong: a named factor, and whether the gradients agree.

    A value off while every gradient agrees means the forward returns something other than the
    function its backward differentiates (a term or factor that does not change the gradient, or a
    forward edited after the backward was derived).
    """
    if not (math.isfinite(reference) and math.isfinite(truth)) or truth == 0.0:
        return None
    c = reference / truth
    hint = None if _near(c, 1.0) or _near(c, -1.0) else _dimension_hint(c, shapes) or (
        "a factor 2 too many (a 1/2 missing?)" if _near(c, 2.0)
        else "a factor 2 missing (a 1/2 too many?)" if _near(c, 0.5) else None)
    factor = ("the sign is flipped (a factor of -1)" if _near(c, -1.0)
              else f"{c:.6g} times torch's: {hint}" if hint else None)
    agree = ("every gradient agrees, so the forward computes a different function than the one its backward "
             "differentiates") if gradients_agree else None
    text = ", and ".join(t for t in (factor, agree) if t)
    return f"the value (forward): {text}" if text else None


def torch_departs(labels: Sequence[str], reference: Sequence[np.ndarray], truth: Sequence[np.ndarray],
                  wrong: Sequence[np.ndarray], value_at: ValueAt, inputs: list[np.ndarray], variables: Sequence[int],
                  f0: float) -> str | None:
    """Where torch's gradient is not the derivative of torch's own value and the reference's is: torch's backward
    clamps or saturates there (binary_cross_entropy floors p(1 - p) at 1e-12), so torch is the side that departs.

    Measured at the worst wrong element of each gradient: one-sided derivatives of the value (six evaluations).
    """
    for k, mask in enumerate(wrong):
        if not np.any(mask):
            continue
        r, t = np.asarray(reference[k], dtype=np.float64), np.asarray(truth[k], dtype=np.float64)
        error = np.where(mask, np.abs(np.nan_to_num(r - t)), -1.0)
        index = tuple(int(i) for i in np.unravel_index(int(np.argmax(error)), r.shape))
        scale = float(np.max(np.abs(np.nan_to_num(t)), initial=0.0))
        sides = one_sided(value_at, inputs, variables[k], index, f0, scale, relative=True)
        if sides is None or sides.kink:
            continue
        slope, gap = (sides.left + sides.right) / 2, abs(float(r[index] - t[index]))
        resolution = 1e-3 * gap + sides.error
        if abs(slope - r[index]) <= resolution < abs(slope - t[index]):
            return (f"torch departs, not the reference: at {labels[k]} {list(index)} finite differences of torch's own "
                    f"value give {slope:.6g}, as the reference does ({float(r[index]):.6g}), while torch's backward "
                    f"gives {float(t[index]):.6g}: torch's backward clamps or saturates there (binary_cross_entropy "
                    "floors p(1 - p) at 1e-12 and its log at -100), so its gradient is not the derivative of its value")
    return None


def diagnose_mismatch(labels: Sequence[str], reference: Sequence[np.ndarray], truth: Sequence[np.ndarray],
                      beyond: Sequence[np.ndarray], kinks: Sequence[tuple[str, tuple[int, ...]]],
                      inputs: Sequence[np.ndarray], variables: Sequence[int], value_at: ValueAt | None = None,
                      f0: float | None = None) -> str | None:
    """:func:`diagnose` for a check's judged gradients; elements on kinks are left to the kink lines.

    ``labels`` are the gradients' names, ``beyond`` their elements past the bound, ``kinks`` the
    (name, index) of elements found on kinks, ``inputs`` every input (``variables`` the differentiated).
    With ``value_at`` (torch's value at a point) and ``f0`` (it at ``inputs``), a gradient where torch's
    backward departs from the derivative of its own value while the reference's does not says so first.
    """
    wrong = [np.array(b, dtype=bool, copy=True) for b in beyond]
    for name, index in kinks:
        if name in labels:
            wrong[list(labels).index(name)][index] = False
    if value_at is not None and f0 is not None and math.isfinite(f0):
        departs = torch_departs(labels, reference, truth, wrong, value_at, list(inputs), variables, f0)
        if departs:
            return departs
    return diagnose(reference, truth, labels, wrong, input_shapes(labels, inputs, variables))


def input_shapes(labels: Sequence[str], inputs: Sequence[np.ndarray],
                 variables: Sequence[int]) -> list[tuple[str, tuple[int, ...]]]:
    """Every input's name (the gradients' ``labels`` for the differentiated ones) and shape."""
    names = {k: labels[i] for i, k in enumerate(variables)}
    return [(names.get(k, f"input {k}"), tuple(np.shape(x))) for k, x in enumerate(inputs)]
