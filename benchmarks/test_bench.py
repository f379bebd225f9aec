"""One benchmark per workload x backend x size, grouped by workload.

Run with ``tox -e bench`` (or ``pytest benchmarks --benchmark-warmup=on``); the normal test run
executes each once with ``--benchmark-disable`` so they cannot rot. GPU work is synchronized
inside the timed callable, since pytest-benchmark reads the clock without doing so.
"""

from __future__ import annotations

import pytest
import torch

from gradcheck_lab.bench import timing, workloads
from gradcheck_lab.bench import verification as verification_speed

SIZES = (64, 256)
DEVICES = ["cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count() if torch.cuda.is_available() else 0)]
BACKENDS = ["numpy"] + [f"torch-{d}" for d in DEVICES]


def _timed(work: workloads.Workload, backend: str):
    sync = timing.sync_for(backend)
    if sync is None:
        return work.run

    def synchronized():
        work.run()
        sync()

    return synchronized


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("workload", workloads.WORKLOADS)
def test_workload(benchmark, workload, backend, size):
    benchmark.group = workload
    if backend == "numpy":
        work = workloads.numpy_workload(workload, size, torch.float32)
    else:
        work = workloads.torch_workload(workload, size, torch.float32, torch.device(backend.removeprefix("torch-")))
    benchmark.extra_info.update(flops=work.flops, bytes=work.bytes, size=size, backend=backend)
    benchmark(_timed(work, backend))


@pytest.mark.parametrize("n", [16, 64, 256, 1024])
@pytest.mark.parametrize("method", ["baseline", *verification_speed.METHODS])
def test_verification_speed(benchmark, method, n):
    """The plain check, the oracle and gradcheck (fast, full) side by side, grouped by n (ratios: ``bench``)."""
    benchmark.group = f"verification n={n}"
    calls = verification_speed.method_calls(n)
    if method not in calls:
        pytest.skip(f"gradcheck full mode needs 2N + 1 forward calls: not timed at n={n}")
    benchmark(calls[method])
