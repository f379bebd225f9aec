"""Ceilings: one roofline per machine, dtype, kind of work and size, the same for every backend on a device.

A row's ceiling is the best rate this device reaches on the same kind of work at the same size,
measured in the same run, whichever library reaches it:

- ``gemm``: a plain ``(n, n) @ (n, n)`` matmul (the linear, sigmoid_mse and mlp workloads are made of those);
- ``conv-gemm``: the conv workload's forward GEMM on ready columns, ``(64, 576) @ (576, batch * side^2)``
  (:func:`gradcheck_lab.bench.workloads.conv_geometry`);
- ``copy``: a copy of ``n * n`` elements into a preallocated array (the optimizer steps stream memory).

On the CPU both NumPy (its BLAS) and torch run each candidate; the faster one is the ceiling for the NumPy
rows and the torch rows alike (two backends held to different ceilings cannot be compared). A GPU's
ceiling is torch's on that GPU. Each candidate's rate is its *fastest* timed sample (a peak, not a
typical call: noise only ever slows a sample down), and a :class:`Ceiling` records how it was measured.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from gradcheck_lab.bench.timing import measure, sync_for
from gradcheck_lab.bench.workloads import (
    CONV_WORKLOADS,
    NUMPY_BACKEND_DTYPES,
    OPTIMIZERS,
    Workload,
    conv_geometry,
    random_inputs,
)

CEILING_KINDS = ("gemm", "conv-gemm", "copy")


def ceiling_kind(workload: str) -> str:
    """The kind of work a workload is held to: ``copy`` for an optimizer step, ``conv-gemm`` or ``gemm``."""
    if workload in OPTIMIZERS:
        return "copy"
    return "conv-gemm" if workload in CONV_WORKLOADS else "gemm"


def ceiling_device(backend: str) -> str:
    """The device a backend runs on: ``cpu`` for ``numpy`` and ``torch-cpu``, else the torch device."""
    return "cpu" if backend == "numpy" else backend.removeprefix("torch-")


def _shapes(kind: str, n: int) -> tuple[tuple[tuple[int, ...], ...], float, float]:
    """The candidate's operand shapes, FLOPs and bytes moved per call."""
    if kind == "copy":
        return ((n * n,),), 0.0, 2.0 * n * n  # bytes: times the item size, below
    if kind == "conv-gemm":
        (batch, channels, side), _ = conv_geometry(n)
        pixels = batch * side * side
        return ((channels, channels * 9), (channels * 9, pixels)), 2.0 * channels * channels * 9 * pixels, 0.0
    if kind == "gemm":
        return ((n, n), (n, n)), 2.0 * n**3, 0.0
    raise ValueError(f"unknown ceiling kind {kind!r}; expected one of {CEILING_KINDS}")


def candidate(kind: str, n: int, dtype: torch.dtype, library: str, device: str = "cpu", *,
              transposed: bool = False) -> Workload:
    """One library's kernel for a ceiling: ``library`` is ``numpy`` or ``torch`` (on ``device``).

    ``transposed`` (``conv-gemm`` only): the same product with the pixels on the rows, ``(batch * side^2, 576)
    @ (576, 64)``: the same FLOPs in the other layout, which a library may run at another rate.
    """
    shapes, flops, moved = _shapes(kind, n)
    if transposed:
        if kind != "conv-gemm":
            raise ValueError(f"only the conv-gemm ceiling has a transposed candidate, not {kind!r}")
        shapes = tuple(tuple(reversed(s)) for s in reversed(shapes))
    if library == "numpy":
        np_dtype = NUMPY_BACKEND_DTYPES[dtype]
        arrays = random_inputs(np.random.default_rng(1), *shapes, dtype=np_dtype)
        if kind == "copy":
            src, dst = arrays[0], np.empty_like(arrays[0])
            return Workload(lambda: np.copyto(dst, src), bytes=moved * src.itemsize)
        a, b = arrays
        return Workload(lambda: a @ b, flops=flops)
    gen = torch.Generator(device="cpu").manual_seed(1)
    tensors = [torch.randn(*s, generator=gen).to(device, dtype) for s in shapes]
    if kind == "copy":
        tsrc, tdst = tensors[0], torch.empty_like(tensors[0])
        return Workload(lambda: tdst.copy_(tsrc), bytes=moved * tsrc.element_size())
    ta, tb = tensors
    return Workload(lambda: ta @ tb, flops=flops)


@dataclass(frozen=True)
class Ceiling:
    """The best rate measured on one kind of work at one size on one device, and how it was measured."""

    kind: str
    device: str
    dtype: str
    size: int
    rate: float
    unit: str
    best: str
    candidates: dict[str, float] = field(default_factory=dict)
    method: str = ""
    measurements: int = 1

    def as_dict(self) -> dict[str, Any]:
        """The ceiling as JSON: kind, device, dtype, size, rate, unit, which candidate won, every candidate."""
        return {"kind": self.kind, "device": self.device, "dtype": self.dtype, "size": self.size, "rate": self.rate,
                "unit": self.unit, "best": self.best, "candidates": dict(self.candidates), "method": self.method,
                "measurements": self.measurements}


def _describe(kind: str, n: int) -> str:
    shapes, _, _ = _shapes(kind, n)
    if kind == "copy":
        return f"copy of {n * n} elements into a preallocated array (bytes read + written)"
    return f"matmul {' @ '.join(str(s) for s in shapes)} (2 m k n FLOPs)"


CEILING_SAMPLES = 11
"""Timed samples of each ceiling candidate at least: noise only ever slows a sample, so the fastest of more
samples comes closer to what the hardware does."""


def measure_ceiling(kind: str, n: int, dtype: torch.dtype, device: str, *, repeats: int = 7) -> Ceiling:
    """Time every library's candidate for ``kind`` at size ``n`` on ``device``; the fastest is the ceiling.

    Each candidate takes ``max(repeats, CEILING_SAMPLES)`` samples; ``conv-gemm`` is tried in both layouts.
    """
    libraries = (["numpy"] if device == "cpu" and dtype in NUMPY_BACKEND_DTYPES else []) + ["torch"]
    layouts = (False, True) if kind == "conv-gemm" else (False,)
    samples = max(repeats, CEILING_SAMPLES)
    rates: dict[str, float] = {}
    unit = "GB/s" if kind == "copy" else "GFLOP/s"
    for library in libraries:
        for transposed in layouts:
            work = candidate(kind, n, dtype, library, device, transposed=transposed)
            sync: Callable[[], None] | None = None if library == "numpy" else sync_for(f"torch-{device}")
            timing = measure(work.run, sync, repeats=samples)
            name = (f"torch-{device}" if library == "torch" else library) + (" (transposed)" if transposed else "")
            rates[name] = (work.bytes or work.flops) / timing.fastest / 1e9
    best = max(rates, key=rates.__getitem__)
    layout = " and its transpose" if kind == "conv-gemm" else ""
    method = (f"{_describe(kind, n)}{layout}; the fastest of {samples} timed samples of each of "
              f"{', '.join(rates)}; the best of them, for every backend on {device}")
    return Ceiling(kind, device, str(dtype).removeprefix("torch."), n, rates[best], unit, best, rates, method)


def best_of(first: Ceiling, second: Ceiling) -> Ceiling:
    """Two measurements of one ceiling merged: each candidate's best rate, the best of them, the count."""
    candidates = {k: max(first.candidates.get(k, 0.0), second.candidates.get(k, 0.0))
                  for k in {**first.candidates, **second.candidates}}
    best = max(candidates, key=candidates.__getitem__)
    return replace(first, rate=candidates[best], best=best, candidates=candidates,
                   measurements=first.measurements + second.measurements,
                   method=first.method.removesuffix(AGAIN) + AGAIN)


AGAIN = "; measured again when a row ran faster, the best kept"
