"""The ``gradcheck-lab`` command: ``verify``, ``list`` and ``bench``."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from typing import TextIO

from gradcheck_lab import __version__, runner
from gradcheck_lab.cases import ENTRY_POINT_GROUP
from gradcheck_lab.cli.argtypes import output_path, positive_int
from gradcheck_lab.runner import Check, Row

EXIT_INTERRUPTED = 130

DESCRIPTION = """\
Check hand-derived gradients and optimizers against torch.autograd and torch.optim.

  verify   run every registered case on every device and dtype, one row per check
  list     show the registered cases
  bench    time CPU against GPU gradients next to the same run's hardware ceiling

Run "gradcheck-lab COMMAND --help" for a command's options."""


# --- the table ----------------------------------------------------------------------------------

_NUMERIC = (("examples", 8), ("max abs err", 11), ("max rel err", 11), ("inconclusive", 12), ("seconds", 7))


def _num(x: float) -> str:
    return "-" if x != x else f"{x:.2e}"  # nan: the check raised before measuring anything


def _result(row: Row) -> str:
    if row.passed:
        return "pass"
    first = (row.error.strip().splitlines() or [""])[0]
    what = f"{row.error_type}: {first}" if row.error_type else first
    return f"FAIL ({what[:90] + '...' if len(what) > 90 else what})"


class Table:
    """A table printed a row at a time: fixed widths, chosen from the planned checks."""

    def __init__(self, checks: Sequence[Check]) -> None:
        names = [c.case.name + (" [torch foreach vs for-loop]" if c.kind == "optimizer" else "") for c in checks]
        self.widths = [max([4, *map(len, names)]), max([6, *(len(c.device) for c in checks)]),
                       max([5, *(len(c.dtype) for c in checks)])]

    def _line(self, cells: Sequence[str]) -> str:
        head = [c.ljust(w) for c, w in zip(cells[:3], self.widths, strict=True)]
        nums = [c.rjust(w) for c, (_, w) in zip(cells[3:8], _NUMERIC, strict=True)]
        return "  ".join([*head, *nums, *cells[8:]]).rstrip()

    def header(self) -> str:
        cells = ["case", "device", "dtype", *(n for n, _ in _NUMERIC), "tolerance / result"]
        rule = ["-" * w for w in self.widths] + ["-" * w for _, w in _NUMERIC] + ["-" * 18]
        return self._line(cells) + "\n" + self._line(rule)

    def row(self, r: Row) -> str:
        examples = str(r.examples) if r.passed or r.examples else "-"
        tail = f"{r.tolerance}  {_result(r)}" if r.tolerance else _result(r)
        return self._line([r.case, r.device, r.dtype, examples, _num(r.max_abs_error), _num(r.max_rel_error),
                           str(r.inconclusive), f"{r.seconds:.1f}", tail])


# --- commands -----------------------------------------------------------------------------------

class _Output:
    """Rows to stdout as they finish; on a terminal, a progress line on stderr between them."""

    def __init__(self, total: int, out: TextIO, err: TextIO) -> None:
        self.total, self.done, self.out, self.err = total, 0, out, err
        self.live = err.isatty()

    def start(self, check: Check) -> None:
        if self.live:
            print(f"\r\033[K[{self.done + 1}/{self.total}] {check.case.name} {check.device} {check.dtype} ...",
                  end="", file=self.err, flush=True)

    def clear(self) -> None:
        if self.live:
            print("\r\033[K", end="", file=self.err, flush=True)

    def row(self, text: str) -> None:
        self.clear()
        print(text, file=self.out, flush=True)


def _cmd_verify(args: argparse.Namespace) -> int:
    from gradcheck_lab.cases.registry import CASES, OPTIMIZER_CASES, CaseLoadError, load_user_cases
    from gradcheck_lab.core.devices import resolve_devices

    try:
        added = load_user_cases(args.cases or ())
    except CaseLoadError as exc:
        return _usage(args, str(exc))
    names: list[str] | None = args.case
    if args.cases:
        if not added:
            return _usage(args, f"--cases {' '.join(args.cases)}: registered no case (call gradcheck_lab.register)")
        names = args.case or added
    unknown = [c for c in args.case or [] if c not in CASES and c not in OPTIMIZER_CASES]
    if unknown:
        return _usage(args, f"unknown case(s): {', '.join(unknown)} (see `gradcheck-lab list`)")
    devices = resolve_devices(args.device)
    checks = runner.plan_checks(devices, args.dtype.split(",") if args.dtype else None, names, not args.no_optimizers)
    if not checks:
        return _usage(args, "this selection checks nothing: no selected case supports the requested "
                            f"dtype(s) {args.dtype or ''} (see `gradcheck-lab list` for each case's dtypes)")

    output = _Output(len(checks), sys.stdout, sys.stderr)
    table = Table(checks)
    print(table.header(), flush=True)
    rows: list[Row] = []

    def finished(row: Row) -> None:
        rows.append(row)
        output.row(table.row(row))

    start = time.perf_counter()
    interrupted = False
    results = runner.check_results(checks, args.max_examples, args.seed, workers=args.jobs)
    try:
        for check in checks:
            output.start(check)
            for row in next(results):
                finished(row)
            output.done += 1
    except KeyboardInterrupt:
        interrupted = True
        output.clear()
    finally:
        results.close()  # stops the workers (at once when interrupted)
    elapsed = time.perf_counter() - start
    failures = [r for r in rows if not r.passed]
    for r in failures:
        print(f"\nFAIL {r.case} on {r.device}/{r.dtype}: {r.error_type}\n{r.error}")
    inconclusive = sum(r.inconclusive for r in rows)
    summary = (f"\n{len(rows) - len(failures)} passed, {len(failures)} failed"
               + (f", {inconclusive} inconclusive examples" if inconclusive else "")
               + f" in {elapsed:.1f}s on {', '.join(devices)}")
    if interrupted:
        summary += f" (interrupted: {output.done} of {len(checks)} checks finished)"
    print(summary, flush=True)
    if args.json:
        from gradcheck_lab.core.machine import machine_info

        payload = {"machine": machine_info(), "seconds": elapsed, "passed": not failures and not interrupted,
                   "interrupted": interrupted, "planned_checks": len(checks), "finished_checks": output.done,
                   "results": [asdict(r) for r in rows]}
        with open(args.json, "w") as fh:
            json.dump(payload, fh, indent=2, default=str)
    if interrupted:
        return EXIT_INTERRUPTED
    return 1 if failures else 0


def _usage(args: argparse.Namespace, message: str) -> int:
    args.parser.print_usage(sys.stderr)
    print(f"{args.parser.prog}: error: {message}", file=sys.stderr)
    return 2


def _cmd_list(args: argparse.Namespace) -> int:
    from gradcheck_lab.cases.registry import CASES, OPTIMIZER_CASES, CaseLoadError, load_user_cases

    try:
        load_user_cases(args.cases or ())
    except CaseLoadError as exc:
        return _usage(args, str(exc))
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


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions as written, and each option's default shown where it has one worth showing."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.default in (None, False, argparse.SUPPRESS) or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gradcheck-lab", description=DESCRIPTION, formatter_class=HelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("verify", formatter_class=HelpFormatter,
                       help="check every case on every device and dtype, one row per check",
                       description="Check every registered case on every device and every dtype it supports.\n"
                                   "Rows print as checks finish; Ctrl-C stops, prints the finished rows (and the\n"
                                   "partial JSON) and exits 130. Exit 1 if a check failed, 2 for a usage error.")
    p.add_argument("--device", default="all", help="cpu, cuda, cuda:1, mps, all, or a comma list")
    p.add_argument("--dtype", default=None, help="comma list of dtypes (default: every dtype each case supports)")
    p.add_argument("--case", action="append", metavar="NAME", help="only this case (repeatable)")
    p.add_argument("--cases", action="append", metavar="MODULE",
                   help="import MODULE, which registers your own cases, and check only those (repeatable); "
                        f"packages can also register modules under the '{ENTRY_POINT_GROUP}' entry-point group")
    p.add_argument("--max-examples", type=positive_int, default=25, metavar="N",
                   help="hypothesis examples per case, device and dtype")
    p.add_argument("--seed", type=int, default=0, help="seed for the input search and optimizer gradients")
    p.add_argument("--no-optimizers", action="store_true", help="skip the optimizer cases")
    p.add_argument("--jobs", type=positive_int, default=None, metavar="N",
                   help="checks run in parallel in N processes, each with its share of the cores (default: one "
                        "per core this process may use; 1 runs them all in this process; GPU runs use 1)")
    p.add_argument("--json", metavar="PATH", type=output_path, help="also write the results as JSON")
    p.set_defaults(func=_cmd_verify, parser=p)

    p = sub.add_parser("list", formatter_class=HelpFormatter, help="list the registered cases",
                       description="List the registered cases, with the dtypes each supports.")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--cases", action="append", metavar="MODULE", help="also import MODULE's cases (repeatable)")
    p.set_defaults(func=_cmd_list, parser=p)

    from gradcheck_lab.cli import bench

    bench.add_parser(sub, HelpFormatter)
    return parser


def _run(argv: Sequence[str] | None) -> int:
    from gradcheck_lab.errors import GradcheckError

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except GradcheckError as exc:
        return _usage(args, str(exc))


def main(argv: Sequence[str] | None = None) -> int:
    """The console script: exit 0 passed, 1 failed, 2 usage error, 130 interrupted."""
    try:
        return _run(argv)
    except BrokenPipeError:
        # The reader went away (`gradcheck-lab list | head`): no traceback, and no second error at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
