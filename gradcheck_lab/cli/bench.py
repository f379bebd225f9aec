"""``gradcheck-lab bench``: its arguments and the command (the work lives in :mod:`gradcheck_lab.bench`)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict
from typing import Any

from gradcheck_lab.bench import run as bench_run
from gradcheck_lab.bench.workloads import QUICK_SIZES, WORKLOADS
from gradcheck_lab.cli.argtypes import output_path, plot_path, positive_int, size_list
from gradcheck_lab.core.devices import resolve_devices
from gradcheck_lab.core.dtypes import resolve_dtype


def add_parser(sub: Any, formatter_class: Any = argparse.HelpFormatter) -> None:
    p = sub.add_parser("bench", help="CPU vs GPU gradient speed against the same run's hardware ceiling",
                       formatter_class=formatter_class,
                       description="Time each workload on the NumPy reference, torch on the CPU and torch on\n"
                                   "each GPU, next to a ceiling measured in the same run. Rows with a large\n"
                                   "spread or a rate above the ceiling are flagged with '!'.")
    p.add_argument("--workload", action="append", choices=WORKLOADS, help="only this workload (repeatable)")
    p.add_argument("--sizes", type=size_list, default=",".join(map(str, QUICK_SIZES)), metavar="N,N,...",
                   help="comma list of n")
    p.add_argument("--device", default="all", help="torch devices: cpu, cuda, all, ... (default: all)")
    p.add_argument("--dtype", default="float32", help="float32 (default), float64, bfloat16 or float16")
    p.add_argument("--repeats", type=positive_int, default=7, metavar="N",
                   help="timed samples per point; the median is quoted")
    p.add_argument("--threads", type=positive_int, default=None, metavar="N",
                   help="torch and BLAS threads (default: this process's share of the available cores, "
                        "divided among pytest-xdist workers, so pools do not oversubscribe)")
    p.add_argument("--verification", action="store_true",
                   help="also time check_gradients (plain and with the oracle) against torch.autograd.gradcheck "
                        "(fast and full), as ratios to one reference call + one autograd pass")
    p.add_argument("--verification-sizes", type=size_list, default="16,64,256,1024", metavar="N,N,...",
                   help="sizes for --verification")
    p.add_argument("--json", metavar="PATH", type=output_path, help="write rows, crossovers and machine info as JSON")
    p.add_argument("--plot", metavar="PATH", type=plot_path,
                   help="write a log-log plot (needs the 'plot' extra: matplotlib)")
    p.add_argument("--note", metavar="TEXT", help="a note to keep in the JSON (e.g. that the machine was loaded)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=_cmd_bench)


def _cmd_bench(args: argparse.Namespace) -> int:
    dtype = resolve_dtype(args.dtype)
    devices = resolve_devices(args.device)
    sizes = args.sizes

    def progress(line: str) -> None:
        if args.quiet:
            return
        if sys.stderr.isatty():  # one line that updates in place
            print(f"\r\033[K{line}", end="", file=sys.stderr, flush=True)
        else:
            print(line, file=sys.stderr, flush=True)

    from gradcheck_lab.core.threads import thread_budget

    with thread_budget(args.threads):
        result = bench_run.run_bench(args.workload or WORKLOADS, sizes, devices, dtype, args.repeats, progress)
    if not args.quiet and sys.stderr.isatty():
        print(file=sys.stderr)
    print(bench_run.format_table(result))
    payload: dict[str, Any] = {"machine": result.machine, "dtype": args.dtype,
                               "rows": [{**asdict(r), "warnings": r.warnings} for r in result.rows],
                               "crossovers": result.crossovers,
                               "ceilings": [c.as_dict() for c in result.ceilings]}
    if args.note:
        payload["note"] = args.note
    if args.verification:
        from gradcheck_lab.bench import verification as verification_speed

        with thread_budget(args.threads):
            rows = verification_speed.measure_verification(args.verification_sizes, repeats=args.repeats)
        print("\nverification cost (Linear -> sigmoid -> MSE, W n x n, batch n, float64; median ratios):")
        print(verification_speed.format_table(rows))
        payload["verification"] = [verification_speed.as_dict(r) for r in rows]
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(payload, fh, indent=2)
        gpu_path = gpu_results_path(args.json, result.machine, args.dtype)
        if any(r.backend.startswith("torch-cuda") for r in result.rows):
            with open(gpu_path, "w") as fh:
                json.dump(gpu_payload(payload), fh, indent=2)
    if args.plot:
        from gradcheck_lab.bench.plot import plot

        plot(result, args.plot)
    return 0




def gpu_results_path(json_path: str, machine: dict[str, Any], dtype: str) -> str:
    """Where a run with GPU rows also writes them: ``gpu-<first GPU's name>-<dtype>.json`` beside ``json_path``."""
    name = (machine.get("gpus") or ["unknown-gpu"])[0]
    slug = "".join(c if c.isalnum() else "-" for c in str(name).lower()).strip("-")
    while "--" in slug:
        slug = slug.replace("--", "-")
    return os.path.join(os.path.dirname(os.path.abspath(json_path)), f"gpu-{slug}-{dtype}.json")


def gpu_payload(payload: dict[str, Any]) -> dict[str, Any]:
    """The GPU part of a run: the GPU rows with the torch-cpu rows they are compared with; the machine, the
    crossovers and the ceilings as in the whole run's JSON."""
    rows = [r for r in payload["rows"] if r["backend"].startswith("torch-cuda") or r["backend"] == "torch-cpu"]
    return {**payload, "rows": rows}
