"""How many threads this process should use, and a context manager that makes torch and BLAS use them.

A loaded or shared machine (pytest-xdist workers, other jobs, a container's CPU quota) runs
torch's intra-op pool and NumPy's BLAS pool oversubscribed when each sizes itself to the whole
machine: a 0.4 ms Adam step then takes 12 ms. :func:`thread_budget` gives each its share.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")  # cgroup v2
CGROUP_V1_QUOTA = Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us")
CGROUP_V1_PERIOD = Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us")


def _cgroup_quota() -> float | None:
    """CPUs allowed by a cgroup CPU quota (v2 ``cpu.max`` or v1 cfs), None when unlimited or absent."""
    try:
        quota, period = CGROUP_CPU_MAX.read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota_us = int(CGROUP_V1_QUOTA.read_text())
        period_us = int(CGROUP_V1_PERIOD.read_text())
    except (OSError, ValueError):
        return None
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None


def available_cores() -> int:
    """Cores this process may run on: its CPU affinity, capped by a cgroup CPU quota (at least 1)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    quota = _cgroup_quota()
    if quota is not None:
        cores = min(cores, math.ceil(quota))
    return max(1, cores)


def xdist_workers() -> int:
    """Number of pytest-xdist workers sharing the machine (1 outside xdist or when unreadable)."""
    try:
        return max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    except ValueError:
        return 1


_worker_share: int | None = None


def cores_for_this_process() -> int:
    """This process's share of :func:`available_cores`: divided among xdist workers, at least 1.

    In a worker of a process pool (see :func:`set_worker_share`), the share its parent gave it.
    """
    if _worker_share is not None:
        return _worker_share
    return max(1, available_cores() // xdist_workers())


def set_worker_share(cores: int | None) -> None:
    """Make this process (a worker of a pool that splits the cores) use ``cores`` threads from now on.

    Every later :func:`thread_budget` and :func:`check_threads` in this process sizes torch's pool to
    ``cores``; torch's intra-op pool is set now. None goes back to :func:`cores_for_this_process`'s own
    count (torch's pool is then left as it is). Raises ValueError below 1.
    """
    global _worker_share
    if cores is not None and cores < 1:
        raise ValueError(f"a worker needs at least 1 core, got {cores}")
    _worker_share = cores
    _process_budget.cache_clear()
    if cores is not None:
        import torch

        torch.set_num_threads(cores)


def _blas_limiter(n: int) -> Any:
    """threadpoolctl's limiter for the BLAS pools, or None where threadpoolctl is not installed."""
    try:
        from threadpoolctl import threadpool_limits  # type: ignore[import-untyped, unused-ignore]
    except ImportError:
        return None
    return threadpool_limits(limits=n, user_api="blas")


@contextmanager
def thread_budget(n: int | None = None) -> Iterator[int]:
    """Run the block with torch's intra-op threads and NumPy's BLAS threads set to ``n``.

    ``n`` defaults to :func:`cores_for_this_process`; both pools are restored on exit. Yields ``n``.
    """
    if n is None:
        n = cores_for_this_process()
    if n < 1:
        raise ValueError(f"thread_budget needs at least 1 thread, got {n}")
    import torch

    previous = torch.get_num_threads()
    limiter = _blas_limiter(n)
    torch.set_num_threads(n)
    try:
        yield n
    finally:
        torch.set_num_threads(previous)
        if limiter is not None:
            limiter.restore_original_limits()


@functools.cache
def _process_budget() -> int:
    """:func:`cores_for_this_process`, read once (it reads cgroup files: ~0.3 ms)."""
    return cores_for_this_process()


class _BlasPools:
    """NumPy's BLAS pools (through threadpoolctl, found once per process): get and set their thread counts.

    A ``threadpool_limits`` block costs ~0.1 ms (it re-reads every loaded library), as much as a whole
    check of a 64x64 layer; setting the counts on controllers found once costs a few microseconds.
    """

    _controllers: list[Any] | None = None

    @classmethod
    def controllers(cls) -> list[Any]:
        if cls._controllers is None:
            try:
                from threadpoolctl import ThreadpoolController  # type: ignore[import-untyped, unused-ignore]
            except ImportError:
                cls._controllers = []
            else:
                cls._controllers = list(ThreadpoolController().select(user_api="blas").lib_controllers)
        return cls._controllers


@contextmanager
def check_threads() -> Iterator[None]:
    """The thread pools for one check: torch at this process's share of the cores, NumPy's BLAS at one thread.

    A check alternates NumPy and torch calls. Each pool's idle threads spin for a while after a call,
    so with both sized to the machine they take turns starving each other (a 256x256 layer check took
    8 ms instead of 0.26 ms on 2 cores); one BLAS thread removes that, and under pytest-xdist torch
    gets its share (:func:`cores_for_this_process`), not every core. Both pools are restored on exit;
    nothing is changed where it already holds.
    """
    import torch

    budget = _process_budget()
    torch_before = torch.get_num_threads()
    blas = [(c, c.num_threads) for c in _BlasPools.controllers()]
    if torch_before != budget:
        torch.set_num_threads(budget)
    for controller, threads in blas:
        if threads != 1:
            controller.set_num_threads(1)
    try:
        yield
    finally:
        if torch.get_num_threads() != torch_before:
            torch.set_num_threads(torch_before)
        for controller, threads in blas:
            if threads != 1:
                controller.set_num_threads(threads)
