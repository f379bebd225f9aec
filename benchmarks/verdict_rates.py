"""Rates of reported bugs and of false alarms, per dtype: ``python benchmarks/verdict_rates.py [--seeds 20]
[--correct-seeds 375]`` (8 correct checks a seed: 375 seeds give 3,000 per dtype).

Planted bugs on Linear -> sigmoid -> MSE (W n x n, n = 8, 64, 256): zeroed, doubled, halved,
transposed, sign-flipped, bias averaged instead of summed, one element off by the dtype's resolution
times max|g|, every element off by that relative amount; each must raise ``GradientMismatch``.
Correct gradients on inputs of magnitudes 1e-4..1e4, mixed scales across tensors and products that
cancel to ~1e-7, with and without the oracle; none may raise. The counts are printed per dtype, then
the oracle's verdicts on functions that lose an input to rounding (none may be a mismatch).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from test_verdicts import (
    BUGS,
    linear_sigmoid_mse,
    model_inputs,
    planted,
    tanh_mlp,
    torch_linear_sigmoid_mse,
    torch_tanh_mlp,
    wide,
)

import gradcheck_lab as gl
from gradcheck_lab.core.tolerances import RESOLUTION

DTYPES = ("float64", "float32", "float16", "bfloat16")


def cancelling_mlp(rng: np.random.Generator, n: int = 8) -> tuple[np.ndarray, ...]:
    """tanh-MLP inputs whose first hidden pre-activation cancels to ~1e-7 of its terms."""
    w1, w2, x = rng.standard_normal((n, n)), rng.standard_normal((3, n)), rng.standard_normal((4, n))
    x[:, -1] = -(x[:, :-1] @ w1[0, :-1]) / w1[0, -1] * (1 + 1e-7 * rng.standard_normal(4))
    return w1, w2, x


def correct_jobs(rng: np.random.Generator) -> list[tuple]:
    return [
        (tanh_mlp, torch_tanh_mlp, cancelling_mlp(rng)),
        (linear_sigmoid_mse, torch_linear_sigmoid_mse,
         (wide(rng, (8, 8)), wide(rng, 8), wide(rng, (4, 8)), rng.uniform(0, 1, (4, 8)))),
        (tanh_mlp, torch_tanh_mlp, (wide(rng, (6, 5)), wide(rng, (3, 6)), wide(rng, (4, 5)))),
        (linear_sigmoid_mse, torch_linear_sigmoid_mse,
         (1e-4 * rng.standard_normal((8, 8)), 1e3 * rng.standard_normal(8), 1e2 * rng.standard_normal((4, 8)),
          rng.uniform(0, 1, (4, 8)))),
    ]


def outcome(reference, torch_fn, inputs, dtype: str, **kwargs) -> str:
    try:
        return gl.check_gradients(reference, torch_fn, inputs, dtype=dtype, **kwargs).verdict
    except gl.GradientMismatch:
        return "mismatch"
    except gl.NonFiniteError:
        return "non-finite"


def swallowed_input_alarms(draws: int, seed: int = 0) -> Counter[str]:
    """The oracle on ``x0 + c - c`` (c = 1e6..1e12) plus a sum of squares, inputs 1e-4..1e2, float64:
    both gradients are right, and rounding may swallow x0 whole; any "mismatch" is a false alarm."""
    rng = np.random.default_rng(seed)
    verdicts = Counter[str]()
    for _ in range(draws):
        offset = 10.0 ** int(rng.integers(6, 13))
        x = rng.standard_normal(6) * 10.0 ** rng.uniform(-4, 2)

        def reference(x: np.ndarray, offset: float = offset) -> tuple[float, tuple[np.ndarray]]:
            return (x[0] + offset) - offset + np.sum(x[1:] ** 2), (np.concatenate([[1.0], 2 * x[1:]]),)

        def torch_fn(t: torch.Tensor, offset: float = offset) -> torch.Tensor:
            return (t[0] + offset) - offset + (t[1:] ** 2).sum()

        verdicts[outcome(reference, torch_fn, (x,), "float64", finite_differences=True)] += 1
    return verdicts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20, help="seeds of the planted bugs (and of the correct "
                        "gradients, unless --correct-seeds)")
    parser.add_argument("--correct-seeds", type=int, default=None, help="seeds of the correct gradients, 8 "
                        "checks each (default: --seeds)")
    args = parser.parse_args()
    correct_seeds = args.seeds if args.correct_seeds is None else args.correct_seeds
    warnings.simplefilter("ignore", gl.InconclusiveWarning)
    for dtype in DTYPES:
        d = RESOLUTION[getattr(torch, dtype)]
        caught = Counter[str]()
        total = 0
        for n in (8, 64, 256):
            for seed in range(args.seeds if n < 256 else max(1, args.seeds // 4)):
                inputs = model_inputs(n, seed)
                for bug in BUGS:
                    total += 1
                    caught[outcome(planted(bug, d, seed), torch_linear_sigmoid_mse, inputs, dtype)] += 1
        alarms = Counter[str]()
        for seed in range(correct_seeds):
            for oracle in (False, True):
                for reference, torch_fn, inputs in correct_jobs(np.random.default_rng(seed)):
                    alarms[outcome(reference, torch_fn, inputs, dtype, finite_differences=oracle, seed=seed)] += 1
        print(f"{dtype:>9}: planted bugs (d = {d:g}) reported {caught['mismatch']}/{total} {dict(caught)}; "
              f"correct gradients {dict(alarms)}", flush=True)
    swallowed = swallowed_input_alarms(20 * args.seeds)
    print(f"oracle on inputs swallowed by rounding (x0 + 1e6..1e12 - same): {dict(swallowed)}")


if __name__ == "__main__":
    main()
