"""The one comparison helper every check goes through, so a failure always reads the same.

:func:`compare` compares two arrays under a :class:`~gradcheck_lab.core.tolerances.Tolerance`;
:func:`compare_many` compares many small pairs in one pass (an optimizer's tensors at each step). A
:class:`~gradcheck_lab.core.judge.Judge` holds one comparison over every tensor of a gradient check.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import overload

import numpy as np

from gradcheck_lab.core.tolerances import Tolerance


@dataclass(frozen=True, slots=True)
class Comparison:
    """How ``actual`` compares with ``expected`` under a tolerance.

    ``max_rel_error`` is the largest error relative to the tensor's largest magnitude ``scale``;
    ``ratio`` is the largest error over its allowed bound (<= 1 passes); ``index`` is the element
    with the largest ratio, where ``expected``, ``actual``, ``bound`` and every term of the bound
    (``terms``) are read; ``failing`` counts the elements past their bound, out of ``size``;
    ``nonfinite`` describes a NaN/Inf problem, if any.
    """

    passed: bool
    max_abs_error: float
    max_rel_error: float
    ratio: float
    index: tuple[int, ...]
    expected: float
    actual: float
    nonfinite: str | None = None
    bound: float = 0.0
    terms: dict[str, float] = field(default_factory=dict)
    scale: float = 0.0
    failing: int = 0
    size: int = 0

    def describe_bound(self) -> str:
        """``bound 1.2e-09 = rtol*|e| 3.1e-12 + ntol*S 1.2e-09 + ...``: every term at the worst element."""
        parts = " + ".join(f"{name} {value:.2e}" for name, value in self.terms.items())
        return f"bound {self.bound:.3e} = {parts}"


def finite_or_zero(x: np.ndarray) -> np.ndarray:
    """``x`` as float64 with NaN and Inf replaced by 0 (and no copy when it is float64 and finite)."""
    x = np.asarray(x, dtype=np.float64)
    return x if all_finite(x) else np.where(np.isfinite(x), x, 0.0)


def largest_magnitude(x: np.ndarray) -> float:
    """``max |x|`` without allocating ``|x|`` (0 for an empty array)."""
    if x.size == 0:
        return 0.0
    return float(max(np.max(x), -np.min(x)))


def allowed_error(expected: np.ndarray, actual: np.ndarray, tol: Tolerance, *, global_scale: float = 0.0,
                  floor: np.ndarray | None = None) -> np.ndarray:
    """The per-element bound of :mod:`gradcheck_lab.core.tolerances`; non-finite entries count as zero."""
    expected, actual = finite_or_zero(expected), finite_or_zero(actual)
    scale = max(largest_magnitude(expected), largest_magnitude(actual))
    return tol.bound(np.abs(expected), scale=scale, global_scale=global_scale, floor=floor)


def compare(
    expected: np.ndarray,
    actual: np.ndarray,
    tol: Tolerance,
    *,
    global_scale: float = 0.0,
    floor: np.ndarray | None = None,
    allow_nonfinite: bool = False,
) -> Comparison:
    """Compare two same-shaped arrays element by element (see :mod:`gradcheck_lab.core.tolerances`).

    ``floor`` is the measured rounding floor per element (or None). A NaN or Inf on either side
    fails (``nonfinite`` says where) unless ``allow_nonfinite`` and both sides hold the same
    non-finite value there; the finite elements are then compared as usual.
    """
    expected = np.asarray(expected, dtype=np.float64)
    actual = np.asarray(actual, dtype=np.float64)
    if expected.shape != actual.shape:
        raise ValueError(f"cannot compare shapes {expected.shape} and {actual.shape}")
    if expected.size == 0:
        return Comparison(True, 0.0, 0.0, 0.0, (), 0.0, 0.0, terms=tol.terms(0.0, scale=0.0, global_scale=global_scale))
    if expected.size == 1:
        phi = None if floor is None else float(np.reshape(floor, -1)[0])
        result = _compare_one(float(expected.reshape(-1)[0]), float(actual.reshape(-1)[0]), expected.ndim, tol,
                              global_scale, phi)
    else:
        result = _compare_finite(expected, actual, tol, global_scale, floor)
    if result is not None:
        return result
    problem = _nonfinite_problem(expected, actual, allow_nonfinite)
    if problem is not None:
        return problem
    result = _compare_finite(finite_or_zero(expected), finite_or_zero(actual), tol, global_scale, floor)
    assert result is not None  # both sides are finite now
    return result


def _compare_one(e: float, a: float, ndim: int, tol: Tolerance, global_scale: float,
                 phi: float | None) -> Comparison | None:
    """:func:`_compare_finite` of one element, in Python floats but for the bound (the same IEEE operations, in
    the same order: the same result, without a dozen NumPy calls on a scalar value); None if either side is NaN
    or Inf."""
    if not (math.isfinite(e) and math.isfinite(a)):
        return None
    scale = abs(e)
    error = abs(a - e)  # inf where finite sides overflow, as in _compare_finite
    if error > 1e-3 * scale:
        scale = max(scale, abs(a))
    bound = float(tol.bound(abs(e), scale=scale, global_scale=global_scale, floor=phi))
    ratio = error / bound if bound > 0 else (math.inf if error > 0 else 0.0)
    return Comparison(
        passed=ratio <= 1.0, max_abs_error=error,
        max_rel_error=error / scale if scale > 0 else (0.0 if error == 0 else math.inf), ratio=ratio,
        index=(0,) * ndim, expected=e, actual=a, bound=bound,
        terms=tol.terms(abs(e), scale=scale, global_scale=global_scale, floor=phi or 0.0), scale=scale,
        failing=int(ratio > 1.0), size=1)


def _compare_finite(expected: np.ndarray, actual: np.ndarray, tol: Tolerance, global_scale: float,
                    floor: np.ndarray | None) -> Comparison | None:
    """The comparison of two non-empty float64 arrays, or None if either holds a NaN or Inf.

    Finiteness costs no pass of its own where it holds: max |e| and max |a - e| are both finite only
    if every element of both sides is (a NaN propagates through max; an Inf makes |e| or |a - e|
    infinite); only where they are not is each side scanned.
    """
    # Passes over the data are what a check of a large tensor costs: each array below is made once
    # and reused. S = max(|e|_inf, |t|_inf) needs |t|_inf only when the error could move it by more
    # than a thousandth of |e|_inf (|t|_inf <= |e|_inf + max error); below that, ntol*S is unchanged.
    bound = np.abs(expected, out=np.empty_like(expected))  # (out=: a 0-d result stays an array)
    scale = float(bound.max())
    with np.errstate(over="ignore", invalid="ignore"):  # Inf - Inf, or finite sides past float64's range
        error = np.subtract(actual, expected, out=np.empty_like(expected))
    np.abs(error, out=error)
    max_abs = float(error.max())
    if not (math.isfinite(scale) and math.isfinite(max_abs)) and not all_finite(expected, actual):
        return None  # (finite sides whose difference overflows go on: their error is infinite)
    if max_abs > 1e-3 * scale:
        scale = max(scale, largest_magnitude(actual))
    bound = tol.bound(bound, scale=scale, global_scale=global_scale, floor=floor, out=bound)
    if tol.atol > 0:  # every bound is positive: the ratios overwrite the errors
        ratios = np.divide(error, bound, out=error)
    else:  # atol = 0 (trajectories): an error against a zero bound is infinitely over it
        ratios = np.divide(error, bound, out=np.zeros_like(error), where=bound > 0)
        ratios[(error > 0) & (bound == 0)] = np.inf
    flat = int(ratios.argmax())
    ratio = float(ratios.flat[flat])
    failing = int(np.count_nonzero(ratios > 1.0)) if ratio > 1.0 else 0
    index = unravel(flat, expected.shape)
    e_at = float(expected[index])
    phi = float(floor[index]) if floor is not None else 0.0
    return Comparison(
        passed=failing == 0,
        max_abs_error=max_abs,
        max_rel_error=max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else float("inf")),
        ratio=ratio,
        index=index,
        expected=e_at,
        actual=float(actual[index]),
        bound=float(bound[index]),
        terms=tol.terms(abs(e_at), scale=scale, global_scale=global_scale, floor=phi),
        scale=scale,
        failing=failing,
        size=int(expected.size),
    )


def unravel(flat: int, shape: tuple[int, ...]) -> tuple[int, ...]:
    """``np.unravel_index(flat, shape)`` (C order) as a tuple of Python ints, in Python: a few divisions, not a
    NumPy call per comparison."""
    index = []
    for size in reversed(shape):
        flat, i = divmod(flat, size)
        index.append(i)
    return tuple(reversed(index))


BATCH_LIMIT = 1 << 12
"""Elements up to which :func:`compare_many` concatenates its pairs: it saves NumPy calls on many small tensors;
on larger ones the concatenated copies cost more than the calls they save."""


def largest_finite_magnitudes(arrays: Sequence[np.ndarray]) -> list[float]:
    """``max |x|`` over the finite elements of each array (0 for none), small arrays read in one pass."""
    flats = [np.asarray(x, dtype=np.float64).reshape(-1) for x in arrays]
    sizes = [x.size for x in flats]
    if not flats or not all(sizes) or sum(sizes) > BATCH_LIMIT:
        return [largest_magnitude(finite_or_zero(x)) for x in flats]
    magnitude = np.abs(np.concatenate(flats))
    if not all_finite(magnitude):
        magnitude[~np.isfinite(magnitude)] = 0.0
    return [float(m) for m in np.maximum.reduceat(magnitude, np.cumsum([0, *sizes[:-1]]))]


class Comparisons(Sequence[Comparison]):
    """What :func:`compare_many` returns: each pair's :class:`Comparison`, built when it is read.

    The fields a caller reads of every pair at every step (``ratios``, ``max_abs_errors``, ``max_rel_errors``,
    ``passed``) are lists here, so an optimizer trajectory that reads the worst pair and any failing ones builds
    two or three Comparisons a step, not one per tensor.
    """

    def __init__(self, size: int, build: Callable[[int], Comparison], ratios: list[float],
                 max_abs_errors: list[float], max_rel_errors: list[float], passed: list[bool]) -> None:
        self._size, self._build, self._built = size, build, dict[int, Comparison]()
        self.ratios, self.max_abs_errors, self.max_rel_errors = ratios, max_abs_errors, max_rel_errors
        self.passed = passed

    @classmethod
    def of(cls, comparisons: Sequence[Comparison]) -> Comparisons:
        """Comparisons already built (the pairs :func:`compare_many` compares one by one)."""
        return cls(len(comparisons), comparisons.__getitem__, [c.ratio for c in comparisons],
                   [c.max_abs_error for c in comparisons], [c.max_rel_error for c in comparisons],
                   [c.passed for c in comparisons])

    def __len__(self) -> int:
        return self._size

    @overload
    def __getitem__(self, k: int) -> Comparison: ...
    @overload
    def __getitem__(self, k: slice) -> list[Comparison]: ...

    def __getitem__(self, k: int | slice) -> Comparison | list[Comparison]:
        if isinstance(k, slice):
            return [self[i] for i in range(*k.indices(self._size))]
        if not -self._size <= k < self._size:
            raise IndexError(f"comparison {k} of {self._size}")
        k %= self._size
        if k not in self._built:
            self._built[k] = self._build(k)
        return self._built[k]


def compare_many(pairs: Sequence[tuple[np.ndarray, np.ndarray]], tol: Tolerance, *,
                 global_scales: Sequence[float] | None = None, allow_nonfinite: bool = False) -> Comparisons:
    """:func:`compare` of each ``(expected, actual)`` pair (without a floor), the pairs judged in one pass.

    The same :class:`Comparison` as ``compare(expected, actual, tol, global_scale=G)`` for each pair, bit for
    bit: the same float64 operations per element, with each pair's maxima, bound constant, worst element and
    failing count read per segment of one concatenated array. Many small tensors (an optimizer's parameters
    and state entries, compared at every step) then cost a few NumPy calls, not a few per tensor. Pairs with
    a NaN or Inf, empty ones, or more than :data:`BATCH_LIMIT` elements in all go through :func:`compare`.
    """
    scales_given = [0.0] * len(pairs) if global_scales is None else [float(g) for g in global_scales]
    if len(scales_given) != len(pairs):
        raise ValueError(f"{len(pairs)} pairs but {len(scales_given)} global scales")
    expected = [np.asarray(e, dtype=np.float64) for e, _ in pairs]
    actual = [np.asarray(a, dtype=np.float64) for _, a in pairs]
    for e, a in zip(expected, actual, strict=True):
        if e.shape != a.shape:
            raise ValueError(f"cannot compare shapes {e.shape} and {a.shape}")
    sizes = np.array([e.size for e in expected], dtype=np.intp)

    def one_by_one() -> Comparisons:
        return Comparisons.of([compare(e, a, tol, global_scale=g, allow_nonfinite=allow_nonfinite)
                               for e, a, g in zip(expected, actual, scales_given, strict=True)])

    if len(pairs) < 2 or not sizes.all() or sizes.sum() > BATCH_LIMIT:
        return one_by_one()
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    flat_e = np.concatenate([e.reshape(-1) for e in expected])
    flat_a = np.concatenate([a.reshape(-1) for a in actual])
    magnitude = np.abs(flat_e)
    scale = np.maximum.reduceat(magnitude, starts)
    with np.errstate(over="ignore", invalid="ignore"):
        error = np.abs(np.subtract(flat_a, flat_e))
    max_abs = np.maximum.reduceat(error, starts)
    if not (np.isfinite(scale).all() and np.isfinite(max_abs).all()):
        return one_by_one()
    widen = max_abs > 1e-3 * scale  # as in compare: S takes max |a| only where the error could move it
    if widen.any():
        scale = np.where(widen, np.maximum(scale, np.maximum.reduceat(np.abs(flat_a), starts)), scale)
    bound = tol.bound(magnitude, scale=np.repeat(scale, sizes), global_scale=np.repeat(scales_given, sizes),
                      out=magnitude)  # each element with its own tensor's S and G
    if tol.atol > 0:
        ratios = np.divide(error, bound)
    else:
        ratios = np.divide(error, bound, out=np.zeros_like(error), where=bound > 0)
        ratios[(error > 0) & (bound == 0)] = np.inf
    worst = np.maximum.reduceat(ratios, starts)
    hits = np.flatnonzero(ratios == np.repeat(worst, sizes))
    first = hits[np.searchsorted(hits, starts)]  # each segment's first element at its largest ratio
    failing = (np.add.reduceat((ratios > 1.0).astype(np.intp), starts) if (worst > 1.0).any()
               else np.zeros(len(pairs), dtype=np.intp))
    # Python numbers read in one call each, not one element at a time.
    at_expected, at_actual, at_bound = flat_e[first].tolist(), flat_a[first].tolist(), bound[first].tolist()
    offsets, ratio_list = (first - starts).tolist(), worst.tolist()
    failing_list, max_abs_list, scale_list = failing.tolist(), max_abs.tolist(), scale.tolist()
    max_rel_list = [m / s if s > 0 else (0.0 if m == 0 else float("inf")) for m, s in zip(max_abs_list, scale_list,
                                                                                            strict=True)]

    def build(k: int) -> Comparison:
        s, e_at = scale_list[k], at_expected[k]
        return Comparison(
            passed=failing_list[k] == 0, max_abs_error=max_abs_list[k], max_rel_error=max_rel_list[k],
            ratio=ratio_list[k], index=unravel(offsets[k], expected[k].shape), expected=e_at, actual=at_actual[k],
            bound=at_bound[k], terms=tol.terms(abs(e_at), scale=s, global_scale=scales_given[k], floor=0.0), scale=s,
            failing=failing_list[k], size=int(expected[k].size))

    return Comparisons(len(pairs), build, ratio_list, max_abs_list, max_rel_list, [f == 0 for f in failing_list])


def all_finite(*arrays: np.ndarray) -> bool:
    """Whether every element of every array is finite: one summing pass each (an exact check only if not)."""
    with np.errstate(over="ignore", invalid="ignore"):  # a sum past float64's range, or Inf - Inf: then scanned
        for x in arrays:
            if x.size and not np.isfinite(np.add.reduce(x, axis=None)):
                if not np.isfinite(x).all():
                    return False
    return True


def _nonfinite_problem(expected: np.ndarray, actual: np.ndarray, allow_nonfinite: bool) -> Comparison | None:
    finite_e, finite_a = np.isfinite(expected), np.isfinite(actual)
    bad = ~(finite_e & finite_a)
    same = (np.isnan(expected) & np.isnan(actual)) | (expected == actual)
    if allow_nonfinite and not (bad & ~same).any():
        return None
    where = np.argwhere(bad & ~same if allow_nonfinite else bad)[0]
    index = tuple(int(i) for i in where)
    e, a = float(expected[index]), float(actual[index])
    both = "; both sides are non-finite there" if not (finite_e[index] or finite_a[index]) else ""
    return Comparison(False, float("inf"), float("inf"), float("inf"), index, e, a,
                      nonfinite=f"non-finite value at {list(index)}: expected {e!r}, got {a!r}{both}",
                      failing=int(np.count_nonzero(bad & ~same if allow_nonfinite else bad)), size=int(expected.size))
