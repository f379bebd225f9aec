"""Timing: the median of repeated samples after a warm-up, with CUDA synchronized before each clock read."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
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


def _sampler(fn: Callable[[], Any], sync: Callable[[], None]) -> Callable[[int], float]:
    def sample(calls: int) -> float:
        sync()
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        sync()
        return (time.perf_counter() - start) / calls
    return sample


def _calibrate(sample: Callable[[int], float], min_sample: float, max_calls: int) -> int:
    first = sample(1)  # warm-up: allocations, kernel selection, caches
    return max(1, min(max_calls, math.ceil(min_sample / max(sample(1), first * 1e-3, 1e-9))))


def _timing(samples: list[float], calls: int) -> Timing:
    samples = sorted(samples)
    q1, median, q3 = (float(np.percentile(samples, p)) for p in (25, 50, 75))
    return Timing(median, q1, q3, calls, fastest=samples[0])


def measure(fn: Callable[[], Any], sync: Callable[[], None] | None = None, *, repeats: int = 7,
            min_sample: float = 2e-3, max_calls: int = 10_000) -> Timing:
    """Time ``fn`` after a warm-up, with ``sync`` before each clock read (CUDA work is asynchronous).

    Each sample runs ``fn`` enough times to last at least ``min_sample`` seconds, so clock
    resolution and per-call noise do not dominate small sizes; the median sample is quoted.
    """
    sample = _sampler(fn, sync or (lambda: None))
    calls = _calibrate(sample, min_sample, max_calls)
    return _timing([sample(calls) for _ in range(repeats)], calls)


def measure_side_by_side(fns: Mapping[str, Callable[[], Any]], *, repeats: int = 7, min_sample: float = 2e-2,
                         max_calls: int = 10_000) -> dict[str, Timing]:
    """Time several functions against each other: one sample of each in turn, ``repeats`` rounds.

    Load that comes and goes on a shared machine then hits every function alike, so the ratios of
    the medians hold where the absolute times drift. Calls per sample as in :func:`measure`.
    """
    samplers = {name: _sampler(fn, lambda: None) for name, fn in fns.items()}
    calls = {name: _calibrate(sample, min_sample, max_calls) for name, sample in samplers.items()}
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, sample in samplers.items():
            samples[name].append(sample(calls[name]))
    return {name: _timing(samples[name], calls[name]) for name in fns}



def sync_for(backend: str) -> Callable[[], None] | None:
    """What to call before reading the clock for ``backend``: CUDA work is asynchronous."""
    if backend.startswith("torch-cuda"):
        device = torch.device(backend.removeprefix("torch-"))
        return lambda: torch.cuda.synchronize(device)
    return None

