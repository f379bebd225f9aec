"""Plan and run the verify matrix: every selected case on every device and dtype, one row per check.

No argument parsing and no printing here: :mod:`gradcheck_lab.cli` parses the command line, calls
:func:`plan_checks` and :func:`check_results` (or :func:`run_checks`), and prints the rows as they arrive.

The checks are independent, so they run in parallel over the free cores: a pool of forked workers
(the imports and the registry are paid for once, in the parent), each with its share of the cores for
torch and one BLAS thread (:func:`gradcheck_lab.core.threads.set_worker_share`: pools sized to the whole
machine in every worker would fight). Results come back in the plan's order whatever order they finish
in, so the output is the same as a sequential run's, row for row.
"""

from __future__ import annotations

import multiprocessing
import signal
import time
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
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


def check_rows(check: Check, max_examples: int, seed: int) -> list[Row]:
    """Run one check: one row for a gradient case, one per implementation for an optimizer case."""
    if check.kind == "gradient":
        return [gradient_row(check.case, check.device, check.dtype, max_examples, seed)]
    return list(optimizer_rows(check.case, check.device, check.dtype, seed))


def default_workers(checks: Sequence[Check]) -> int:
    """Workers for ``checks``: one per core of this process's share, at most one per check.

    1 (run in this process) where forking is unsafe or unavailable: a plan with a GPU check (CUDA cannot
    be used in a forked child once initialised), or a platform without ``fork``.
    """
    from gradcheck_lab.core.threads import cores_for_this_process

    if any(c.device != "cpu" for c in checks) or "fork" not in multiprocessing.get_all_start_methods():
        return 1
    return max(1, min(cores_for_this_process(), len(checks)))


_planned: list[tuple[Sequence[Check], int, int]] = []
"""The plan a forked worker runs from (set in the parent before the fork: Cases hold lambdas, which do not pickle)."""


def _import_check_modules() -> None:
    import gradcheck_lab.cases.registry
    import gradcheck_lab.gradients.search
    import gradcheck_lab.optim.check  # noqa: F401


def _start_worker(cores: int) -> None:
    from gradcheck_lab.core.threads import set_worker_share
    from gradcheck_lab.reference import optim_blocks

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it stops the pool
    set_worker_share(cores)
    optim_blocks.set_num_threads(cores)  # the NumPy optimizers' block threads too


def _run_planned(index: int) -> tuple[int, list[Row]]:
    checks, max_examples, seed = _planned[-1]
    return index, check_rows(checks[index], max_examples, seed)


def check_results(checks: Sequence[Check], max_examples: int, seed: int,
                  workers: int | None = None) -> Generator[list[Row], None, None]:
    """Each check's rows, in the order of ``checks``, as soon as that check and every one before it finished.

    Args:
        checks: from :func:`plan_checks`.
        max_examples: hypothesis examples per gradient check.
        seed: the search's and the optimizer gradients' seed.
        workers: processes to run in (default :func:`default_workers`); 1 runs every check in this process.

    Interrupting the iteration (Ctrl-C) or closing it stops the workers at once.
    """
    if workers is None:
        workers = default_workers(checks)
    if workers <= 1 or len(checks) <= 1:
        for check in checks:
            yield check_rows(check, max_examples, seed)
        return
    from gradcheck_lab.core.threads import cores_for_this_process

    cores = max(1, cores_for_this_process() // workers)
    _import_check_modules()  # once, here: every forked worker inherits them
    _planned.append((checks, max_examples, seed))
    pool = multiprocessing.get_context("fork").Pool(workers, initializer=_start_worker, initargs=(cores,))
    try:
        done: dict[int, list[Row]] = {}
        following = 0
        for index, rows in pool.imap_unordered(_run_planned, range(len(checks))):
            done[index] = rows
            while following in done:
                yield done.pop(following)
                following += 1
        pool.close()
    finally:
        pool.terminate()
        pool.join()
        _planned.pop()


def run_checks(checks: Sequence[Check], max_examples: int, seed: int,
               progress: Callable[[Row], None] | None = None, *, workers: int | None = 1) -> list[Row]:
    """Run ``checks``; each row goes to ``progress`` as it arrives, in the order of ``checks``.

    ``workers`` as in :func:`check_results` (default 1: in this process).
    """
    rows: list[Row] = []
    for new in check_results(checks, max_examples, seed, workers):
        for row in new:
            rows.append(row)
            if progress:
                progress(row)
    return rows
