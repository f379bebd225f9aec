"""The one hypothesis harness every ``verify_*`` runs on: settings, seed, a bounded shrink, the minimal failure.

Usage (a ``verify_x`` is a strategy of examples and a function that checks one)::

    from gradcheck_lab.core.search import VerifyResult, run_search

    def check_one(example):                     # raises a GradcheckError on a mismatch
        return check_x(impl, torch_impl, example, device=..., dtype=...)   # -> a report (or several)

    result = run_search(check_one, strategy, max_examples=None, seed=0)   # -> VerifyResult

What :func:`run_search` guarantees:

- **Settings**: the loaded hypothesis profile's (``--hypothesis-profile``, ``settings.load_profile``), so its
  ``max_examples`` is honoured unless ``max_examples=`` is passed; never a deadline, never a database, every
  health check suppressed (a check is slow and its inputs are large on purpose).
- **Seed only**: ``seed=N`` draws the same examples on every run of the same strategy, whatever code is loaded
  beside it. hypothesis seeds a few draws with constants it reads from every local module loaded
  (``hypothesis.internal.conjecture.providers._get_local_constants``), so an unrelated edit moved the examples of
  ``seed=0``; the draws here come from a provider that uses hypothesis's built-in constants only.
- **Shrinking within budget**: after the first failure, hypothesis shrinks it for at most ``shrink_budget``
  times the estimated cost of a passing search (default 2, so with the search before the failure a failing
  search costs at most about 3 passing ones; unbounded, it cost 30): at most ``shrink_budget * max_examples``
  (at least :data:`MIN_SHRINK_BUDGET`) times the mean seconds of a passing run (hypothesis's drawing included),
  and at most :data:`RUN_SHARE` of that many runs. Seconds are this process's CPU time
  (``time.process_time``), so other work on the machine (a parallel test run) does not cut a shrink short.
  When the budget is spent the search ends; the smallest failing example found so far is reported, with a note
  that shrinking stopped early.
  A failing check costs 5 to 10 times a passing one (its rounding floor, kinks and diagnosis), so a search of an
  expensive check stops on time and may report a larger example than an unbounded shrink (the verdict is the
  same; ``shrink_budget=math.inf`` shrinks to the end); a cheap one stops on the run count and reports the same
  example on every run.
- **The minimal failure**: the error raised is the one the check raised on the minimal (or best so far)
  example, of the same type, its message followed by that example (``describe``) and ``hints``
  for its type; hypothesis's own notes are dropped.
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, TypeVar

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st
from hypothesis.internal.conjecture.choice import FloatConstraints, choice_constraints_key, choice_permitted
from hypothesis.internal.conjecture.providers import AVAILABLE_PROVIDERS, GLOBAL_CONSTANTS, HypothesisProvider
from hypothesis.internal.floats import SIGNALING_NAN, float_to_int, make_float_clamper, next_down, next_up

from gradcheck_lab.core import arguments
from gradcheck_lab.errors import GradcheckError, InconclusiveWarning

T = TypeVar("T")

SHRINK_BUDGET = 2.0
"""The default shrink budget, in passing searches: with the search before the failure, at most about 3 of them."""

RUN_SHARE = 0.75
"""The shrink phase's runs are capped at this share of its budget: a search whose failing runs cost what its
passing ones do (a cheap check) stops on the count, so it reports the same example on every run."""

MIN_SHRINK_BUDGET = 20
"""The shrink phase may always take as long as this many passing runs: a search of a few examples still shrinks
(it then costs up to ``max_examples + MIN_SHRINK_BUDGET`` passing runs; from 10 examples on, at most 3 times)."""


class Checked(Protocol):
    """What a check returns that a search summarizes: :class:`~gradcheck_lab.core.report.Report` and
    ``OptimizerReport`` both qualify."""

    @property
    def device(self) -> str: ...
    @property
    def dtype(self) -> str: ...
    @property
    def max_abs_error(self) -> float: ...
    @property
    def max_rel_error(self) -> float: ...
    @property
    def ratio(self) -> float: ...


@dataclass
class VerifySummary:
    """The worst agreement seen for one device and dtype over every example.

    ``examples`` counts the inputs that passed (the evidence); ``inconclusive`` those where float64
    rounding could explain a disagreement, which prove nothing either way and are not in the maxima.
    """

    device: str
    dtype: str
    examples: int = 0
    max_abs_error: float = 0.0
    max_rel_error: float = 0.0
    ratio: float = 0.0
    tolerance: Any = None
    inconclusive: int = 0

    def add(self, report: Checked) -> None:
        """Count one report: its errors into the maxima, or one more inconclusive input."""
        if getattr(report, "verdict", "passed") == "inconclusive":
            self.inconclusive += 1
            return
        self.examples += 1
        self.max_abs_error = max(self.max_abs_error, report.max_abs_error)
        self.max_rel_error = max(self.max_rel_error, report.max_rel_error)
        self.ratio = max(self.ratio, report.ratio)
        self.tolerance = getattr(report, "tolerance", None)


@dataclass
class VerifyResult:
    """What a search that found no mismatch saw: one :class:`VerifySummary` per device and dtype.

    ``report`` is the last report of the last example (the one ``check_x`` returned); ``reports`` the
    last example's reports, one per device and dtype; ``worst`` the report closest to its bound over
    the whole search. ``passed`` is always true when returned (a failure raises).
    """

    summaries: list[VerifySummary] = field(default_factory=list)
    passed: bool = True
    report: Any = None
    reports: list[Any] = field(default_factory=list)
    worst: Any = None

    @property
    def examples(self) -> int:
        """The number of examples that counted as evidence (largest over devices and dtypes)."""
        return max((s.examples for s in self.summaries), default=0)

    @property
    def inconclusive(self) -> int:
        return sum(s.inconclusive for s in self.summaries)


class SeedOnlyProvider(HypothesisProvider):
    """hypothesis's own provider, its built-in constants kept, without those of the modules that happen to be loaded.

    The same choice as hypothesis's ``_maybe_draw_constant`` with an empty pool of local constants.
    """

    _pools: ClassVar[dict[tuple[Any, ...], tuple[Any, ...]]] = {}

    def _maybe_draw_constant(self, choice_type: Any, constraints: Any, *, p: float = 0.05) -> Any:
        assert self._random is not None
        if self._random.random() > p:
            return None
        key = (choice_type, choice_constraints_key(choice_type, constraints))
        if key not in self._pools:
            self._pools[key] = tuple(c for c in GLOBAL_CONSTANTS.set_for_type(choice_type)
                                     if choice_permitted(c, constraints))
        pool = self._pools[key]
        return self._random.choice(pool) if pool else None


    _float_setups: ClassVar[dict[tuple[Any, ...], tuple[tuple[float, ...], Callable[[float], float]]]] = {}

    def draw_float(self, *, min_value: float = -math.inf, max_value: float = math.inf, allow_nan: bool = True,
                   smallest_nonzero_magnitude: float) -> float:
        """hypothesis's ``draw_float``, the same draws from the same random calls, with the list of boundary values
        it may pick and its clamper made once per constraints instead of on every draw (most of the cost of an
        array drawn element by element)."""
        assert self._random is not None
        constraints: FloatConstraints = {"min_value": min_value, "max_value": max_value, "allow_nan": allow_nan,
                       "smallest_nonzero_magnitude": smallest_nonzero_magnitude}
        constant = self._maybe_draw_constant("float", constraints, p=0.15)
        if constant is not None:
            return float(constant)  # (a float: the pool holds the constants these constraints permit)
        key = choice_constraints_key("float", constraints)
        if key not in self._float_setups:
            candidates = [0.0, -0.0, math.inf, -math.inf, math.nan, -math.nan, SIGNALING_NAN, -SIGNALING_NAN,
                          min_value, next_up(min_value), min_value + 1, max_value - 1, next_down(max_value), max_value]
            self._float_setups[key] = (
                tuple(f for f in candidates if choice_permitted(f, constraints)),
                make_float_clamper(min_value, max_value, smallest_nonzero_magnitude=smallest_nonzero_magnitude,
                                   allow_nan=allow_nan))
        boundary, clamper = self._float_setups[key]
        if boundary and self._random.random() < 0.05:
            return self._random.choice(boundary)
        result = self._draw_float()
        clamped = result if allow_nan and math.isnan(result) else clamper(result)
        if float_to_int(clamped) != float_to_int(result) and not (math.isnan(result) and allow_nan):
            result = clamped
        return result


BACKEND = "gradcheck-lab-seed-only"
AVAILABLE_PROVIDERS.setdefault(BACKEND, SeedOnlyProvider)


def search_settings(max_examples: int | None = None) -> settings:
    """The loaded profile's settings, with ``max_examples`` when given, no deadline, no database."""
    base = settings()
    return settings(base, max_examples=base.max_examples if max_examples is None else max_examples, deadline=None,
                    database=None, derandomize=False, report_multiple_bugs=False, backend=BACKEND,
                    suppress_health_check=list(HealthCheck))


def describe_inputs(example: Any) -> str:
    """Each input of a tuple on its own line, at full precision (the format of every counterexample)."""
    items = example if isinstance(example, tuple | list) else (example,)
    with np.printoptions(precision=17, threshold=64):
        return "\n".join(f"    input {k}: {np.array2string(np.asarray(x), separator=', ')}"
                         if isinstance(x, np.ndarray | float | int) else f"    input {k}: {x!r:.2000}"
                         for k, x in enumerate(items))


class _BudgetSpent(BaseException):
    """Ends hypothesis's run when the shrink budget is spent (a BaseException: hypothesis does not catch it)."""


@dataclass
class _Search:
    """The state of one search: the smallest failure so far, what runs cost, and the shrink budget."""

    max_examples: int
    shrink_budget: float
    last_end: float = field(default_factory=time.process_time)
    runs: dict[bool, list[float]] = field(default_factory=lambda: {True: [0, 0.0], False: [0, 0.0]})
    shrink_runs: int | None = None
    shrink_start: float = 0.0
    stopped_early: bool = False
    failure: GradcheckError | None = None
    last_failure: Any = None

    def seconds_per_passing_run(self) -> float:
        """The mean time of a passing run; until one is seen, of a failing one (which costs more)."""
        count, seconds = self.runs[True] if self.runs[True][0] else self.runs[False]
        return seconds / max(count, 1)

    def start_run(self) -> None:
        """Count one more run once shrinking has started; end the search when the budget is spent."""
        if self.shrink_runs is None:
            return
        self.shrink_runs += 1
        budget = max(MIN_SHRINK_BUDGET, self.shrink_budget * self.max_examples)  # in passing runs
        seconds = budget * self.seconds_per_passing_run()
        runs = RUN_SHARE * budget - 1
        if self.shrink_runs > runs or time.process_time() - self.shrink_start > seconds:
            self.stopped_early = True
            raise _BudgetSpent

    def ran(self, passed: bool) -> None:
        """Count a run's seconds, hypothesis's drawing of its example included."""
        end = time.process_time()
        self.runs[passed][0] += 1
        self.runs[passed][1] += end - self.last_end
        self.last_end = end

    def fail(self, example: Any, exc: GradcheckError) -> None:
        """Keep the latest failure: hypothesis only runs candidates smaller than the smallest failure so far."""
        self.failure, self.last_failure = exc, example
        if self.shrink_runs is None:
            self.shrink_runs, self.shrink_start = 0, time.process_time()


def run_search(
    check_one: Callable[[T], Checked | Iterable[Checked]],
    strategy: st.SearchStrategy[T],
    *,
    max_examples: int | None = None,
    seed: int | None = 0,
    describe: Callable[[T], str] = describe_inputs,
    hints: Mapping[type[BaseException], str] | None = None,
    shrink_budget: float = SHRINK_BUDGET,
) -> VerifyResult:
    """Run ``check_one`` on the examples ``strategy`` draws; on a failure, shrink it (within budget) and raise.

    Args:
        check_one: checks one example; returns a report (or an iterable of reports, one per device and
            dtype), raises a :class:`~gradcheck_lab.errors.GradcheckError` (``GradientMismatch``, ...) on a failure.
        strategy: a hypothesis strategy of examples (typically tuples of input arrays).
        max_examples: examples to run; None: the loaded hypothesis profile's ``max_examples``.
        seed: fixes the draws (the same examples on every run, whatever else is loaded); None: a fresh random search.
        describe: writes a failing example for the message.
        hints: extra text appended to a failure of that type (e.g. how to restrict the inputs on NaN).
        shrink_budget: the shrink phase's budget, in estimated costs of a passing search.

    Returns:
        A :class:`VerifyResult` with one summary per device and dtype and the last reports. Inconclusive
        inputs are counted, not evidence; an :class:`~gradcheck_lab.errors.InconclusiveWarning` says how many.

    Raises:
        GradcheckError: the error ``check_one`` raised on the smallest failing example found, of the same type,
            its message followed by that example.
        InvalidInputError: ``max_examples`` or ``seed`` is not a whole number (``max_examples`` at least 1).
    """
    __tracebackhide__ = True
    if max_examples is not None:
        max_examples = arguments.integer("max_examples", max_examples, minimum=1)
    if seed is not None:
        seed = arguments.integer("seed", seed, minimum=0)
    config = search_settings(max_examples)
    state = _Search(config.max_examples, shrink_budget)
    summaries: dict[tuple[str, str], VerifySummary] = {}
    result = VerifyResult()

    def one_example(example: T) -> None:
        __tracebackhide__ = True
        state.start_run()
        try:
            with warnings.catch_warnings():  # counted, and reported once at the end
                warnings.simplefilter("ignore", InconclusiveWarning)
                outcome = check_one(example)
        except GradcheckError as exc:
            state.ran(False)
            state.fail(example, exc)
            raise
        state.ran(True)
        reports = list(outcome) if isinstance(outcome, Iterable) else [outcome]
        for report in reports:
            key = (str(report.device), str(report.dtype))
            summaries.setdefault(key, VerifySummary(*key)).add(report)
            if result.worst is None or report.ratio > result.worst.ratio:
                result.worst = report
        result.reports = reports
        result.report = reports[-1] if reports else None

    search = config(given(strategy)(one_example))
    if seed is not None:
        search = hypothesis_seed(seed)(search)
    try:
        search()
    except GradcheckError as exc:
        raise _minimal(exc, state, describe, hints) from None
    except _BudgetSpent:
        assert state.failure is not None
        raise _minimal(state.failure, state, describe, hints) from None
    result.summaries = list(summaries.values())
    unresolved = [s for s in result.summaries if s.inconclusive]
    if unresolved:
        counts = ", ".join(f"{s.inconclusive} of {s.inconclusive + s.examples} on {s.device}/{s.dtype}"
                           for s in unresolved)
        warnings.warn(f"inconclusive inputs, not counted as evidence: {counts} (float64 rounding at those inputs "
                      "could explain the disagreement; the check on one of them says where)",
                      InconclusiveWarning, stacklevel=3)
    return result


def _minimal(exc: GradcheckError, state: _Search, describe: Callable[[Any], str],
             hints: Mapping[type[BaseException], str] | None) -> GradcheckError:
    """The failure on the smallest example, of the same type, its message followed by that example."""
    which = ("minimal counterexample found before the shrink budget ran out (shrinking stopped early)"
             if state.stopped_early else "minimal counterexample (after shrinking)")
    message = f"{exc}\n  {which}:\n{describe(state.last_failure)}"
    for kind, hint in (hints or {}).items():
        if isinstance(exc, kind):
            message += f"\n  {hint}"
    error = copy.copy(exc)
    error.args = (message,)
    error.__dict__.pop("__notes__", None)
    error.__traceback__ = None
    return error


def first_example(strategy: st.SearchStrategy[T]) -> T:
    """One example of ``strategy``, drawn once with seed 0 (to learn the number of inputs, outputs, shapes)."""
    found: list[T] = []

    @settings(max_examples=1, database=None, deadline=None, backend=BACKEND, suppress_health_check=list(HealthCheck))
    @hypothesis_seed(0)
    @given(strategy)
    def probe(example: T) -> None:
        found.append(example)

    probe()
    return found[0]


def arity(strategy: st.SearchStrategy[tuple[Any, ...]]) -> int:
    """The number of inputs a strategy of input tuples draws (one example, drawn once, seeded)."""
    return len(first_example(strategy))
