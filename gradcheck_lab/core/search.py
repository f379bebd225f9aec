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
- **Shrinking within budget**: after the first failure, hypothesis shrinks it with at most
  ``shrink_factor * max_examples - 1`` more runs of the check (default 2: with the runs before the failure, at
    most 3 times the runs of a passing search; unbounded, shrinking cost 30 times a passing search). Past the
  budget nothing new runs; the smallest failing example found so far is reported, with a note that shrinking
  stopped early. The budget counts runs, not seconds, so the reported example is the same on a loaded machine.
- **The minimal failure**: the error raised is the one the check raised on the minimal (or best so far)
  example, of the same type, its message followed by that example (``describe``) and ``hints``
  for its type; hypothesis's own notes are dropped.
"""

from __future__ import annotations

import copy
import math
import pickle
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, TypeVar

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st
from hypothesis.internal.conjecture.choice import choice_constraints_key, choice_permitted
from hypothesis.internal.conjecture.providers import AVAILABLE_PROVIDERS, GLOBAL_CONSTANTS, HypothesisProvider

from gradcheck_lab.core import arguments
from gradcheck_lab.errors import GradcheckError, InconclusiveWarning

T = TypeVar("T")

SHRINK_FACTOR = 2.0
"""The default shrink budget, in runs of the check per example of a passing search."""


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


def _fingerprint(example: Any) -> bytes | str:
    try:
        return pickle.dumps(example, protocol=4)
    except Exception:  # an example that pickle cannot hold
        return repr(example)


@dataclass
class _Search:
    """The state of one search: the failures seen, and how many runs shrinking has left."""

    budget: int
    shrink_runs: int | None = None
    stopped_early: bool = False
    failures: dict[bytes | str, BaseException] = field(default_factory=dict)
    last_failure: Any = None

    def over_budget(self) -> bool:
        """Count one more run once shrinking has started; true when the budget is spent."""
        if self.shrink_runs is None:
            return False
        self.shrink_runs += 1
        return self.shrink_runs > self.budget

    def fail(self, example: Any, exc: BaseException) -> None:
        self.failures[_fingerprint(example)] = exc
        self.last_failure = example
        if self.shrink_runs is None:
            self.shrink_runs = 0


def run_search(
    check_one: Callable[[T], Checked | Iterable[Checked]],
    strategy: st.SearchStrategy[T],
    *,
    max_examples: int | None = None,
    seed: int | None = 0,
    describe: Callable[[T], str] = describe_inputs,
    hints: Mapping[type[BaseException], str] | None = None,
    shrink_factor: float = SHRINK_FACTOR,
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
        shrink_factor: the shrink phase's budget in runs of the check, as a multiple of ``max_examples``.

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
    state = _Search(max(1, math.ceil(shrink_factor * config.max_examples) - 1))
    summaries: dict[tuple[str, str], VerifySummary] = {}
    result = VerifyResult()

    def one_example(example: T) -> None:
        __tracebackhide__ = True
        if state.over_budget():
            state.stopped_early = True
            known = state.failures.get(_fingerprint(example))
            if known is None:
                return  # shrinking is over: nothing new runs
            state.last_failure = example
            raise known
        try:
            with warnings.catch_warnings():  # counted, and reported once at the end
                warnings.simplefilter("ignore", InconclusiveWarning)
                outcome = check_one(example)
        except GradcheckError as exc:
            state.fail(example, exc)
            raise
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


def arity(strategy: st.SearchStrategy[tuple[Any, ...]]) -> int:
    """The number of inputs a strategy of input tuples draws (one example, drawn once, seeded)."""
    found: list[int] = []

    @settings(max_examples=1, database=None, deadline=None, backend=BACKEND, suppress_health_check=list(HealthCheck))
    @hypothesis_seed(0)
    @given(strategy)
    def probe(example: tuple[Any, ...]) -> None:
        found.append(len(example))

    probe()
    return found[0]
