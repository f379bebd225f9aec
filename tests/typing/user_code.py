"""A user's own module, written against the documented API only: `mypy --strict` must accept it as is.

tests/test_typing.py type-checks it (and runs it: every call here is a real check that passes).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import torch

import gradcheck_lab as gl
from gradcheck_lab import GradientMismatch, Report, check_gradients

Array = npt.NDArray[np.float64]


def mse(pred: Array, target: Array) -> tuple[float, tuple[Array, Array]]:
    grad = 2 * (pred - target) / pred.size
    return float(np.mean((pred - target) ** 2)), (grad, -grad)


def affine_forward(x: Array, w: Array, b: Array) -> Array:
    out: Array = x @ w + b
    return out


def affine_backward(dout: Array, x: Array, w: Array, b: Array) -> tuple[Array, Array, Array]:
    return dout @ w.T, x.T @ dout, dout.sum(axis=0)


class Affine:
    """A layer that returns its output and its input gradient, keeping parameter gradients on attributes."""

    def __init__(self, n_in: int, n_out: int) -> None:
        self.W = np.zeros((n_in, n_out))
        self.b = np.zeros(n_out)
        self.dW = np.zeros_like(self.W)
        self.db = np.zeros_like(self.b)
        self.x = np.zeros((0, n_in))

    def forward(self, x: Array) -> Array:
        self.x = x
        out: Array = x @ self.W + self.b
        return out

    def backward(self, dout: Array) -> Array:
        self.dW, self.db = self.x.T @ dout, dout.sum(axis=0)
        dx: Array = dout @ self.W.T
        return dx


def sgd(w: Array, dw: Array, config: dict[str, Any]) -> tuple[Array, dict[str, Any]]:
    return w - config["learning_rate"] * dw, config


class NumpySGD:
    """torch.optim.SGD's constructor and a step(grads) that updates the arrays in place."""

    def __init__(self, params: list[Array], lr: float = 0.01) -> None:
        self.params, self.lr = params, lr

    def step(self, grads: list[Array | None]) -> None:
        for p, g in zip(self.params, grads, strict=True):
            if g is not None:
                p -= self.lr * g


def check_everything() -> list[str]:
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    lines: list[str] = []

    report: Report = check_gradients(mse, torch.nn.functional.mse_loss, (x, y), device="cpu", dtype="float32")
    assert report.passed and report.verdict == "passed"
    worst: tuple[int, ...] = report.worst_index
    errors: tuple[float, float] = (report.max_abs_error, report.max_rel_error)
    summary: dict[str, Any] = report.to_dict()
    lines += [report.summary(), f"{worst} {errors} {sorted(summary)[:2]}"]

    def wrong(pred: Array, target: Array) -> tuple[float, tuple[Array, Array]]:
        value, (grad, other) = mse(pred, target)
        return value, (grad / 2, other)

    try:
        gl.check_gradients(wrong, torch.nn.functional.mse_loss, (x, y), dtype=torch.float64)
    except GradientMismatch as err:
        failed: Report | None = err.report
        lines.append(str(failed.diagnosis if failed is not None else err))
    except gl.GradcheckError as err:  # every typed error subclasses it
        lines.append(f"unexpected {type(err).__name__}")

    w, b = rng.standard_normal((4, 2)), rng.standard_normal(2)
    lines.append(gl.check_vjp(affine_forward, affine_backward, lambda x, w, b: x @ w + b, (x, w, b)).summary())

    linear = torch.nn.Linear(4, 2)
    lines.append(gl.check_layer(Affine(4, 2), linear, (x,), params={"weight": "W", "bias": "b"},
                                param_grads={"weight": "dW", "bias": "db"},
                                transforms={"weight": np.transpose}).summary())

    rule_report: gl.OptimizerReport = gl.check_update_rule(sgd, torch.optim.SGD, hyper={"lr": 0.1}, steps=5)
    lines.append(rule_report.summary())
    try:
        optimizer_report = gl.check_optimizer(NumpySGD, torch.optim.SGD, hyper={"lr": 0.1}, shapes=[(4, 3), (3,)],
                                              steps=5, device="cpu", dtype="float64", seed=0)
        lines.append(optimizer_report.summary())
    except gl.OptimizerMismatch as err:
        lines.append(f"step {err.step}, parameter {err.param}, entry {err.entry}")

    result: gl.VerifyResult = gl.verify(mse, torch.nn.functional.mse_loss, shapes=[(3, 4), (3, 4)], max_examples=5)
    lines.append(type(result).__name__)
    lines.append(str(len(gl.CASES)))
    return lines


if __name__ == "__main__":
    print("\n".join(check_everything()))
