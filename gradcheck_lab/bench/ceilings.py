"""Ceilings: what the hardware reaches on the same kind of work, measured in the same run."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from gradcheck_lab.bench.workloads import (
    CONV_WORKLOADS,
    NUMPY_BACKEND_DTYPES,
    OPTIMIZERS,
    Workload,
    conv_geometry,
    random_inputs,
)


def conv_gemm_ceiling(n: int, np_dtype: Any = None, device: torch.device | None = None,
                      dtype: torch.dtype | None = None) -> Workload:
    """The conv workload's forward GEMM alone, ``(64, 576) @ (576, batch * side * side)`` on ready columns:
    in NumPy (``np_dtype``) or in torch on ``device``."""
    (batch, channels, side), _ = conv_geometry(n)
    shapes = ((channels, channels * 9), (channels * 9, batch * side * side))
    flops = 2 * channels * channels * 9 * batch * side * side
    if device is None:
        w, cols = random_inputs(np.random.default_rng(1), *shapes, dtype=np_dtype)
        return Workload(lambda: w @ cols, flops=flops)
    tw, tcols = (torch.randn(*s, device=device).to(dtype) for s in shapes)
    return Workload(lambda: tw @ tcols, flops=flops)



def ceiling_workload(name: str, n: int, dtype: torch.dtype, backend: str) -> Workload:
    """The same run's ceiling: a plain ``(n, n)`` matmul, or a plain copy of ``n * n`` elements for an optimizer."""
    if backend == "numpy":
        if name in CONV_WORKLOADS:
            return conv_gemm_ceiling(n, NUMPY_BACKEND_DTYPES[dtype])
        a, b = random_inputs(np.random.default_rng(1), (n, n), (n, n), dtype=NUMPY_BACKEND_DTYPES[dtype])
        if name in OPTIMIZERS:
            src, dst = a.reshape(-1), np.empty(n * n, dtype=a.dtype)
            return Workload(lambda: np.copyto(dst, src), bytes=2 * src.nbytes)
        return Workload(lambda: a @ b, flops=2 * n**3)
    device = torch.device(backend.removeprefix("torch-"))
    if name in CONV_WORKLOADS:
        return conv_gemm_ceiling(n, device=device, dtype=dtype)
    ta = torch.randn(n, n, device=device).to(dtype)
    tb = torch.randn(n, n, device=device).to(dtype)
    if name in OPTIMIZERS:
        tsrc, tdst = ta.reshape(-1), torch.empty(n * n, device=device, dtype=dtype)
        return Workload(lambda: tdst.copy_(tsrc), bytes=2 * tsrc.numel() * tsrc.element_size())
    return Workload(lambda: ta @ tb, flops=2 * n**3)

