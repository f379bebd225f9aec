from __future__ import annotations

import os

import torch

pytest_plugins = ["pytester"]


def pytest_configure(config):
    """Under pytest-xdist each worker gets its share of the cores, not all of them: torch's OpenMP
    threads spin, and on the loaded 2-core machine two workers of two torch threads each took the
    suite from 38 s to 164 s (conv, pooling and batch norm run torch's parallel loops even when tiny)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0") or 0)
    if workers:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        torch.set_num_threads(max(1, cores // workers))
