"""CPU vs GPU gradient speed, each figure against the same run's hardware ceiling.

Workloads (``n`` is the size): a linear layer ``(n, n) x (n, n)`` forward+backward, the
Linear -> sigmoid -> MSE model forward+backward, an MLP with two hidden layers of width ``n``
forward+backward, a 3x3 convolution forward+backward and the conv classifier model
(:func:`conv_geometry`, :func:`conv_classifier_geometry`), and one step of each optimizer in
:data:`OPTIMIZERS` on ``n * n`` parameters. Backends: the NumPy reference, torch autograd on the
CPU, and torch on each CUDA device. Every row gives the median time and its spread, the achieved
GFLOP/s (GB/s for optimizers), the same run's ceiling for that backend (a plain matmul of the same
shape; the conv-shaped GEMM for the conv workloads; a plain copy for bandwidth) and the percentage
of it, and the speedup of the GPU over torch on the CPU.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from gradcheck_lab.core.devices import resolve_devices
from gradcheck_lab.core.dtypes import resolve_dtype
from gradcheck_lab.core.machine import machine_info
from gradcheck_lab.reference import conv as ref_conv
from gradcheck_lab.reference import linear as ref_linear
from gradcheck_lab.reference import models
from gradcheck_lab.reference import optim as ref_optim
from gradcheck_lab.reference.activations import sigmoid, sigmoid_backward

OPTIMIZERS: dict[str, tuple[str, dict[str, Any], int]] = {
    # workload: (class name in torch.optim and the reference, hyperparameters, arrays read or written a step)
    "adam": ("Adam", {"lr": 1e-3}, 7),  # p, g, m, v read; p, m, v written
    "adamw": ("AdamW", {"lr": 1e-3}, 7),
    "sgd": ("SGD", {"lr": 1e-3, "momentum": 0.9}, 5),
    "rmsprop": ("RMSprop", {"lr": 1e-2}, 5),
    "adagrad": ("Adagrad", {"lr": 1e-2}, 5),
    "adadelta": ("Adadelta", {"lr": 1.0}, 7),
    "adamax": ("Adamax", {"lr": 2e-3}, 7),
    "nadam": ("NAdam", {"lr": 2e-3}, 7),
    "radam": ("RAdam", {"lr": 1e-3}, 7),
}
"""One optimizer-step workload per rule: ``n * n`` parameters, one step, against torch's foreach."""
CONV_WORKLOADS = ("conv", "conv_classifier")
"""Workloads whose ceiling is the conv-shaped GEMM (:func:`conv_gemm_ceiling`)."""
WORKLOADS = ("linear", "sigmoid_mse", "mlp", *CONV_WORKLOADS, *OPTIMIZERS)
QUICK_SIZES = (16, 64, 256, 1024)
_NUMPY = {torch.float64: np.float64, torch.float32: np.float32, torch.float16: np.float16}


# --- timing ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Timing:
    """Seconds per call: the median over ``repeats`` samples, and the interquartile spread."""

    median: float
    q1: float
    q3: float
    calls: int

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
    return Timing(median, q1, q3, calls)


# --- workloads --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Workload:
    """A callable to time and the work it does: ``flops`` or ``bytes`` per call."""

    run: Callable[[], Any]
    flops: float = 0.0
    bytes: float = 0.0


def _inputs(rng: np.random.Generator, *shapes: tuple[int, ...], dtype: Any) -> list[np.ndarray]:
    # Not zeros: denormals and zero-skipping would flatter the timings.
    return [(rng.standard_normal(s) / math.sqrt(s[-1])).astype(dtype) for s in shapes]


def numpy_workload(name: str, n: int, dtype: torch.dtype) -> Workload:
    np_dtype = _NUMPY.get(dtype)
    if np_dtype is None:
        raise ValueError(f"NumPy has no {dtype}")
    rng = np.random.default_rng(0)
    if name == "linear":
        x, w, b, g = _inputs(rng, (n, n), (n, n), (n,), (n, n), dtype=np_dtype)
        return Workload(lambda: (ref_linear.linear(x, w, b), ref_linear.linear_backward(g, x, w)), flops=6 * n**3)
    if name == "sigmoid_mse":
        w, x, y = _inputs(rng, (n, n), (n, n), (n, n), dtype=np_dtype)
        return Workload(lambda: models.sigmoid_mse(w, x, y), flops=6 * n**3)
    if name == "mlp":
        x, y, *ws = _inputs(rng, (n, n), (n, n), (n, n), (n, n), (n, n), dtype=np_dtype)
        return Workload(lambda: _numpy_mlp(x, y, ws), flops=18 * n**3)
    if name in OPTIMIZERS:
        cls, hyper, arrays = OPTIMIZERS[name]
        params = _inputs(rng, (n * n,), dtype=np_dtype)
        grads = _inputs(rng, (n * n,), dtype=np_dtype)
        opt = getattr(ref_optim, cls)(params, **hyper)
        return Workload(lambda: opt.step(grads), bytes=arrays * n * n * np.dtype(np_dtype).itemsize)
    if name == "conv":
        (batch, channels, side), flops = conv_geometry(n)
        x, w, b = _inputs(rng, (batch, channels, side, side), (channels, channels, 3, 3), (channels,), dtype=np_dtype)
        g = _inputs(rng, (batch, channels, side, side), dtype=np_dtype)[0]
        return Workload(lambda: (ref_conv.conv2d(x, w, b, padding=1),
                                 ref_conv.conv2d_backward(g, x, w, True, padding=1)), flops=flops)
    if name == "conv_classifier":
        (batch, channels, side, classes), flops = conv_classifier_geometry(n)
        cw, cb, fw, fb, x = _inputs(rng, (channels, channels, 3, 3), (channels,),
                                    (classes, channels * side * side // 4), (classes,),
                                    (batch, channels, side, side), dtype=np_dtype)
        target = rng.integers(0, classes, batch)
        return Workload(lambda: models.conv_classifier(cw, cb, fw, fb, x, target), flops=flops)
    raise ValueError(f"unknown workload {name!r}")


# --- conv workload ---

def conv_geometry(n: int) -> tuple[tuple[int, int, int], float]:
    """``(batch, channels, side)`` and the forward+backward FLOPs of the conv workload at size ``n``.

    A 3x3 convolution, padding 1, 64 -> 64 channels, on ``side = n // 8`` square images (at least
    2): n = 256 is the issue's configuration (batch 32, 32x32). The batch is 32 up to that side,
    then shrinks to keep 32 * 32 * 32 pixels, so large ``n`` stays affordable (im2col holds
    ``9 * 64`` values a pixel). Three GEMMs of ``2 * 64 * 576`` FLOPs a pixel: forward, weight, input.
    """
    side = max(2, n // 8)
    batch = max(1, min(32, 32 * 32 * 32 // (side * side)))
    return (batch, 64, side), 3 * 2 * 64 * 64 * 9 * batch * side * side


def conv_classifier_geometry(n: int) -> tuple[tuple[int, int, int, int], float]:
    """``(batch, channels, side, classes)`` and the forward+backward FLOPs of the conv_classifier workload.

    The conv workload's convolution (:func:`conv_geometry`, the side rounded down to even for the
    2x2 pool) -> ReLU -> 2x2 max pool -> Linear to 10 classes -> cross-entropy. Counted: the
    convolution's three GEMMs and the linear layer's three (``2 * classes * channels * side^2 / 4``
    FLOPs an image each); the elementwise steps are not.
    """
    (batch, channels, side), _ = conv_geometry(n)
    side -= side % 2
    classes = 10
    conv = 3 * 2 * channels * channels * 9 * batch * side * side
    fc = 3 * 2 * batch * classes * channels * side * side // 4
    return (batch, channels, side, classes), conv + fc


def conv_gemm_ceiling(n: int, np_dtype: Any = None, device: torch.device | None = None,
                      dtype: torch.dtype | None = None) -> Workload:
    """The conv workload's forward GEMM alone, ``(64, 576) @ (576, batch * side * side)`` on ready columns:
    in NumPy (``np_dtype``) or in torch on ``device``."""
    (batch, channels, side), _ = conv_geometry(n)
    shapes = ((channels, channels * 9), (channels * 9, batch * side * side))
    flops = 2 * channels * channels * 9 * batch * side * side
    if device is None:
        w, cols = _inputs(np.random.default_rng(1), *shapes, dtype=np_dtype)
        return Workload(lambda: w @ cols, flops=flops)
    tw, tcols = (torch.randn(*s, device=device).to(dtype) for s in shapes)
    return Workload(lambda: tw @ tcols, flops=flops)


def _numpy_mlp(x: np.ndarray, y: np.ndarray, ws: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Two sigmoid hidden layers and a linear output with MSE, backpropagated by hand."""
    h1 = sigmoid(x @ ws[0].T)
    h2 = sigmoid(h1 @ ws[1].T)
    out = h2 @ ws[2].T
    g_out = 2 * (out - y) / out.size
    g_h2 = sigmoid_backward(g_out @ ws[2], h2)
    g_h1 = sigmoid_backward(g_h2 @ ws[1], h1)
    return [g_h1.T @ x, g_h2.T @ h1, g_out.T @ h2]


def torch_workload(name: str, n: int, dtype: torch.dtype, device: torch.device) -> Workload:
    gen = torch.Generator(device="cpu").manual_seed(0)

    def leaf(*shape: int, grad: bool = True) -> torch.Tensor:
        t = (torch.randn(*shape, generator=gen, dtype=torch.float32) / math.sqrt(shape[-1])).to(device, dtype)
        return t.requires_grad_(grad)

    if name == "linear":
        x, w, b, g = leaf(n, n), leaf(n, n), leaf(n), leaf(n, n, grad=False)
        return Workload(lambda: torch.autograd.grad((F.linear(x, w, b) * g).sum(), (x, w, b)),
                        flops=6 * n**3)
    if name == "sigmoid_mse":
        w, x, y = leaf(n, n), leaf(n, n), leaf(n, n)
        return Workload(lambda: torch.autograd.grad(
            F.mse_loss(torch.sigmoid(x @ w.T), y), (w, x, y)), flops=6 * n**3)
    if name == "mlp":
        x, y = leaf(n, n, grad=False), leaf(n, n, grad=False)
        ws = [leaf(n, n) for _ in range(3)]

        def mlp() -> Any:
            h = torch.sigmoid(torch.sigmoid(x @ ws[0].T) @ ws[1].T)
            return torch.autograd.grad(F.mse_loss(h @ ws[2].T, y), ws)

        return Workload(mlp, flops=18 * n**3)
    if name in OPTIMIZERS:
        cls, hyper, arrays = OPTIMIZERS[name]
        p = leaf(n * n, grad=False)
        p.grad = leaf(n * n, grad=False)
        opt = getattr(torch.optim, cls)([p], **hyper, foreach=True)
        return Workload(opt.step, bytes=arrays * n * n * p.element_size())
    if name == "conv":
        (batch, channels, side), flops = conv_geometry(n)
        x, w, b = leaf(batch, channels, side, side), leaf(channels, channels, 3, 3), leaf(channels)
        g = leaf(batch, channels, side, side, grad=False)
        return Workload(lambda: torch.autograd.grad(
            (F.conv2d(x, w, b, padding=1) * g).sum(), (x, w, b)), flops=flops)
    if name == "conv_classifier":
        (batch, channels, side, classes), flops = conv_classifier_geometry(n)
        params = [leaf(channels, channels, 3, 3), leaf(channels), leaf(classes, channels * side * side // 4),
                  leaf(classes), leaf(batch, channels, side, side)]
        target = torch.randint(0, classes, (batch,), generator=gen).to(device)

        def conv_classifier() -> Any:
            cw, cb, fw, fb, x = params
            pooled = F.max_pool2d(F.relu(F.conv2d(x, cw, cb, padding=1)), 2)
            return torch.autograd.grad(F.cross_entropy(F.linear(pooled.flatten(1), fw, fb), target), params)

        return Workload(conv_classifier, flops=flops)
    raise ValueError(f"unknown workload {name!r}")


def ceiling_workload(name: str, n: int, dtype: torch.dtype, backend: str) -> Workload:
    """The same run's ceiling: a plain ``(n, n)`` matmul, or a plain copy of ``n * n`` elements for an optimizer."""
    if backend == "numpy":
        if name in CONV_WORKLOADS:
            return conv_gemm_ceiling(n, _NUMPY[dtype])
        a, b = _inputs(np.random.default_rng(1), (n, n), (n, n), dtype=_NUMPY[dtype])
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


# --- the sweep --------------------------------------------------------------------------------

@dataclass
class BenchRow:
    workload: str
    backend: str
    dtype: str
    size: int
    median_s: float
    spread: float
    rate: float
    unit: str
    ceiling: float
    percent_of_ceiling: float
    speedup_vs_cpu: float | None = None
    q1_s: float | None = None
    q3_s: float | None = None

    @property
    def warnings(self) -> list[str]:
        """What a reader should not take at face value in this row."""
        out = []
        if self.spread > SPREAD_WARNING:
            out.append(f"spread {self.spread:.0%} > {SPREAD_WARNING:.0%}: noisy timing (a loaded machine?)")
        if self.percent_of_ceiling > CEILING_WARNING:
            out.append(f"{self.percent_of_ceiling:.0f}% of the ceiling: the ceiling measurement was itself slowed "
                       "(noise) or caches favour this workload; the ratio is not meaningful")
        return out


# A row whose interquartile spread exceeds this fraction of its median, or whose rate exceeds this
# percentage of the ceiling measured in the same run, is flagged in the table and JSON.
SPREAD_WARNING = 0.25
CEILING_WARNING = 100.0


@dataclass
class BenchResult:
    rows: list[BenchRow] = field(default_factory=list)
    crossovers: dict[str, int | None] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=dict)


def sync_for(backend: str) -> Callable[[], None] | None:
    """What to call before reading the clock for ``backend``: CUDA work is asynchronous."""
    if backend.startswith("torch-cuda"):
        device = torch.device(backend.removeprefix("torch-"))
        return lambda: torch.cuda.synchronize(device)
    return None


def backends_for(devices: Sequence[str], dtype: torch.dtype) -> list[str]:
    names = ["numpy"] if dtype in _NUMPY else []
    return names + [f"torch-{d}" for d in devices]


def run_bench(workloads: Sequence[str], sizes: Sequence[int], devices: Sequence[str], dtype: torch.dtype,
              repeats: int = 7, progress: Callable[[str], None] | None = None) -> BenchResult:
    """Time every workload x backend x size, with each backend's ceiling measured in the same run."""
    backends = backends_for(devices, dtype)
    result = BenchResult(machine=machine_info())
    ceilings: dict[tuple[str, str, int], float] = {}
    total, done = len(workloads) * len(backends) * len(sizes), 0
    for name in workloads:
        for backend in backends:
            for n in sizes:
                done += 1
                if progress:
                    progress(f"[{done}/{total}] {name} {backend} n={n}")
                try:
                    work = (numpy_workload(name, n, dtype) if backend == "numpy"
                            else torch_workload(name, n, dtype, torch.device(backend.removeprefix("torch-"))))
                except (RuntimeError, ValueError, MemoryError) as exc:  # a size the device cannot hold
                    if progress:
                        progress(f"  skipped: {exc}")
                    continue
                sync = sync_for(backend)
                timing = measure(work.run, sync, repeats=repeats)
                kind = "bandwidth" if work.bytes else "conv" if name in CONV_WORKLOADS else "flops"
                key = (kind, backend, n)
                if key not in ceilings:
                    ceil = ceiling_workload(name, n, dtype, backend)
                    ceil_time = measure(ceil.run, sync, repeats=repeats)
                    ceilings[key] = (ceil.bytes or ceil.flops) / ceil_time.median / 1e9
                rate = (work.bytes or work.flops) / timing.median / 1e9
                result.rows.append(BenchRow(name, backend, str(dtype).removeprefix("torch."), n, timing.median,
                                            timing.spread, rate, "GB/s" if work.bytes else "GFLOP/s",
                                            ceilings[key], 100 * rate / ceilings[key],
                                            q1_s=timing.q1, q3_s=timing.q3))
                del work
    _fill_speedups(result)
    return result


def _fill_speedups(result: BenchResult) -> None:
    cpu = {(r.workload, r.size): r.median_s for r in result.rows if r.backend == "torch-cpu"}
    for r in result.rows:
        if r.backend.startswith("torch-cuda") and (r.workload, r.size) in cpu:
            r.speedup_vs_cpu = cpu[(r.workload, r.size)] / r.median_s
    if not any(r.speedup_vs_cpu is not None for r in result.rows):
        return
    for name in {r.workload for r in result.rows}:
        result.crossovers[name] = crossover(
            [(r.size, r.speedup_vs_cpu) for r in result.rows if r.workload == name and r.speedup_vs_cpu is not None])


def crossover(points: Sequence[tuple[int, float]]) -> int | None:
    """The smallest size from which the GPU is faster (speedup > 1) at every larger size; None if never."""
    points = sorted(points)
    for i, (size, _) in enumerate(points):
        if all(s > 1 for _, s in points[i:]):
            return size
    return None


def format_table(result: BenchResult) -> str:
    header = ("workload", "backend", "dtype", "n", "median", "spread", "rate", "ceiling", "% ceil", "GPU/CPU")
    body = []
    notes = []
    for r in result.rows:
        mark = ""
        for warning in r.warnings:
            notes.append(f"! {r.workload} {r.backend} n={r.size}: {warning}")
            mark = " !"
        body.append((r.workload, r.backend, r.dtype, str(r.size), f"{r.median_s * 1e3:.3f} ms",
                     f"{r.spread:.0%}" + (" !" if r.spread > SPREAD_WARNING else ""),
                     f"{r.rate:.1f} {r.unit}", f"{r.ceiling:.1f}", f"{r.percent_of_ceiling:.0f}%" + mark,
                     "" if r.speedup_vs_cpu is None else f"{r.speedup_vs_cpu:.1f}x"))
    widths = [max(len(x) for x in col) for col in zip(header, *body, strict=True)]
    lines = ["  ".join(x.ljust(w) for x, w in zip(line, widths, strict=True)).rstrip() for line in (header, *body)]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append("")
    m = result.machine
    if m:
        load = m.get("load_average")
        lines.append(f"threads: torch {m.get('torch_threads')} of {m.get('available_cores', m.get('cores'))} cores"
                     + (f"; load average {load[0]:.2f} (1 min)" if load else ""))
    lines.extend(notes)
    if not any(r.backend.startswith("torch-cuda") for r in result.rows):
        lines.append("crossover: no CUDA device in this run, so no GPU-over-CPU speedups")
    for name, size in sorted(result.crossovers.items()):
        lines.append(f"crossover {name}: " + (f"GPU faster from n={size} on" if size else "GPU never faster here"))
    return "\n".join(lines)


def plot_title(result: BenchResult) -> str:
    """The dtype(s) and the machine a plot was measured on."""
    m = result.machine
    dtypes = ", ".join(dict.fromkeys(r.dtype for r in result.rows))
    gpus = ", ".join(m.get("gpus") or []) or "no GPU"
    threads = f"{m.get('torch_threads')} torch threads" if m.get("torch_threads") else ""
    return f"{dtypes} - {m.get('cpu', 'unknown CPU')} ({m.get('cores', '?')} cores), {gpus}" + (
        f", {threads}" if threads else "")


def plot(result: BenchResult, path: str) -> None:
    """Median time vs size per backend, log-log, one panel per workload on one shared, labelled time
    scale; every measured size marked and ticked, the interquartile spread as error bars, the
    crossover marked, dtype and machine in the title (needs matplotlib)."""
    import matplotlib  # type: ignore[import-not-found, unused-ignore]

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # type: ignore[import-not-found, unused-ignore]

    names = [w for w in WORKLOADS if any(r.workload == w for r in result.rows)]
    names += sorted({r.workload for r in result.rows} - set(names))
    fig, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 4.4), squeeze=False, sharey=True)
    for ax, name in zip(axes[0], names, strict=True):
        sizes = sorted({r.size for r in result.rows if r.workload == name})
        for backend in dict.fromkeys(r.backend for r in result.rows if r.workload == name):
            rows = sorted((r for r in result.rows if r.workload == name and r.backend == backend),
                          key=lambda r: r.size)
            ms = [r.median_s * 1e3 for r in rows]
            low = [(r.median_s - (r.q1_s if r.q1_s is not None else r.median_s)) * 1e3 for r in rows]
            high = [((r.q3_s if r.q3_s is not None else r.median_s) - r.median_s) * 1e3 for r in rows]
            ax.errorbar([r.size for r in rows], ms, yerr=[low, high], marker="o", capsize=3, label=backend)
        if result.crossovers.get(name):
            ax.axvline(result.crossovers[name], color="grey", linestyle="--", label="crossover")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(sizes, [str(n) for n in sizes])
        ax.minorticks_off()
        ax.set_title(name + (" (n*n params)" if name == "adam" else " (n x n)"))
        ax.set_xlabel("n (every measured size)")
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel("median time per call (ms), shared scale")
    fig.suptitle(plot_title(result) + "\nerror bars: interquartile range of the timed samples", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# --- command line -----------------------------------------------------------------------------

def add_parser(sub: Any, formatter_class: Any = argparse.HelpFormatter) -> None:
    from gradcheck_lab.cli.argtypes import output_path, plot_path, positive_int, size_list

    p = sub.add_parser("bench", help="CPU vs GPU gradient speed against the same run's hardware ceiling",
                       formatter_class=formatter_class,
                       description="Time each workload on the NumPy reference, torch on the CPU and torch on\n"
                                   "each GPU, next to a ceiling measured in the same run. Rows with a large\n"
                                   "spread or a rate above the ceiling are flagged with '!'.")
    p.add_argument("--workload", action="append", choices=WORKLOADS, help="only this workload (repeatable)")
    p.add_argument("--sizes", type=size_list, default=",".join(map(str, QUICK_SIZES)), metavar="N,N,...",
                   help="comma list of n")
    p.add_argument("--device", default="all", help="torch devices: cpu, cuda, all, ... (default: all)")
    p.add_argument("--dtype", default="float32", help="float32 (default), float64, bfloat16 or float16")
    p.add_argument("--repeats", type=positive_int, default=7, metavar="N",
                   help="timed samples per point; the median is quoted")
    p.add_argument("--threads", type=positive_int, default=None, metavar="N",
                   help="torch and BLAS threads (default: this process's share of the available cores, "
                        "divided among pytest-xdist workers, so pools do not oversubscribe)")
    p.add_argument("--verification", action="store_true",
                   help="also time check_gradients (plain and with the oracle) against torch.autograd.gradcheck "
                        "(fast and full), as ratios to one reference call + one autograd pass")
    p.add_argument("--verification-sizes", type=size_list, default="16,64,256,1024", metavar="N,N,...",
                   help="sizes for --verification")
    p.add_argument("--json", metavar="PATH", type=output_path, help="write rows, crossovers and machine info as JSON")
    p.add_argument("--plot", metavar="PATH", type=plot_path,
                   help="write a log-log plot (needs the 'plot' extra: matplotlib)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=_cmd_bench)


def _cmd_bench(args: argparse.Namespace) -> int:
    dtype = resolve_dtype(args.dtype)
    devices = resolve_devices(args.device)
    sizes = args.sizes

    def progress(line: str) -> None:
        if args.quiet:
            return
        if sys.stderr.isatty():  # one line that updates in place
            print(f"\r\033[K{line}", end="", file=sys.stderr, flush=True)
        else:
            print(line, file=sys.stderr, flush=True)

    from gradcheck_lab.core.threads import thread_budget

    with thread_budget(args.threads):
        result = run_bench(args.workload or WORKLOADS, sizes, devices, dtype, args.repeats, progress)
    if not args.quiet and sys.stderr.isatty():
        print(file=sys.stderr)
    print(format_table(result))
    payload: dict[str, Any] = {"machine": result.machine, "dtype": args.dtype,
                               "rows": [{**asdict(r), "warnings": r.warnings} for r in result.rows],
                               "crossovers": result.crossovers}
    if args.verification:
        from gradcheck_lab.bench import verification as verification_speed

        with thread_budget(args.threads):
            rows = verification_speed.measure_verification(args.verification_sizes, repeats=args.repeats)
        print("\nverification cost (Linear -> sigmoid -> MSE, W n x n, batch n, float64; median ratios):")
        print(verification_speed.format_table(rows))
        payload["verification"] = [verification_speed.as_dict(r) for r in rows]
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(payload, fh, indent=2)
    if args.plot:
        plot(result, args.plot)
    return 0


