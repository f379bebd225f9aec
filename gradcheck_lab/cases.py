"""The case registry: each case binds a NumPy reference to its torch equivalent.

Adding an op is adding one :func:`register` call: the generic tests, ``gradcheck-lab verify``
and the benchmarks sweep :data:`CASES`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from hypothesis import strategies as st

from gradcheck_lab import strategies as gst
from gradcheck_lab.check import ReferenceFn, TorchFn, check_gradients
from gradcheck_lab.dtypes import FLOAT_DTYPES, dtype_name, resolve_dtype
from gradcheck_lab.optim_check import OptimizerReport, check_optimizer
from gradcheck_lab.reference import linear as ref_linear
from gradcheck_lab.reference import losses as ref_losses
from gradcheck_lab.reference import models, tutorial
from gradcheck_lab.reference import optim as ref_optim
from gradcheck_lab.reference.activations import sigmoid, sigmoid_backward
from gradcheck_lab.report import Report

ALL_DTYPES = tuple(FLOAT_DTYPES)


@dataclass(frozen=True)
class Case:
    """A reference/torch pair with the inputs it is checked on.

    ``inputs`` is a hypothesis strategy of input tuples (float64, or integer for data);
    ``dtypes`` the dtypes it supports; ``tolerances`` optional per-dtype
    ``{"rtol": ..., "atol": ...}`` overrides, each with a reason in ``description``;
    ``constants`` the indices of data inputs (labels, targets, masks: see ``check_gradients``);
    ``options`` further keyword arguments for ``check_gradients`` (``kinks=...``, say).
    """

    name: str
    reference: ReferenceFn
    torch_fn: TorchFn
    inputs: st.SearchStrategy[tuple[Any, ...]]
    dtypes: tuple[str, ...] = ALL_DTYPES
    tolerances: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    description: str = ""
    constants: tuple[int, ...] = ()
    options: Mapping[str, Any] = field(default_factory=dict)

    def check_options(self, dtype: str) -> dict[str, Any]:
        """The keyword arguments ``check_gradients`` takes for this case in ``dtype``."""
        return {"constants": self.constants, **self.options, **self.tolerances.get(dtype, {})}


CASES: dict[str, Case] = {}


def register(case: Case) -> Case:
    """Add a case to :data:`CASES`; names are unique."""
    if case.name in CASES:
        raise ValueError(f"a case named {case.name!r} is already registered")
    for dtype in case.dtypes:
        resolve_dtype(dtype)
    CASES[case.name] = case
    return case


def get_case(case: Case | str) -> Case:
    if isinstance(case, Case):
        return case
    try:
        return CASES[case]
    except KeyError:
        raise KeyError(f"no case named {case!r}; known cases: {', '.join(sorted(CASES))}") from None


def check_case(case: Case | str, inputs: Any, *, device: str | torch.device = "cpu",
               dtype: str | torch.dtype = "float64", **kwargs: Any) -> Report:
    """:func:`check_gradients` for a registered case (by object or name), with its tolerance overrides."""
    case = get_case(case)
    options = {**case.check_options(dtype_name(resolve_dtype(dtype))), **kwargs}
    return check_gradients(case.reference, case.torch_fn, inputs, device=device, dtype=dtype, **options)


# --- adapters: an op with a non-scalar output is checked through the scalar <op(x), grad_out> ---

def sigmoid_vjp(x: np.ndarray, grad_out: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    r"""Scalar :math:`\langle \sigma(x), g \rangle`.

    Its gradient in ``x`` is the sigmoid backward of ``g``; in ``g`` it is :math:`\sigma(x)`.
    """
    out = sigmoid(x)
    return np.sum(out * grad_out), (sigmoid_backward(grad_out, out), out)


def _mse_pair(reduction: Literal["mean", "sum"]) -> ReferenceFn:
    def mse_loss(pred: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        grad = ref_losses.mse_backward(pred, target, reduction)
        return ref_losses.mse(pred, target, reduction), (grad, -grad)

    mse_loss.__doc__ = f"MSE with reduction={reduction!r}; the target's gradient is minus the prediction's."
    return mse_loss


def linear_vjp(x: np.ndarray, weight: np.ndarray, bias: np.ndarray,
               grad_out: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    r"""Scalar :math:`\langle x W^\top + b, g \rangle`: the three linear gradients, and the output for ``g``."""
    out = ref_linear.linear(x, weight, bias)
    grad_x, grad_w, grad_b = ref_linear.linear_backward(grad_out, x, weight, has_bias=True)
    assert grad_b is not None  # has_bias=True
    return np.sum(out * grad_out), (grad_x, grad_w, grad_b, out)


def linear_nobias_vjp(x: np.ndarray, weight: np.ndarray,
                      grad_out: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    r"""Scalar :math:`\langle x W^\top, g \rangle` for a linear layer without bias."""
    out = ref_linear.linear(x, weight)
    grad_x, grad_w, _ = ref_linear.linear_backward(grad_out, x, weight, has_bias=False)
    return np.sum(out * grad_out), (grad_x, grad_w, out)


def _linear_torch(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    return (F.linear(x, weight, bias) * g).sum()


def _linear_nobias_torch(x: torch.Tensor, weight: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    return (F.linear(x, weight) * g).sum()


def _gradient_cases() -> list[Case]:
    cases = [
        Case("sigmoid", sigmoid_vjp, lambda x, g: (torch.sigmoid(x) * g).sum(), gst.same_shape(2),
             description="logistic sigmoid, through <sigmoid(x), grad_out>"),
        Case("mse_mean", _mse_pair("mean"), lambda p, t: F.mse_loss(p, t, reduction="mean"), gst.same_shape(2),
             description="mean squared error, reduction='mean'"),
        Case("mse_sum", _mse_pair("sum"), lambda p, t: F.mse_loss(p, t, reduction="sum"), gst.same_shape(2),
             description="squared error, reduction='sum'"),
        Case("linear_regression", models.linear_regression,
             lambda w, b, x, y: F.mse_loss(x @ w + b, y), gst.regression_inputs(),
             description="y = x @ w + b with the mean squared error"),
        Case("sigmoid_mse", models.sigmoid_mse,
             lambda weight, x, y: F.mse_loss(torch.sigmoid(F.linear(x, weight)), y), gst.sigmoid_mse_inputs(),
             description="Linear (no bias) -> sigmoid -> MSE"),
        Case("mean_of_squares", tutorial.mean_of_squares, lambda x: (x**2).mean(), gst.same_shape(1),
             description="d/dx mean(x**2) = 2x/N"),
        Case("sum_of_two_squares", tutorial.sum_of_two_squares, lambda a, b: (a**2 + b**2).sum(),
             gst.same_shape(2), description="x1**2 + x2**2"),
        Case("square_plus_twice", tutorial.square_plus_twice, lambda a, b: (a**2 + 2 * b).sum(),
             gst.same_shape(2), description="sum(x1**2 + 2*x2)"),
        Case("residual_chain", tutorial.residual_chain, lambda x, w, y: ((x * w - y) ** 2).sum(),
             gst.same_shape(3), description="loss = (x*w - y)**2"),
    ]
    for dims in (1, 2):
        cases.append(Case(f"linear_bias_{dims + 1}d", linear_vjp, _linear_torch,
                          gst.linear_inputs(batch_dims=dims, bias=True),
                          description=f"x @ W.T + b, {dims + 1}-D input"))
        cases.append(Case(f"linear_nobias_{dims + 1}d", linear_nobias_vjp, _linear_nobias_torch,
                          gst.linear_inputs(batch_dims=dims, bias=False),
                          description=f"x @ W.T, {dims + 1}-D input"))
    return cases


for _case in _gradient_cases():
    register(_case)


@dataclass(frozen=True)
class OptimizerCase:
    """A NumPy optimizer and its torch.optim class with the hyperparameters they are checked under."""

    name: str
    numpy_cls: type
    torch_cls: type
    hyper: Mapping[str, Any]
    shapes: tuple[tuple[int, ...], ...] = ((4, 3), (3,), (2, 2, 2))
    steps: int = 100
    # float16 cannot hold Adam's default eps (1e-8 rounds to 0), so both sides divide 0 by 0.
    dtypes: tuple[str, ...] = ("float64", "float32")
    description: str = ""


OPTIMIZER_CASES: dict[str, OptimizerCase] = {}


def register_optimizer(case: OptimizerCase) -> OptimizerCase:
    """Add an optimizer case to :data:`OPTIMIZER_CASES`; names are unique."""
    if case.name in OPTIMIZER_CASES:
        raise ValueError(f"an optimizer case named {case.name!r} is already registered")
    OPTIMIZER_CASES[case.name] = case
    return case


def check_optimizer_case(case: OptimizerCase | str, *, device: str | torch.device = "cpu",
                         dtype: str | torch.dtype = "float64", **kwargs: Any) -> OptimizerReport:
    """:func:`check_optimizer` for a registered optimizer case."""
    case = OPTIMIZER_CASES[case] if isinstance(case, str) else case
    options = {"hyper": case.hyper, "shapes": case.shapes, "steps": case.steps, **kwargs}
    return check_optimizer(case.numpy_cls, case.torch_cls, device=device, dtype=dtype, **options)


def _optimizer_cases() -> list[OptimizerCase]:
    sgd = [
        ("sgd", {"lr": 0.1}),
        ("sgd_momentum", {"lr": 0.05, "momentum": 0.9}),
        ("sgd_momentum_dampening_wd", {"lr": 0.05, "momentum": 0.9, "dampening": 0.3, "weight_decay": 0.01}),
        ("sgd_nesterov_maximize", {"lr": 0.05, "momentum": 0.8, "nesterov": True, "maximize": True}),
    ]
    adam: list[tuple[str, type, type, dict[str, Any]]] = [
        ("adam", ref_optim.Adam, torch.optim.Adam, {"lr": 1e-3}),
        ("adam_amsgrad_wd", ref_optim.Adam, torch.optim.Adam, {"lr": 1e-2, "amsgrad": True, "weight_decay": 0.1}),
        ("adam_maximize_betas", ref_optim.Adam, torch.optim.Adam,
         {"lr": 3e-3, "betas": (0.5, 0.9), "eps": 1e-6, "maximize": True}),
        ("adamw", ref_optim.AdamW, torch.optim.AdamW, {"lr": 1e-3}),
        ("adamw_amsgrad", ref_optim.AdamW, torch.optim.AdamW, {"lr": 1e-2, "amsgrad": True, "weight_decay": 0.1}),
    ]
    return ([OptimizerCase(name, ref_optim.SGD, torch.optim.SGD, hyper, description=f"SGD {hyper}")
             for name, hyper in sgd]
            + [OptimizerCase(name, np_cls, t_cls, hyper, description=f"{t_cls.__name__} {hyper}")
               for name, np_cls, t_cls, hyper in adam])


for _opt_case in _optimizer_cases():
    register_optimizer(_opt_case)
