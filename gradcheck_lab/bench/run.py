"""CPU vs GPU gradient speed, each figure against the same run's hardware ceiling.

Workloads (``n`` is the size): a linear layer ``(n, n) x (n, n)`` forward+backward, the
Linear -> sigmoid -> MSE model forward+backward, an MLP with two hidden layers of width ``n``
forward+backward, a 3x3 convolution forward+backward and the conv classifier model
(:func:`conv_geometry`, :func:`conv_classifier_geometry`), and one step of each optimizer in
:data:`OPTIMIZERS` on ``n * n`` parameters. Backends: the NumPy reference, torch autograd on the
CPU, and torch on each CUDA device. Every row gives the median time and its spread, the achieved
GFLOP/s (GB/s for optimizers), the ceiling of its device for that kind of work and size (one roofline
for every backend on the device: :mod:`gradcheck_lab.bench.ceilings`) and the percentage of it, and the
speedup of the GPU over torch on the CPU.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from gradcheck_lab.bench.ceilings import Ceiling, best_of, ceiling_device, ceiling_kind, measure_ceiling
from gradcheck_lab.bench.timing import measure, sync_for
from gradcheck_lab.bench.workloads import NUMPY_BACKEND_DTYPES, numpy_workload, torch_workload
from gradcheck_lab.core.machine import machine_info
from gradcheck_lab.reference import optim_blocks

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
    ceiling_kind: str = ""

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
REMEASURE = 2
"""Times a ceiling is measured again when a row of its kind runs faster than it (then the best is kept)."""


@dataclass
class BenchResult:
    rows: list[BenchRow] = field(default_factory=list)
    crossovers: dict[str, int | None] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=dict)
    ceilings: list[Ceiling] = field(default_factory=list)




def backends_for(devices: Sequence[str], dtype: torch.dtype) -> list[str]:
    names = ["numpy"] if dtype in NUMPY_BACKEND_DTYPES else []
    return names + [f"torch-{d}" for d in devices]


def run_bench(workloads: Sequence[str], sizes: Sequence[int], devices: Sequence[str], dtype: torch.dtype,
              repeats: int = 7, progress: Callable[[str], None] | None = None) -> BenchResult:
    """Time every workload x backend x size, each against its device's ceiling for that kind of work and size
    (:mod:`gradcheck_lab.bench.ceilings`), measured in the same run."""
    backends = backends_for(devices, dtype)
    result = BenchResult(machine=machine_info())
    # The NumPy optimizer steps split large updates over as many threads as torch's pool has: a fair race.
    reference_threads = optim_blocks.set_num_threads(torch.get_num_threads())
    result.machine["reference_optimizer_threads"] = torch.get_num_threads()
    try:
        _sweep(result, workloads, sizes, backends, dtype, repeats, progress)
    finally:
        optim_blocks.set_num_threads(reference_threads)
    fill_speedups(result)
    return result


def _sweep(result: BenchResult, workloads: Sequence[str], sizes: Sequence[int], backends: Sequence[str],
           dtype: torch.dtype, repeats: int, progress: Callable[[str], None] | None) -> None:
    ceilings: dict[tuple[str, str, int], Ceiling] = {}
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
                key = (ceiling_kind(name), ceiling_device(backend), n)
                rate = (work.bytes or work.flops) / timing.median / 1e9
                if key not in ceilings:
                    ceilings[key] = measure_ceiling(key[0], n, dtype, key[1], repeats=repeats)
                for _ in range(REMEASURE):  # a ceiling below a measured rate was itself slowed: measure it again
                    if rate <= ceilings[key].rate:
                        break
                    ceilings[key] = best_of(ceilings[key], measure_ceiling(key[0], n, dtype, key[1], repeats=repeats))
                result.rows.append(BenchRow(name, backend, str(dtype).removeprefix("torch."), n, timing.median,
                                            timing.spread, rate, "GB/s" if work.bytes else "GFLOP/s",
                                            0.0, 0.0, q1_s=timing.q1, q3_s=timing.q3, ceiling_kind=key[0]))
                del work
    for row in result.rows:  # every row against its ceiling as it stands at the end of the run
        ceiling = ceilings[(row.ceiling_kind, ceiling_device(row.backend), row.size)]
        row.ceiling, row.percent_of_ceiling = ceiling.rate, 100 * row.rate / ceiling.rate
    result.ceilings = list(ceilings.values())


def fill_speedups(result: BenchResult) -> None:
    """Each GPU row's speedup over torch on the CPU at the same workload and size, and each workload's crossover."""
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

