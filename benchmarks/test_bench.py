"""One benchmark per workload x backend x size, grouped by workload.

Run with ``tox -e bench`` (or ``pytest benchmarks --benchmark-warmup=on``); the normal test run
executes each once with ``--benchmark-disable`` so they cannot rot. GPU work is synchronized
inside the timed callable, since pytest-benchmark reads the clock without doing so.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gradcheck_lab.reference import models

from gradcheck_lab import bench
from gradcheck_lab.check import check_gradients

SIZES = (64, 256)
DEVICES = ["cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count() if torch.cuda.is_available() else 0)]
BACKENDS = ["numpy"] + [f"torch-{d}" for d in DEVICES]


def _timed(work: bench.Workload, backend: str):
    sync = bench.sync_for(backend)
    if sync is None:
        return work.run

    def synchronized():
        work.run()
        sync()

    return synchronized


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("workload", bench.WORKLOADS)
def test_workload(benchmark, workload, backend, size):
    benchmark.group = workload
    if backend == "numpy":
        work = bench.numpy_workload(workload, size, torch.float32)
    else:
        work = bench.torch_workload(workload, size, torch.float32, torch.device(backend.removeprefix("torch-")))
    benchmark.extra_info.update(flops=work.flops, bytes=work.bytes, size=size, backend=backend)
    benchmark(_timed(work, backend))


def _torch_sigmoid_mse(w, x, y):
    return torch.nn.functional.mse_loss(torch.sigmoid(x @ w.T), y)


def _sigmoid_mse_inputs(n: int):
    rng = np.random.default_rng(0)
    return rng.standard_normal((n, n)) / np.sqrt(n), rng.standard_normal((n, n)), rng.uniform(0, 1, (n, n))


@pytest.mark.parametrize("n", [16, 64])
@pytest.mark.parametrize("method", ["check_gradients", "check_gradients+fd", "gradcheck fast", "gradcheck full"])
def test_verification_speed(benchmark, method, n):
    benchmark.group = f"verification n={n}"
    arrays = _sigmoid_mse_inputs(n)
    tensors = tuple(torch.tensor(a, requires_grad=True) for a in arrays)
    calls = {
        "check_gradients": lambda: check_gradients(models.sigmoid_mse, _torch_sigmoid_mse, arrays),
        "check_gradients+fd": lambda: check_gradients(models.sigmoid_mse, _torch_sigmoid_mse, arrays,
                                                      finite_differences=True),
        "gradcheck fast": lambda: torch.autograd.gradcheck(_torch_sigmoid_mse, tensors, fast_mode=True),
        "gradcheck full": lambda: torch.autograd.gradcheck(_torch_sigmoid_mse, tensors),
    }
    if method == "gradcheck full" and n > 16 and not benchmark.disabled:
        benchmark.pedantic(calls[method], rounds=3, iterations=1)
    else:
        benchmark(calls[method])
