"""Timing: the median of repeated samples after a warm-up, with CUDA synchronized before each clock read."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


@dataclass(frozen=True)
class Timing:
    """Seconds per call: the median over ``repeats`` samples, the interquartile spread and the fastest sample."""

    median: float
    q1: float
    q3: float
    calls: int
    fastest: float = 0.0

    @property
    def spread(self) -> float:
        """Interquartile range relative to the median."""
        return (self.q3 - self.q1) / self.median if self.median > 0 else 0.0


def measure(fn: Callable[[], Any], sync: Callable[[], None] | None = None, *, repeats: int = 7,
            min_sample: float = 2e-3, max_calls: int = 10_000) -> Timing:
    """Time ``fn`` after a warm-up, with ``sync`` before each clock read (CUDA work is asynchronous).

    Each sample runs ``fn`` enough times to last at least ``min_sample`` seconds, so clock
    resolution and per-call noise do not dominate small sizes; the median sample is quoted.
    """
    sync = sync or (lambda: None)

    def sample(calls: int) -> float:
        sync()
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        sync()
        return (time.perf_counter() - start) / calls

    first = sample(1)  # warm-up: allocations, kernel selection, caches
    calls = max(1, min(max_calls, math.ceil(min_sample / max(sample(1), first * 1e-3, 1e-9))))
    samples = sorted(sample(calls) for _ in range(repeats))
    q1, median, q3 = (float(np.percentile(samples, p)) for p in (25, 50, 75))
    return Timing(median, q1, q3, calls, fastest=samples[0])



def sync_for(backend: str) -> Callable[[], None] | None:
    """What to call before reading the clock for ``backend``: CUDA work is asynchronous."""
    if backend.startswith("torch-cuda"):
        device = torch.device(backend.removeprefix("torch-"))
        return lambda: torch.cuda.synchronize(device)
    return None

