"""Plot a benchmark run: median time against size, one panel per workload (needs matplotlib)."""

from __future__ import annotations

import math

from gradcheck_lab.bench.run import BenchResult
from gradcheck_lab.bench.workloads import OPTIMIZERS, WORKLOADS

PANELS_PER_ROW = 5


def plot_title(result: BenchResult) -> str:
    """The dtype(s) and the machine a plot was measured on."""
    m = result.machine
    dtypes = ", ".join(dict.fromkeys(r.dtype for r in result.rows))
    gpus = ", ".join(m.get("gpus") or []) or "no GPU"
    threads = f"{m.get('torch_threads')} torch threads" if m.get("torch_threads") else ""
    load = m.get("load_average")
    return f"{dtypes} - {m.get('cpu', 'unknown CPU')} ({m.get('cores', '?')} cores), {gpus}" + (
        f", {threads}" if threads else "") + (f", load average {load[0]:.1f}" if load else "")


def plot(result: BenchResult, path: str) -> None:
    """Median time vs size per backend, log-log, one panel per workload on one shared, labelled time
    scale; every measured size marked and ticked, the interquartile spread as error bars, the
    crossover marked, dtype and machine in the title (needs matplotlib)."""
    import matplotlib  # type: ignore[import-not-found, unused-ignore]

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # type: ignore[import-not-found, unused-ignore]

    names = [w for w in WORKLOADS if any(r.workload == w for r in result.rows)]
    names += sorted({r.workload for r in result.rows} - set(names))
    cols = min(PANELS_PER_ROW, len(names))
    n_rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(n_rows, cols, figsize=(4.5 * cols, 4.0 * n_rows + 0.6), squeeze=False, sharey=True)
    for ax in axes.flat[len(names):]:
        ax.set_visible(False)
    for ax, name in zip(axes.flat, names, strict=False):
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
        ax.set_title(name + (" (n*n params)" if name in OPTIMIZERS else " (n x n)"))
        ax.set_xlabel("n (every measured size)")
        ax.legend(fontsize=8)
    for line in axes:
        line[0].set_ylabel("median time per call (ms), shared scale")
    fig.suptitle(plot_title(result) + "\nerror bars: interquartile range of the timed samples", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)

