"""Plan and run the verify matrix: every selected case on every device and dtype, one row per check.

No argument parsing and no printing here: :mod:`gradcheck_lab.cli` parses the command line, calls
:func:`plan_checks` and :func:`run_checks`, and prints the rows as they arrive.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass
class Row:
    case: str
    kind: str
    device: str
    dtype: str
    examples: int
    max_abs_error: float
    max_rel_error: float
    tolerance: str
    passed: bool
    seconds: float
    error: str = ""
    inconclusive: int = 0
    error_type: str = ""


def failed_row(case: str, kind: str, device: str, dtype: str, start: float, exc: BaseException) -> Row:
    """A row for a check that raised: no examples or errors to quote, only what went wrong."""
    return Row(case, kind, device, dtype, 0, float("nan"), float("nan"), "", False,
               time.perf_counter() - start, str(exc), error_type=type(exc).__name__)


def gradient_row(case: Any, device: str, dtype: str, max_examples: int, seed: int) -> Row:
    from gradcheck_lab.errors import GradcheckError
    from gradcheck_lab.gradients.search import verify

    start = time.perf_counter()
    try:
        result = verify(case.reference, case.torch_fn, inputs=case.inputs, devices=[device], dtypes=[dtype],
                        max_examples=max_examples, finite_differences=True, seed=seed,
                        **case.check_options(dtype))
    except (GradcheckError, AssertionError) as exc:
        return failed_row(case.name, "gradient", device, dtype, start, exc)
    s = result.summaries[0]
    tol = s.tolerance.describe() if s.tolerance else ""
    return Row(case.name, "gradient", device, dtype, s.examples, s.max_abs_error, s.max_rel_error, tol, True,
               time.perf_counter() - start, inconclusive=int(getattr(s, "inconclusive", 0)))


def optimizer_rows(case: Any, device: str, dtype: str, seed: int) -> Iterator[Row]:
    from gradcheck_lab.cases.registry import check_optimizer_case
    from gradcheck_lab.errors import GradcheckError
    from gradcheck_lab.optim.check import check_torch_implementations

    start = time.perf_counter()
    try:
        report = check_optimizer_case(case, device=device, dtype=dtype, seed=seed)
        yield Row(case.name, "optimizer", device, dtype, report.steps, report.max_abs_error,
                  report.max_rel_error, report.tolerance.describe(), True, time.perf_counter() - start)
    except (GradcheckError, AssertionError) as exc:
        yield failed_row(case.name, "optimizer", device, dtype, start, exc)
    start = time.perf_counter()
    try:
        variants = check_torch_implementations(case.torch_cls, hyper=case.hyper, shapes=case.shapes,
                                               steps=case.steps, device=device, dtype=dtype, seed=seed)
    except (GradcheckError, AssertionError) as exc:
        yield failed_row(f"{case.name} [torch variants]", "optimizer", device, dtype, start, exc)
        return
    for name, report in variants.items():
        yield Row(f"{case.name} [torch {name} vs for-loop]", "optimizer", device, dtype, report.steps,
                  report.max_abs_error, report.max_rel_error, report.tolerance.describe(), True,
                  time.perf_counter() - start)


@dataclass(frozen=True)
class Check:
    """One unit of work: a case on one device in one dtype."""

    case: Any
    kind: str  # "gradient" or "optimizer"
    device: str
    dtype: str


def _selected(registry: Mapping[str, Any], kind: str, names: Sequence[str] | None, devices: Sequence[str],
              dtypes: set[str] | None) -> Iterator[Check]:
    for case in registry.values():
        if names is not None and case.name not in names:
            continue
        for device in devices:
            for dtype in case.dtypes:
                if dtypes is None or dtype in dtypes:
                    yield Check(case, kind, device, dtype)


def plan_checks(devices: Sequence[str], dtypes: Sequence[str] | None, cases: Sequence[str] | None,
                optimizers: bool) -> list[Check]:
    """Every selected case on every device and every dtype it supports (or the requested ones)."""
    from gradcheck_lab.cases.registry import CASES, OPTIMIZER_CASES
    from gradcheck_lab.core.dtypes import dtype_name, resolve_dtype

    wanted = None if dtypes is None else {dtype_name(resolve_dtype(d)) for d in dtypes}
    checks = list(_selected(CASES, "gradient", cases, devices, wanted))
    if optimizers:
        checks += _selected(OPTIMIZER_CASES, "optimizer", cases, devices, wanted)
    return checks


def run_checks(checks: Sequence[Check], max_examples: int, seed: int,
               progress: Callable[[Row], None] | None = None) -> list[Row]:
    """Run ``checks`` in order; each row goes to ``progress`` as it finishes."""
    rows: list[Row] = []
    for check in checks:
        new = ([gradient_row(check.case, check.device, check.dtype, max_examples, seed)]
               if check.kind == "gradient" else optimizer_rows(check.case, check.device, check.dtype, seed))
        for row in new:
            rows.append(row)
            if progress:
                progress(row)
    return rows
