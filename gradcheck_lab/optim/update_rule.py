"""``check_update_rule``: a functional update rule ``update(w, dw, config) -> (next_w, config)`` against torch.optim.

Course code writes optimizers as pure functions with their state in a ``config`` dict, one per
parameter. The rule is stepped beside the torch optimizer by the one run loop
(:mod:`gradcheck_lab.optim.trajectory`: same gradients, teacher forcing, the same trajectory tolerance
as :func:`~gradcheck_lab.optim.check.check_optimizer`). Config entries are compared with torch's state
entries by an explicit pairing, ``state_names`` (CS231n's names by default), named in every mismatch.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from gradcheck_lab.core import arguments
from gradcheck_lab.core.arguments import call_style
from gradcheck_lab.core.dtypes import numpy_dtype
from gradcheck_lab.errors import InvalidInputError, ReferenceContractError
from gradcheck_lab.optim import validation
from gradcheck_lab.optim.report import Labels, OptimizerReport
from gradcheck_lab.optim.sides import TorchSide
from gradcheck_lab.optim.trajectory import Side, Snapshot, plan_trajectory, run_trajectory

UpdateRule = Callable[[np.ndarray, np.ndarray, dict[str, Any]], tuple[np.ndarray, dict[str, Any]]]

CS231N_STATE_NAMES: dict[str, dict[str, str]] = {
    "Adam": {"m": "exp_avg", "v": "exp_avg_sq", "t": "step"},
    "AdamW": {"m": "exp_avg", "v": "exp_avg_sq", "t": "step"},
    "Adamax": {"m": "exp_avg", "u": "exp_inf", "t": "step"},
    "NAdam": {"m": "exp_avg", "v": "exp_avg_sq", "t": "step"},
    "RAdam": {"m": "exp_avg", "v": "exp_avg_sq", "t": "step"},
    "RMSprop": {"cache": "square_avg"},
    "Adagrad": {"cache": "sum"},
}
"""CS231n's config keys for state that means exactly what torch's entry means: the default ``state_names``.

Other courses name the same state otherwise (deeplearning.ai's Adam keeps the first moment in ``v`` and the
second in ``s``): pass ``state_names={"v": "exp_avg", "s": "exp_avg_sq"}``. SGD's ``velocity`` is left out:
course code keeps ``mu * v - lr * dw`` where torch keeps ``mu * b + g``, the same trajectory in another unit.
"""

STATE_KEYS = CS231N_STATE_NAMES
"""The former name of :data:`CS231N_STATE_NAMES`."""

DEFAULT_NAMING = "by the CS231n naming; pass state_names= to change it"

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


def _numeric(value: Any) -> np.ndarray | None:
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError):
        return None
    return arr.astype(np.float64) if arr.dtype.kind in "fiub" else None


class RuleSide:
    """A functional rule as a trajectory side: one config per parameter, parameters rebound each step.

    Its state is every numeric config entry (under the config key), so that the run loop can pair the
    entries ``state_names`` names with torch's and say which others agree with a torch entry. A named entry
    that is a dict (a course keeping one array per parameter name) is read through when exactly one of its
    arrays has the parameter's shape; otherwise it is a :class:`ReferenceContractError` naming the key.
    """

    def __init__(self, update: UpdateRule, params: Sequence[np.ndarray], config: Mapping[str, Any],
                 state_names: Mapping[str, str], np_dtype: type[np.floating]) -> None:
        self.update, self.np_dtype, self.state_names = update, np_dtype, dict(state_names)
        self.params: list[np.ndarray] = [p.astype(np_dtype) for p in params]
        self.configs = [copy.deepcopy(dict(config)) for _ in params]
        self.inner: dict[str, str] = {}  # a named entry read through a dict: config key -> its inner key

    def entry(self, key: str) -> str:
        """How a message names config entry ``key``: ``config['v']``, or ``config['v']['dW']`` read through."""
        return f"config[{key!r}]" + (f"[{self.inner[key]!r}]" if key in self.inner else "")

    def step(self, grads: list[np.ndarray | None]) -> None:
        __tracebackhide__ = True
        for i, (w, g) in enumerate(zip(self.params, grads, strict=True)):
            if g is None:
                continue
            result = self.update(w.copy(), g.astype(self.np_dtype), self.configs[i])
            if not isinstance(result, tuple | list) or len(result) != 2:
                raise ReferenceContractError("the update rule must return (next_w, config), got "
                                             f"{type(result).__name__}")
            next_w, config = result
            next_w = np.asarray(next_w)
            if next_w.shape != w.shape:
                raise ReferenceContractError(f"the update rule returned next_w of shape {next_w.shape} for a "
                                             f"parameter of shape {w.shape}")
            if config is not None and not isinstance(config, Mapping):
                raise ReferenceContractError(f"the update rule must return (next_w, config) with config a dict, got "
                                             f"config of type {type(config).__name__}")
            self.params[i] = next_w
            self.configs[i] = self.configs[i] if config is None else dict(config)

    def load_params(self, params: list[np.ndarray]) -> None:
        self.params = [np.asarray(p).astype(self.np_dtype) for p in params]

    def _named(self, key: str, value: Any, shape: tuple[int, ...]) -> np.ndarray | None:
        """A named config entry as an array (a dict of arrays read through its one array of ``shape``)."""
        __tracebackhide__ = True
        if isinstance(value, Mapping):
            fitting = [k for k, v in value.items() if np.shape(v) == shape]
            if len(fitting) == 1:
                self.inner[key] = str(fitting[0])
                return _numeric(value[fitting[0]])
            raise ReferenceContractError(
                f"config[{key!r}] is a dict (keys {', '.join(map(repr, list(value)[:6]))}) where state_names "
                f"compares it with torch's {self.state_names[key]}, an array of the parameter's shape {shape}: "
                f"{'none' if not fitting else 'several'} of its entries have that shape. Keep one array per "
                f"parameter in config[{key!r}], or pass state_names= without {key!r}")
        arr = _numeric(value)
        if arr is None:
            raise ReferenceContractError(
                f"config[{key!r}] is a {type(value).__name__}, not an array, where state_names compares it with "
                f"torch's {self.state_names[key]}: pass state_names= without {key!r}")
        return arr

    def snapshot(self) -> Snapshot:
        __tracebackhide__ = True
        entries = {}
        for i, (config, w) in enumerate(zip(self.configs, self.params, strict=True)):
            for key, value in config.items():
                if value is None:
                    continue
                if key in self.state_names:
                    arr = self._named(key, value, w.shape)
                elif isinstance(value, Mapping):  # read through where unambiguous (a naming hint may use it)
                    fitting = [k for k, v in value.items() if np.shape(v) == w.shape]
                    arr = _numeric(value[fitting[0]]) if len(fitting) == 1 else None
                    if arr is not None:
                        self.inner[key] = str(fitting[0])
                else:
                    arr = _numeric(value)
                if arr is not None:
                    entries[(i, str(key))] = arr
        return [np.asarray(p, dtype=np.float64) for p in self.params], entries


@call_style(positional=2, legacy_positional=("hyper", "config", "shapes", "steps", "device", "dtype", "seed"),
            renamed={"torch_optimizer_cls": "torch_optimizer", "torch_cls": "torch_optimizer",
                     "state_keys": "state_names"})
def check_update_rule(
    update: UpdateRule,
    torch_optimizer: type[torch.optim.Optimizer],
    *,
    hyper: Mapping[str, Any] | None = None,
    config: Mapping[str, Any] | None = None,
    shapes: Sequence[Sequence[int]] = ((4, 3),),
    steps: int = 50,
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype = "float64",
    rtol: float | None = None,
    atol: float | None = None,
    seed: int = 0,
    state_names: Mapping[str, str] | None = None,
    free_running: bool = False,
) -> OptimizerReport:
    """Check ``update(w, dw, config) -> (next_w, config)`` against ``torch_optimizer(params, **hyper)``.

    Each parameter gets its own copy of ``config``, to which torch's ``hyper`` is added under the names
    course rules read (``learning_rate``, ``beta1``/``beta2``, ``epsilon``, ``decay_rate``; ``config``'s own
    entries win). After every step the parameters are compared, and the config entries ``state_names``
    pairs with torch's state entries. A mismatch names the pairing; where the config's state agrees with
    torch's under another pairing (a course whose ``v`` is the first moment), it says so and which
    ``state_names=`` to pass. float16 and bfloat16 run twice, float32 math first (see
    :func:`~gradcheck_lab.optim.trajectory.math_precision`).

    Args:
        update: the reference rule; it may update ``config`` in place or return a new one.
        torch_optimizer: the ``torch.optim`` class (old name: ``torch_optimizer_cls=``).
        hyper: torch's hyperparameters (each a name ``torch_optimizer`` takes).
        config: the rule's initial config (its own hyperparameter names win over ``hyper``'s aliases).
        shapes: one shape per parameter; each is stepped with its own config.
        steps, device, dtype, rtol, atol, seed: as for :func:`~gradcheck_lab.optim.check.check_optimizer`.
        state_names: config key -> torch state entry, e.g. ``{"m": "exp_avg", "v": "exp_avg_sq", "t": "step"}``;
            None: CS231n's names for the class (:data:`CS231N_STATE_NAMES`); ``{}``: parameters only
            (old name: ``state_keys=``).
        free_running: compare the two trajectories as they are, without teacher forcing.

    Returns:
        The :class:`~gradcheck_lab.optim.report.OptimizerReport` (verdict ``"passed"``); ``state_names``
        there says which config entry each torch entry was compared with.

    Raises:
        OptimizerMismatch: at the first step that differs, naming the step, the parameter, the entry and the
            pairing of config keys with torch's entries.
        ReferenceContractError: the rule returns something other than ``(next_w, config)``, or a paired
            config entry is not an array of the parameter's shape (its key named).
        InvalidInputError: an argument the check cannot use (named, with the fix), before anything runs.
    """
    __tracebackhide__ = True
    rule = arguments.callable_argument("update", update, "an update rule update(w, dw, config) -> (next_w, config)")
    torch_cls = validation.torch_optimizer_class("torch_optimizer", torch_optimizer)
    torch_hyper = validation.hyperparameters("hyper", hyper, torch_cls)
    validation.accepted_by_torch("hyper", torch_hyper, torch_cls)
    start = config_from_hyper(torch_hyper, arguments.mapping("config", config))
    trajectory = plan_trajectory(shapes, steps=steps, seed=seed, device=device, dtype=dtype, rtol=rtol, atol=atol)
    if state_names is None:
        names, naming = CS231N_STATE_NAMES.get(torch_cls.__name__, {}), DEFAULT_NAMING
    else:
        names, naming = _state_names(state_names), "by state_names="
    sides: list[RuleSide] = []

    def make_sides(precision: torch.dtype) -> tuple[Side, Side]:
        __tracebackhide__ = True
        sides.append(RuleSide(rule, trajectory.params, start, names, numpy_dtype(precision)))
        return TorchSide(torch_cls, trajectory.params, torch_hyper, trajectory.device, precision), sides[-1]

    labels = Labels(f"rule {getattr(rule, '__name__', 'update')}", f"torch {torch_cls.__name__}",
                    entry=lambda key: sides[-1].entry(key), naming=naming)
    return run_trajectory(trajectory, make_sides, labels, state_names=names, free_running=free_running)


def _state_names(value: Any) -> dict[str, str]:
    __tracebackhide__ = True
    names = arguments.mapping("state_names", value)
    for key, torch_name in names.items():
        if not isinstance(torch_name, str):
            raise InvalidInputError(f"state_names maps a config key to the name of torch's state entry "
                                    f"(such as 'exp_avg'), got {key!r}: {torch_name!r}")
    return names
