"""NumPy reference optimizer step vs torch's foreach step on 10^6 float32 parameters, one thread each.

Run: ``OMP_NUM_THREADS=1 python benchmarks/optimizer_ratios.py [workload ...]``. torch runs on one
thread (``torch.set_num_threads(1)``), as NumPy's ufuncs do, so the ratio compares the code, not
the thread count. The two steps are timed alternately, one call each, ``pairs`` times after a
warm-up, so that both see the same interference from other jobs on a shared machine; printed are
the median of the per-pair ratios and the ratio of the two sides' fastest tenth (the calls least
disturbed).
"""

from __future__ import annotations

import statistics
import sys
import time

import numpy as np
import torch

from gradcheck_lab.bench import workloads as bench


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(names: list[str], pairs: int = 300, n: int = 1000) -> None:
    torch.set_num_threads(1)
    for name in names:
        ours = bench.numpy_workload(name, n, torch.float32).run
        theirs = bench.torch_workload(name, n, torch.float32, torch.device("cpu")).run
        for _ in range(5):
            ours(), theirs()
        times = np.array([(_timed(ours), _timed(theirs)) for _ in range(pairs)])
        fast = np.percentile(times, 10, axis=0)
        print(f"{name:9s} numpy {fast[0] * 1e3:5.2f} ms, torch-foreach {fast[1] * 1e3:5.2f} ms (fastest tenth): "
              f"ratio {fast[0] / fast[1]:.2f}; median per-pair ratio "
              f"{statistics.median(times[:, 0] / times[:, 1]):.2f}")


if __name__ == "__main__":
    main(sys.argv[1:] or list(bench.OPTIMIZERS))
