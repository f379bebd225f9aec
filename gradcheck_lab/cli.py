"""``gradcheck-lab verify | list | bench``."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from gradcheck_lab.cases import CASES, OPTIMIZER_CASES, Case, OptimizerCase, check_optimizer_case
from gradcheck_lab.devices import resolve_devices
from gradcheck_lab.dtypes import dtype_name, resolve_dtype
from gradcheck_lab.errors import GradcheckError
from gradcheck_lab.machine import machine_info
from gradcheck_lab.optim_check import check_torch_implementations
from gradcheck_lab.search import verify


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


def _failed_row(case: str, kind: str, device: str, dtype: str, examples: int, start: float, exc: Exception) -> Row:
    return Row(case, kind, device, dtype, examples, float("nan"), float("nan"), "", False,
               time.perf_counter() - start, str(exc))


def _gradient_row(case: Case, device: str, dtype: str, max_examples: int, seed: int) -> Row:
    start = time.perf_counter()
    try:
        result = verify(case.reference, case.torch_fn, inputs=case.inputs, devices=[device], dtypes=[dtype],
                        max_examples=max_examples, finite_differences=True, seed=seed,
                        **case.check_options(dtype))
    except (GradcheckError, AssertionError) as exc:
        return _failed_row(case.name, "gradient", device, dtype, 0, start, exc)
    s = result.summaries[0]
    tol = s.tolerance.describe() if s.tolerance else ""
    return Row(case.name, "gradient", device, dtype, s.examples, s.max_abs_error, s.max_rel_error, tol, True,
               time.perf_counter() - start)


def _optimizer_rows(case: OptimizerCase, device: str, dtype: str, seed: int) -> list[Row]:
    rows = []
    start = time.perf_counter()
    try:
        report = check_optimizer_case(case, device=device, dtype=dtype, seed=seed)
        rows.append(Row(case.name, "optimizer", device, dtype, report.steps, report.max_abs_error,
                        report.max_rel_error, report.tolerance.describe(), True, time.perf_counter() - start))
    except (GradcheckError, AssertionError) as exc:
        rows.append(_failed_row(case.name, "optimizer", device, dtype, case.steps, start, exc))
    start = time.perf_counter()
    try:
        variants = check_torch_implementations(case.torch_cls, hyper=case.hyper, shapes=case.shapes,
                                               steps=case.steps, device=device, dtype=dtype, seed=seed)
        for name, report in variants.items():
            rows.append(Row(f"{case.name} [torch {name} vs for-loop]", "optimizer", device, dtype, report.steps,
                            report.max_abs_error, report.max_rel_error, report.tolerance.describe(), True,
                            time.perf_counter() - start))
    except (GradcheckError, AssertionError) as exc:
        rows.append(_failed_row(f"{case.name} [torch variants]", "optimizer", device, dtype, case.steps, start, exc))
    return rows


def _selected(registry: Mapping[str, Case | OptimizerCase], names: Sequence[str] | None, devices: Sequence[str],
              dtypes: set[str] | None) -> Iterator[tuple[Any, str, str]]:
    """``(case, device, dtype)`` for every selected case, device and dtype the case supports."""
    for case in registry.values():
        if names and case.name not in names:
            continue
        for device in devices:
            for dtype in case.dtypes:
                if dtypes is None or dtype in dtypes:
                    yield case, device, dtype


def run_verify(devices: Sequence[str], dtypes: Sequence[str] | None, cases: Sequence[str] | None,
               max_examples: int, seed: int, optimizers: bool, progress: Any = None) -> list[Row]:
    """Every selected case on every device and every dtype it supports (or the requested ones)."""
    wanted = None if dtypes is None else {dtype_name(resolve_dtype(d)) for d in dtypes}
    rows: list[Row] = []

    def emit(new_rows: list[Row]) -> None:
        for row in new_rows:
            rows.append(row)
            if progress:
                progress(row)

    for case, device, dtype in _selected(CASES, cases, devices, wanted):
        emit([_gradient_row(case, device, dtype, max_examples, seed)])
    if optimizers:
        for case, device, dtype in _selected(OPTIMIZER_CASES, cases, devices, wanted):
            emit(_optimizer_rows(case, device, dtype, seed))
    return rows


def format_table(rows: Sequence[Row]) -> str:
    header = ("case", "device", "dtype", "examples", "max abs err", "max rel err", "tolerance", "result")
    body = [(r.case, r.device, r.dtype, str(r.examples), f"{r.max_abs_error:.2e}", f"{r.max_rel_error:.2e}",
             r.tolerance, "pass" if r.passed else "FAIL") for r in rows]
    widths = [max(len(x) for x in col) for col in zip(header, *body, strict=True)]
    lines = ["  ".join(x.ljust(w) for x, w in zip(line, widths, strict=True)).rstrip() for line in (header, *body)]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _cmd_verify(args: argparse.Namespace) -> int:
    unknown = [c for c in args.case or [] if c not in CASES and c not in OPTIMIZER_CASES]
    if unknown:
        print(f"gradcheck-lab: unknown case(s): {', '.join(unknown)} (see `gradcheck-lab list`)", file=sys.stderr)
        return 2
    devices = resolve_devices(args.device)
    start = time.perf_counter()

    def progress(row: Row) -> None:
        if args.verbose:
            print(f"  {'pass' if row.passed else 'FAIL'}  {row.case} {row.device} {row.dtype} "
                  f"({row.seconds:.2f}s)", file=sys.stderr)

    rows = run_verify(devices, args.dtype.split(",") if args.dtype else None, args.case, args.max_examples,
                      args.seed, not args.no_optimizers, progress)
    elapsed = time.perf_counter() - start
    print(format_table(rows))
    failures = [r for r in rows if not r.passed]
    for r in failures:
        print(f"\nFAIL {r.case} on {r.device}/{r.dtype}:\n{r.error}")
    print(f"\n{len(rows) - len(failures)} passed, {len(failures)} failed in {elapsed:.1f}s "
          f"on {', '.join(devices)}")
    if args.json:
        payload = {"machine": machine_info(), "seconds": elapsed, "passed": not failures,
                   "results": [asdict(r) for r in rows]}
        with open(args.json, "w") as fh:
            json.dump(payload, fh, indent=2, default=str)
    return 1 if failures else 0


def _cmd_list(args: argparse.Namespace) -> int:
    rows = [(c.name, "gradient", ",".join(c.dtypes), c.description) for c in CASES.values()]
    rows += [(c.name, "optimizer", ",".join(c.dtypes), c.description) for c in OPTIMIZER_CASES.values()]
    if args.json:
        print(json.dumps([dict(zip(("name", "kind", "dtypes", "description"), r, strict=True)) for r in rows],
                         indent=2))
        return 0
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        print(f"{r[0].ljust(widths[0])}  {r[1].ljust(widths[1])}  {r[2].ljust(widths[2])}  {r[3]}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gradcheck-lab", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("verify", help="check every case on every device and dtype, print a table")
    p.add_argument("--device", default="all", help="cpu, cuda, cuda:1, mps, all, or a comma list (default: all)")
    p.add_argument("--dtype", default=None, help="comma list of dtypes (default: every dtype each case supports)")
    p.add_argument("--case", action="append", help="only this case (repeatable)")
    p.add_argument("--max-examples", type=int, default=25, help="hypothesis examples per case, device and dtype")
    p.add_argument("--seed", type=int, default=0, help="seed for the input search and optimizer gradients")
    p.add_argument("--no-optimizers", action="store_true", help="skip the optimizer cases")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    p.add_argument("-v", "--verbose", action="store_true", help="print each check as it finishes")
    p.set_defaults(func=_cmd_verify)

    p = sub.add_parser("list", help="list the registered cases")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=_cmd_list)

    from gradcheck_lab import bench

    bench.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except GradcheckError as exc:
        print(f"gradcheck-lab: {exc}", file=sys.stderr)
        return 2
