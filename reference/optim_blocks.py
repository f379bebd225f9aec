"""Large optimizer updates in cache-sized blocks, spread over threads (NumPy's ufuncs release the GIL).

An update makes about a dozen elementwise passes over its arrays. On 10^6 parameters each pass
streams megabytes from memory; done a cache-sized block at a time, the passes after the first read
from cache. Blocks are independent (every kernel is elementwise), so threads can take them in
parallel, and the result is the same, bit for bit, whatever the block size and thread count.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

BLOCK = 1 << 17
"""Elements per block. Measured for 10^6 float32 parameters on the 2-core AMD EPYC CI machine (512 KiB L2 a
core, 32 MiB L3), against torch's foreach step, one thread each (``benchmarks/optimizer_ratios.py``,
30 alternated pairs): at 2^15 the nine rules took 0.83-1.12x torch's time, at 2^17 0.75-0.95x, at 2^18
0.72-0.96x; on 2 threads 2^15 took 1.40-1.86x, 2^17 1.13-1.77x. Each ufunc call costs a few microseconds
whatever its size, so blocks that fit L2 (2^15) paid more in calls than they saved in cache misses (the
arrays of 10^6 parameters fit L3 whole)."""


TRIALS = 3
"""Steps timed in each layout before :class:`BlockedUpdate` keeps the fastest for a kernel and size."""
LAYOUTS = 3
"""Layouts tried: one thread over blocks, all threads over blocks, all threads over one span each."""
TUNING_STEPS = LAYOUTS * TRIALS
"""Steps a kernel and size take to choose their layout (timed benchmarks run them first)."""
ONE_THREAD_MARGIN = 0.9
"""One thread is kept only if its fastest trial beats the fastest on all threads by this factor."""

_threads: int | None = None
_pools: dict[int, ThreadPoolExecutor] = {}


def default_threads() -> int:
    """The cores NumPy may use here: this process's CPU affinity, capped by ``OMP_NUM_THREADS`` where set."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    try:
        cap = int(os.environ.get("OMP_NUM_THREADS", "0"))
    except ValueError:
        cap = 0
    return max(1, min(cores, cap) if cap > 0 else cores)


def num_threads() -> int:
    """Threads an update of a large parameter is split over (:func:`set_num_threads`, else :func:`default_threads`)."""
    return _threads if _threads is not None else default_threads()


def set_num_threads(threads: int | None) -> int | None:
    """Split large updates over ``threads`` threads from now on (None: :func:`default_threads`); the previous setting.

    NumPy's ufuncs release the GIL, so blocks of one update run in parallel on several cores.
    """
    global _threads
    if threads is not None and threads < 1:
        raise ValueError(f"set_num_threads needs at least 1 thread, got {threads}")
    previous, _threads = _threads, threads
    return previous


if hasattr(os, "register_at_fork"):  # a forked child has none of its parent's threads: start new pools there
    os.register_at_fork(after_in_child=_pools.clear)


def _pool(threads: int) -> ThreadPoolExecutor:
    if threads not in _pools:
        _pools[threads] = ThreadPoolExecutor(threads, thread_name_prefix="reference-optim")
    return _pools[threads]


class BlockedUpdate:
    """Runs an elementwise update kernel over blocks, split over :func:`num_threads` (the layout, blocks of
    :data:`BLOCK` or one span per thread, chosen per kernel and size by timing: :meth:`_layout_for`).

    The kernel is called as ``kernel(*block_of_each_array, *scratch, **hyper)``: one block of each array
    (None stays None) and ``n_scratch`` scratch arrays of the block's shape, views of buffers kept between
    steps (no allocation per step), one set per thread. Each thread takes a contiguous span of blocks.
    Elementwise kernels give the same result, bit for bit, whatever the blocks and threads. Arrays that are
    small or not C-contiguous (a flat view would be a copy, losing in-place updates) are updated whole,
    in the calling thread.
    """

    def __init__(self) -> None:
        self._scratch: dict[tuple[np.dtype[Any], int], list[np.ndarray]] = {}
        self._trials: dict[tuple[Any, ...], dict[tuple[int, int], list[float]]] = {}
        self._chosen: dict[tuple[Any, ...], tuple[int, int]] = {}

    def _layout_for(self, kernel: Callable[..., Any], size: int, dtype: np.dtype[Any],
                    most: int) -> tuple[int, int]:
        """``(threads, block)`` for this kernel and size: whichever layout its first steps ran fastest.

        The candidates: one thread over blocks of :data:`BLOCK`; ``most`` threads over such blocks; ``most``
        threads each taking its whole span as one block. A short kernel (SGD's four passes) loses more to
        the calls and thread hand-offs of small blocks than they save in cache misses; a long one (Adam's
        dozen) gains from blocks. Elementwise kernels give the same bits in every layout, so the first
        :data:`TRIALS` steps on each decide on speed alone (one thread only by :data:`ONE_THREAD_MARGIN`).
        """
        key = (getattr(kernel, "__code__", kernel), size, dtype, most)
        chosen = self._chosen.get(key)
        if chosen is not None:
            return chosen
        span = -(-size // most)
        candidates = [(1, BLOCK), (most, BLOCK), (most, span)]  # LAYOUTS of them
        trials = self._trials.setdefault(key, {c: [] for c in candidates})
        if min(len(t) for t in trials.values()) < TRIALS:
            return min(candidates, key=lambda c: len(trials[c]))  # the least tried next, in turn
        fastest = {c: min(t) for c, t in trials.items()}
        best = min(candidates[1:], key=fastest.__getitem__)
        if fastest[candidates[0]] < ONE_THREAD_MARGIN * fastest[best]:  # noise does not settle on one core
            best = candidates[0]
        self._chosen[key] = best
        del self._trials[key]
        return best

    def _scratch_for(self, dtype: np.dtype[Any], thread: int, size: int, n_scratch: int) -> list[np.ndarray]:
        buffers = self._scratch.get((dtype, thread), [])
        if len(buffers) < n_scratch or (buffers and buffers[0].size < size):
            size = max(size, buffers[0].size if buffers else 0)
            buffers = [np.empty(size, dtype=dtype) for _ in range(max(n_scratch, len(buffers)))]
            self._scratch[(dtype, thread)] = buffers
        return buffers[:n_scratch]

    def run(self, kernel: Callable[..., Any], arrays: list[np.ndarray | None], n_scratch: int,
            **hyper: Any) -> None:
        """Apply ``kernel`` to every block of ``arrays`` (the first is the parameter and sets the dtype)."""
        ref = arrays[0]
        assert ref is not None
        present = [a for a in arrays if a is not None]
        if ref.size <= BLOCK or not all(a.flags.c_contiguous for a in present):
            scratch = self._scratch_for(ref.dtype, 0, ref.size, n_scratch)
            kernel(*arrays, *(b[:ref.size].reshape(ref.shape) for b in scratch), **hyper)
            return
        flat = [None if a is None else a.reshape(-1) for a in arrays]
        most = min(num_threads(), -(-ref.size // BLOCK))
        threads, block = (1, BLOCK) if most == 1 else self._layout_for(kernel, ref.size, ref.dtype, most)
        starts = range(0, ref.size, block)
        trial = (getattr(kernel, "__code__", kernel), ref.size, ref.dtype, most)
        started = time.perf_counter()

        def span(thread: int) -> None:
            scratch = self._scratch_for(ref.dtype, thread, block, n_scratch)
            for start in _contiguous(starts, thread, threads):
                part = [None if a is None else a[start:start + block] for a in flat]
                size = part[0].size  # type: ignore[union-attr]
                kernel(*part, *(b[:size] for b in scratch), **hyper)

        if threads == 1:
            span(0)
        else:
            others = [_pool(threads - 1).submit(span, t) for t in range(1, threads)]
            span(0)  # this thread takes the first span: one hand-off fewer (a wake-up costs ~0.1 ms here)
            for future in others:
                future.result()
        if trial in self._trials:
            self._trials[trial][(threads, block)].append(time.perf_counter() - started)


def _contiguous(starts: range, thread: int, threads: int) -> range:
    """Thread ``thread``'s share of ``starts``: a contiguous run, the shares differing by at most one."""
    per, extra = divmod(len(starts), threads)
    first = thread * per + min(thread, extra)
    return starts[first:first + per + (1 if thread < extra else 0)]
