"""What a verification costs: ``check_gradients`` against ``torch.autograd.gradcheck``, side by side.

The workload is Linear -> sigmoid -> MSE with W of n x n and a batch of n, in float64 (what
gradcheck needs). Every method is timed in the same run on the same inputs, under the thread pools
a check uses (:func:`gradcheck_lab.core.threads.check_threads`), and quoted as a ratio to the
*baseline*, the least any check must do: one reference call and one autograd pass.

- ``plain``: ``check_gradients`` (reference vs autograd, float64 math comparison);
- ``oracle``: the same with ``finite_differences=True`` (one random direction);
- ``gradcheck fast``: ``torch.autograd.gradcheck(fast_mode=True)``;
- ``gradcheck full``: ``torch.autograd.gradcheck`` (2N + 1 forward calls for N input elements:
  timed only while N stays small).
"""

from __future__ import annotations

import argparse
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from gradcheck_lab.bench.timing import Timing, measure_side_by_side
from gradcheck_lab.core.threads import check_threads
from gradcheck_lab.gradients.check import check_gradients
from gradcheck_lab.reference import models

METHODS = ("plain", "oracle", "gradcheck fast", "gradcheck full")
FULL_MODE_LIMIT = 4096
"""Input elements above which gradcheck's full mode (2N + 1 forward calls) is not timed."""


def torch_sigmoid_mse(weight: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(torch.sigmoid(F.linear(x, weight)), y)


def workload_inputs(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, n)) / np.sqrt(n), rng.standard_normal((n, n)), rng.uniform(0, 1, (n, n))


def method_calls(n: int) -> dict[str, Callable[[], Any]]:
    """One callable per method (and the baseline), on the same inputs of size ``n``."""
    inputs = workload_inputs(n)
    leaves = [torch.tensor(a, requires_grad=True) for a in inputs]

    def baseline() -> None:
        with check_threads():  # the pools a check runs with: else NumPy's and torch's threads fight
            models.sigmoid_mse(*inputs)
            torch.autograd.grad(torch_sigmoid_mse(*leaves), leaves)

    def gradcheck(fast_mode: bool) -> bool:
        with check_threads():
            return bool(torch.autograd.gradcheck(torch_sigmoid_mse, leaves, fast_mode=fast_mode))

    calls: dict[str, Callable[[], Any]] = {
        "baseline": baseline,
        "plain": lambda: check_gradients(models.sigmoid_mse, torch_sigmoid_mse, inputs),
        "oracle": lambda: check_gradients(models.sigmoid_mse, torch_sigmoid_mse, inputs, finite_differences=True),
        "gradcheck fast": lambda: gradcheck(fast_mode=True),
    }
    if sum(a.size for a in inputs) <= FULL_MODE_LIMIT:
        calls["gradcheck full"] = lambda: gradcheck(fast_mode=False)
    return calls


@dataclass(frozen=True)
class VerificationRow:
    """Every method's timing at one size, and each as a ratio to the baseline."""

    n: int
    baseline: Timing
    timings: dict[str, Timing]

    def ratio(self, method: str) -> float | None:
        timing = self.timings.get(method)
        return None if timing is None else timing.median / self.baseline.median


def as_dict(row: VerificationRow) -> dict[str, Any]:
    """A row as JSON: seconds per method (medians) and each method's ratio to the baseline."""
    return {"n": row.n, "baseline_s": row.baseline.median,
            "seconds": {m: t.median for m, t in row.timings.items()},
            "ratios": {m: row.ratio(m) for m in row.timings}}


def measure_verification(sizes: Sequence[int], *, repeats: int = 5) -> list[VerificationRow]:
    """Time every method at every size, side by side (one sample of each in turn, see
    :func:`~gradcheck_lab.bench.timing.measure_side_by_side`), so machine load hits all alike."""
    rows = []
    for n in sizes:
        calls = method_calls(n)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            timings = measure_side_by_side(calls, repeats=repeats)
        rows.append(VerificationRow(n, timings.pop("baseline"), timings))
    return rows


def format_table(rows: Sequence[VerificationRow]) -> str:
    header = f"{'n':>6} {'baseline':>11} " + " ".join(f"{m:>15}" for m in METHODS) + f" {'oracle/fast':>12}"
    lines = [header, "-" * len(header)]
    for row in rows:
        cells = []
        for method in METHODS:
            ratio = row.ratio(method)
            cells.append(f"{'-':>15}" if ratio is None else f"{ratio:>14.2f}x")
        oracle, fast = row.timings.get("oracle"), row.timings.get("gradcheck fast")
        versus = f"{oracle.median / fast.median:>11.2f}x" if oracle and fast else f"{'-':>12}"
        lines.append(f"{row.n:>6} {row.baseline.median * 1e3:>9.3f}ms " + " ".join(cells) + f" {versus}")
    lines.append("ratios to the baseline (one reference call + one autograd pass); oracle/fast: the check "
                 "with finite differences over gradcheck(fast_mode=True)")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gradcheck_lab.bench.verification",
                                     description="Time check_gradients against torch.autograd.gradcheck.")
    parser.add_argument("--sizes", default="16,64,256,1024", help="comma-separated n (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=5, help="samples per timing (default: %(default)s)")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    print(format_table(measure_verification(sizes, repeats=args.repeats)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
