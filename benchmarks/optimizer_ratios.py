"""NumPy reference optimizer step vs torch's foreach step on 10^6 float32 parameters, one thread each.

Run: ``OMP_NUM_THREADS=1 python benchmarks/optimizer_ratios.py [workload ...]``. torch runs on one
thread (``torch.set_num_threads(1)``), as NumPy's ufuncs do, so the ratio compares the code, not
the thread count. Each round times both back to back (``bench.measure``, 7 samples each); the
median ratio over the rounds is printed with its range.
"""

from __future__ import annotations

import statistics
import sys

import torch

from gradcheck_lab import bench


def main(names: list[str], rounds: int = 5, n: int = 1000) -> None:
    torch.set_num_threads(1)
    for name in names:
        ratios, np_times, torch_times = [], [], []
        for _ in range(rounds):
            ours = bench.numpy_workload(name, n, torch.float32)
            theirs = bench.torch_workload(name, n, torch.float32, torch.device("cpu"))
            t_np = bench.measure(ours.run, repeats=7).median
            t_torch = bench.measure(theirs.run, repeats=7).median
            ratios.append(t_np / t_torch)
            np_times.append(t_np)
            torch_times.append(t_torch)
        print(f"{name:9s} numpy {statistics.median(np_times) * 1e3:6.2f} ms  "
              f"torch-foreach {statistics.median(torch_times) * 1e3:6.2f} ms  ratio median "
              f"{statistics.median(ratios):.2f} (min {min(ratios):.2f}, max {max(ratios):.2f})")


if __name__ == "__main__":
    main(sys.argv[1:] or list(bench.OPTIMIZERS))
