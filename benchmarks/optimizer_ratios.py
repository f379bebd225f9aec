"""NumPy reference optimizer step vs torch's foreach step on 10^6 float32 parameters, side by side.

Run: ``python benchmarks/optimizer_ratios.py [--threads N] [workload ...]``. Both sides get the same
thread count: torch's intra-op pool (``torch.set_num_threads``) and the reference's block threads
(:func:`gradcheck_lab.reference.optim_blocks.set_num_threads`). ``--threads 1`` compares the code
alone; the default is this process's share of the cores (``gradcheck-lab bench``'s default). The
two steps are timed alternately, one call each, ``pairs`` times after a warm-up, so that both see the
same interference from other jobs on a shared machine; printed are the ratio of the two sides'
fastest tenth (the calls least disturbed) and the median of the per-pair ratios.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from gradcheck_lab.reference import optim_blocks

from gradcheck_lab.bench import workloads
from gradcheck_lab.core.threads import cores_for_this_process


def _timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def ratios(names: list[str], threads: int, pairs: int = 200, n: int = 1000) -> dict[str, tuple[float, float, float]]:
    """``name -> (numpy ms, torch ms, ratio)`` from the fastest tenth of ``pairs`` alternated calls."""
    torch_before = torch.get_num_threads()
    numpy_before = optim_blocks.set_num_threads(threads)
    torch.set_num_threads(threads)
    out = {}
    try:
        for name in names:
            ours = workloads.numpy_workload(name, n, torch.float32).run
            theirs = workloads.torch_workload(name, n, torch.float32, torch.device("cpu")).run
            for _ in range(5):
                ours(), theirs()
            times = np.array([(_timed(ours), _timed(theirs)) for _ in range(pairs)])
            fast = np.percentile(times, 10, axis=0)
            out[name] = (fast[0] * 1e3, fast[1] * 1e3, fast[0] / fast[1])
            print(f"{name:9s} threads {threads}: numpy {fast[0] * 1e3:5.2f} ms, torch-foreach {fast[1] * 1e3:5.2f} ms "
                  f"(fastest tenth): ratio {fast[0] / fast[1]:.2f}; median per-pair ratio "
                  f"{statistics.median(times[:, 0] / times[:, 1]):.2f}", flush=True)
    finally:
        torch.set_num_threads(torch_before)
        optim_blocks.set_num_threads(numpy_before)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workloads", nargs="*", default=list(workloads.OPTIMIZERS))
    parser.add_argument("--threads", type=int, default=None, help="threads for each side (default: the share)")
    parser.add_argument("--pairs", type=int, default=200)
    args = parser.parse_args(argv)
    ratios(args.workloads, args.threads or cores_for_this_process(), args.pairs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
