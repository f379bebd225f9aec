r"""The measured rounding floor: how much a disagreement changes when every intermediate is re-rounded.

Two computations of the same function, the reference :math:`e(x)` and torch :math:`t(x)`, disagree
by :math:`D(x) = e(x) - t(x)`. A wrong derivation makes :math:`D` a smooth function of the inputs:
move them by a millionth and it barely changes. Rounding makes :math:`D` a fresh draw at every point:
move the inputs by a millionth and every intermediate is rounded anew, so :math:`D` changes by about
its own size. Measuring :math:`|D(x') - D(x)|` over a few moved points :math:`x'` therefore shows,
element by element, how much of the disagreement rounding can produce at this input: tiny where the
computation is well conditioned, large where sums cancel or a rounded intermediate feeds a
cancellation (1 - tanh(z)^2 at a saturated tanh keeps its rounding under moves of a few ulps; a move
of a millionth rounds it anew). Both sides are evaluated at the same moved point, so the function's
own change cancels out of :math:`D` and the move can be large without hiding a wrong gradient, as
long as the wrong part changes by much less than itself over the move (a relative condition below
about :math:`10^5`; beyond it, such a gradient shows as a large floor, hence inconclusive, not as a pass).

Each element's floor is the largest change over a few random moves. Over thousands of elements some
samples fall far below their scale by chance, and an element judged by such a sample would be a false
alarm; so the floor is pooled: no element's is below the tensor's median (the typical rounding, robust
to the few elements that cancel hardest, which keep their own).

A disagreement can also be invariant under such moves while rounding still explains it: in
:math:`(10^8 + 10^{-4}) - 10^8` the rounding of the first sum depends only on :math:`10^{-4}` modulo
the ulp of :math:`10^8`, which a relative move of :math:`10^{-4}` by a millionth does not change. Backward
error analysis covers that case: a backward-stable computation returns the exact result at inputs
moved by a few ulps, so how far each side's result moves when the inputs move by a few ulps
(:math:`|e(x'') - e(x)|`, :math:`|t(x'') - t(x)|`, random factors in :math:`1 \pm 4u`) is what
rounding can do to it: the condition of the result times :math:`u`. The floor is the larger of the two
measures.

The floor costs a few extra evaluations of both sides, so checks measure it only when an element
exceeds the a-priori bound.

Deep in a cancellation neither measure may see the rounding: at a saturated tanh (z ~ 17), 1 - tanh(z)^2 is a
few ulps of 1, so the two sides' tanh differing by one ulp moves the gradient by 7%; moves of a millionth of
the inputs do not re-round tanh there, and the result's condition is small. Moves of 2^-14 to 2^-10 do: at
some of them the two sides agree exactly and at others they differ by a few ulps of 1 again.
:func:`rerounded_agreement` looks for such points for each element still past its bound: a wrong formula keeps
its disagreement under moves of a thousandth (its error changes smoothly, by about the move times its
condition), so an element that agrees within the a-priori bound at some moved point is not evidence either way
(inconclusive, never a pass).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

Evaluation = Callable[[list[np.ndarray]], list[np.ndarray] | None]
"""Runs one side at a full input list; returns ``[value, grad_0, grad_1, ...]`` (float64), or None if it fails."""


ZERO_MOVE = 2.0**-10
"""An input that is zero everywhere moves as if its elements were this fraction of the largest input's
magnitude (or of 1 where every input is zero): relative moves alone leave zeros where they are, and a
disagreement at all-zero inputs (KL(p || q) at p = q = 0) would never be redrawn. Zeros beside nonzero
elements stay put: they are where kinks sit (relu at 0), and moving them across one would redraw far more
than rounding."""


def _zero_sizes(inputs: Sequence[np.ndarray], variables: Sequence[int]) -> list[float]:
    """How far each element of an all-zero variable input moves per unit of relative move (0: not moved)."""
    largest = [float(np.max(np.abs(inputs[k]), initial=0.0)) for k in variables]
    overall = max(largest, default=0.0) or 1.0
    return [0.0 if big else ZERO_MOVE * overall for big in largest]


def _moved(x: np.ndarray, steps: np.ndarray, zero_size: float) -> np.ndarray:
    """``x * (1 + steps)``, or ``steps * zero_size`` for an all-zero input (``zero_size`` > 0)."""
    if zero_size:
        return np.asarray(steps * zero_size)  # the input is zero everywhere
    return np.asarray(x * (1.0 + steps))


def perturbed(inputs: Sequence[np.ndarray], variables: Sequence[int], relative: float,
              rng: np.random.Generator) -> list[np.ndarray]:
    """Copies of ``inputs`` with each element of the ``variables`` moved by ``relative`` of itself, random sign.

    Constant inputs (data) are copied unchanged; no element changes sign; zeros stay zero, except in an
    input that is zero everywhere (see ``ZERO_MOVE``).
    """
    out = [np.array(x, copy=True) for x in inputs]
    for k, size in zip(variables, _zero_sizes(inputs, variables), strict=True):
        x = out[k]
        signs = np.unpackbits(rng.integers(0, 256, size=(x.size + 7) // 8, dtype=np.uint8))[:x.size]
        out[k] = _moved(x, relative * (signs.astype(np.float64) * 2 - 1).reshape(x.shape), size)
    return out


def jittered(inputs: Sequence[np.ndarray], variables: Sequence[int], relative: float,
             rng: np.random.Generator) -> list[np.ndarray]:
    """Copies of ``inputs`` with each element of the ``variables`` moved by a random fraction within
    ``+- relative`` of itself (an all-zero input: see ``ZERO_MOVE``)."""
    out = [np.array(x, copy=True) for x in inputs]
    for k, size in zip(variables, _zero_sizes(inputs, variables), strict=True):
        x = out[k]
        out[k] = _moved(x, relative * (2 * rng.random(x.shape) - 1), size)
    return out


@dataclass(frozen=True)
class MeasuredFloor:
    """The floor of each result (value, then each gradient), and each result's largest magnitude nearby.

    ``scales`` is the largest magnitude either side's result had at the moved points: the function's own
    scale for that tensor around the input, which a gradient that is exactly zero here (an extremum, a
    symmetry) does not collapse to rounding noise.
    """

    levels: list[np.ndarray]
    scales: list[float]


def rounding_floor(
    expected_at: Evaluation,
    actual_at: Evaluation,
    expected: Sequence[np.ndarray],
    actual: Sequence[np.ndarray],
    inputs: Sequence[np.ndarray],
    variables: Sequence[int],
    relative: float,
    ulps: float | None,
    *,
    samples: int = 3,
    seed: int = 0,
) -> MeasuredFloor | None:
    """The rounding floor of the disagreement ``expected - actual``, element by element.

    The larger of its change over ``samples`` moves of the inputs by ``relative`` of themselves, and
    the change of either side's result over ``samples`` moves by random factors within ``1 +- ulps``
    (see the module docstring; ``ulps=None`` skips those). ``expected_at``/``actual_at`` evaluate each side at a point;
    ``expected``/``actual`` are their results at the unmoved inputs. Returns one array per result
    (value, then each gradient), pooled, with each result's largest magnitude at the moved points, or None
    when no moved point could be evaluated on both sides.
    """
    rng = np.random.default_rng(seed + 7_919)
    expected = [np.asarray(e, dtype=np.float64) for e in expected]
    actual = [np.asarray(a, dtype=np.float64) for a in actual]
    baseline = [e - a for e, a in zip(expected, actual, strict=True)]
    floor: list[np.ndarray] | None = None
    scales = [0.0] * len(expected)
    for _ in range(samples):
        point = perturbed(inputs, variables, relative, rng)
        moved_expected, moved_actual = expected_at(point), actual_at(point)
        if moved_expected is None or moved_actual is None:
            continue
        changes = [np.abs(np.asarray(e, dtype=np.float64) - np.asarray(a, dtype=np.float64) - d)
                   for e, a, d in zip(moved_expected, moved_actual, baseline, strict=True)]
        scales = [max(s, _largest(e), _largest(a)) for s, e, a in zip(scales, moved_expected, moved_actual,
                                                                       strict=True)]
        if ulps is None:  # the disagreement's change only
            near_expected = near_actual = None
        else:
            near = jittered(inputs, variables, ulps, rng)
            near_expected, near_actual = expected_at(near), actual_at(near)
        if near_expected is not None and near_actual is not None:
            changes = [np.maximum.reduce([c, np.abs(np.asarray(ne, dtype=np.float64) - e0),
                                          np.abs(np.asarray(na, dtype=np.float64) - a0)])
                       for c, ne, na, e0, a0 in zip(changes, near_expected, near_actual, expected, actual,
                                                    strict=True)]
        # A disagreement that turns NaN or Inf under a tiny move is unboundedly sensitive there.
        changes = [np.where(np.isnan(c), np.inf, c) for c in changes]
        floor = changes if floor is None else [np.maximum(f, c) for f, c in zip(floor, changes, strict=True)]
    return None if floor is None else MeasuredFloor([_pooled(f) for f in floor], scales)


REROUND_MOVES = (2.0**-14, 2.0**-12, 2.0**-10)
"""Relative moves at which :func:`rerounded_agreement` re-rounds intermediates the floor's moves leave alone."""
REROUND_POINTS = 2
"""Random points per move size."""


def rerounded_agreement(
    expected_at: Evaluation,
    actual_at: Evaluation,
    disputed: Sequence[np.ndarray],
    inputs: Sequence[np.ndarray],
    variables: Sequence[int],
    agree: Callable[[int, np.ndarray, np.ndarray], np.ndarray],
    seed: int = 0,
) -> list[np.ndarray]:
    """The ``disputed`` elements (a mask per result) on which the two sides agree at some nearby point.

    Each point moves every element of the ``variables`` by a random fraction within :data:`REROUND_MOVES` of
    itself (:data:`REROUND_POINTS` points a size, smallest first); ``agree(k, expected_k, actual_k)`` says,
    element by element, whether result ``k`` agrees there. Stops once every disputed element has agreed.
    """
    rng = np.random.default_rng(seed)
    agreed = [np.zeros(np.shape(d), dtype=bool) for d in disputed]
    for relative in REROUND_MOVES:
        for _ in range(REROUND_POINTS):
            point = jittered(inputs, variables, relative, rng)
            expected, actual = expected_at(point), actual_at(point)
            if expected is None or actual is None:
                continue
            for k, d in enumerate(disputed):
                if d.any():
                    agreed[k] |= d & agree(k, expected[k], actual[k])
            if all(not (d & ~g).any() for d, g in zip(disputed, agreed, strict=True)):
                return agreed
    return agreed


def _largest(x: np.ndarray) -> float:
    """max |x| over the finite elements (0 if none)."""
    x = np.asarray(x, dtype=np.float64)
    finite = np.abs(x[np.isfinite(x)])
    return float(finite.max()) if finite.size else 0.0


def _pooled(floor: np.ndarray) -> np.ndarray:
    """``floor`` raised to at least its median (see the module docstring)."""
    if floor.size < 2:
        return floor
    return np.asarray(np.maximum(floor, np.median(floor)))
