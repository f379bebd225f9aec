"""``check_update_rule``: a functional update rule ``update(w, dw, config) -> (next_w, config)`` against torch.optim.

Course code writes optimizers as pure functions with their state in a ``config`` dict, one per
parameter. The rule is stepped beside the torch optimizer through
:func:`~gradcheck_lab.optim.check.compare_trajectories` (same gradients, teacher forcing, the same
trajectory tolerance as :func:`~gradcheck_lab.optim.check.check_optimizer`); the config entries that
mean the same as a torch state entry (Adam's ``m``, ``v``, ``t``) are compared too.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from gradcheck_lab.core.tolerances import trajectory_tolerance
from gradcheck_lab.core.torch_state import preserved_torch_state
from gradcheck_lab.errors import OptimizerMismatch, ReferenceContractError
from gradcheck_lab.optim.check import (
    _NUMPY_DTYPES,
    OptimizerReport,
    Snapshot,
    _setup,
    _TorchSide,
    compare_trajectories,
    math_precision,
)

UpdateRule = Callable[[np.ndarray, np.ndarray, dict[str, Any]], tuple[np.ndarray, dict[str, Any]]]

STATE_KEYS: dict[str, dict[str, str]] = {
    "Adam": {"m": "exp_avg", "v": "exp_avg_sq", "t": "step"},
    "AdamW": {"m": "exp_avg", "v": "exp_avg_sq", "t": "step"},
    "Adamax": {"m": "exp_avg", "u": "exp_inf", "t": "step"},
    "NAdam": {"m": "exp_avg", "v": "exp_avg_sq", "t": "step"},
    "RAdam": {"m": "exp_avg", "v": "exp_avg_sq", "t": "step"},
    "RMSprop": {"cache": "square_avg"},
    "Adagrad": {"cache": "sum"},
}
"""The config keys course rules use for state that means exactly what torch's entry means.

SGD's ``velocity`` is left out: course code keeps ``mu * v - lr * dw`` where torch keeps
``mu * b + g``, the same trajectory in a different unit.
"""

HYPER_ALIASES: dict[str, tuple[str, ...]] = {
    "lr": ("learning_rate",),
    "eps": ("epsilon",),
    "alpha": ("decay_rate",),
    "momentum": ("momentum",),
    "weight_decay": ("weight_decay",),
}
"""torch's hyperparameter names and the config keys course rules read the same value from."""


def config_from_hyper(hyper: Mapping[str, Any], config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` with torch's hyperparameters added under the names course rules read (never overriding).

    ``lr`` becomes ``learning_rate``, ``betas`` ``beta1``/``beta2``, ``eps`` ``epsilon``, ``alpha``
    ``decay_rate``; an entry already in ``config`` wins.
    """
    extra: dict[str, Any] = {}
    for name, value in hyper.items():
        if name == "betas":
            extra["beta1"], extra["beta2"] = (float(b) for b in value)
        for alias in HYPER_ALIASES.get(name, ()):
            extra[alias] = value
    return {**extra, **copy.deepcopy(dict(config))}


class _RuleSide:
    """A functional rule as a trajectory side: one config per parameter, parameters rebound each step."""

    def __init__(self, update: UpdateRule, params: list[np.ndarray], config: Mapping[str, Any],
                 state_keys: Mapping[str, str], np_dtype: type) -> None:
        self.update, self.np_dtype, self.state_keys = update, np_dtype, dict(state_keys)
        self.params: list[np.ndarray] = [p.astype(np_dtype) for p in params]
        self.configs = [copy.deepcopy(dict(config)) for _ in params]

    def step(self, grads: list[np.ndarray]) -> None:
        for i, (w, g) in enumerate(zip(self.params, grads, strict=True)):
            result = self.update(w.copy(), g.astype(self.np_dtype), self.configs[i])
            if not isinstance(result, tuple | list) or len(result) != 2:
                raise ReferenceContractError("the update rule must return (next_w, config), got "
                                             f"{type(result).__name__}")
            next_w, config = result
            next_w = np.asarray(next_w)
            if next_w.shape != w.shape:
                raise ReferenceContractError(f"the update rule returned next_w of shape {next_w.shape} for a "
                                             f"parameter of shape {w.shape}")
            self.params[i] = next_w
            self.configs[i] = self.configs[i] if config is None else config

    def load_params(self, params: list[np.ndarray]) -> None:
        self.params = [np.asarray(p).astype(self.np_dtype) for p in params]

    def snapshot(self) -> Snapshot:
        entries = {}
        for i, config in enumerate(self.configs):
            for key, torch_key in self.state_keys.items():
                value = config.get(key) if isinstance(config, Mapping) else None
                if value is not None:
                    entries[(i, torch_key)] = np.asarray(value, dtype=np.float64)
        return [np.asarray(p, dtype=np.float64) for p in self.params], entries


def check_update_rule(
    update: UpdateRule,
    torch_optimizer_cls: type,
    hyper: Mapping[str, Any] | None = None,
    config: Mapping[str, Any] | None = None,
    shapes: Sequence[Sequence[int]] = ((4, 3),),
    steps: int = 50,
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype = "float64",
    seed: int = 0,
    *,
    state_keys: Mapping[str, str] | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    free_running: bool = False,
) -> OptimizerReport:
    """Check ``update(w, dw, config) -> (next_w, config)`` against ``torch_optimizer_cls(params, **hyper)``.

    Each parameter gets its own copy of ``config``, to which torch's ``hyper`` is added under the
    names course rules read (``learning_rate``, ``beta1``/``beta2``, ``epsilon``, ``decay_rate``;
    ``config``'s own entries win). After every step the parameters are compared, and the config
    entries ``state_keys`` maps to torch state entries (default :data:`STATE_KEYS` for the class,
    e.g. Adam's ``m``/``v``/``t`` to ``exp_avg``/``exp_avg_sq``/``step``). Raises
    :class:`~gradcheck_lab.errors.OptimizerMismatch` at the first step that differs. float16 and
    bfloat16 run twice, float32 math first (see :func:`~gradcheck_lab.optim.check.math_precision`).
    """
    __tracebackhide__ = True
    torch_dtype, torch_device, shape_list, params = _setup(shapes, steps, seed, device, dtype)
    hyper = dict(hyper or {})
    keys = STATE_KEYS.get(torch_optimizer_cls.__name__, {}) if state_keys is None else state_keys
    name = getattr(update, "__name__", "update rule")
    math_run = math_precision(torch_dtype)
    with preserved_torch_state(torch_device):
        default = torch.get_default_dtype()
        if torch_dtype == torch.float64:
            torch.set_default_dtype(torch.float64)  # torch keeps some optimizer scalars in the default dtype
        try:
            report = None
            for precision in ((math_run,) if math_run else ()) + (torch_dtype,):  # float32 math first below float32
                expected = _TorchSide(torch_optimizer_cls, params, hyper, torch_device, precision)
                actual = _RuleSide(update, params, config_from_hyper(hyper, config or {}), keys,
                                   _NUMPY_DTYPES[precision])
                report = compare_trajectories(
                    expected, actual, shape_list, steps=steps, seed=seed, device=torch_device, dtype=torch_dtype,
                    tol=trajectory_tolerance(precision, steps, rtol=rtol, atol=atol), free_running=free_running,
                    precision=precision, labels=(f"torch {torch_optimizer_cls.__name__}", f"rule {name}"))
            assert report is not None
            return report
        except OptimizerMismatch as exc:  # raised here, where pytest hides the frame: the message comes first
            raise OptimizerMismatch(str(exc), step=exc.step, param=exc.param, entry=exc.entry,
                                    report=exc.report) from None
        finally:
            torch.set_default_dtype(default)
