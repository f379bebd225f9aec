r"""SGD, Adam, AdamW, RMSprop, Adagrad, Adadelta, Adamax, NAdam and RAdam in NumPy with ``torch.optim``'s semantics.

Each optimizer is explicit state plus an update kernel (all nine in :mod:`.optim_kernels`; ``sgd_update_`` and
``adam_update_`` are also importable from here) that can be tested on a single step in isolation.
``params`` is a list of floating NumPy arrays, or a list of parameter groups as torch takes
them (``[{"params": [...], "lr": ...}, ...]``, options over the constructor's defaults);
``step(grads)`` takes one gradient per parameter, in the order of the groups, skips a
parameter whose gradient is None, and updates the arrays in place, keeping their dtype. ``state_dict()`` is laid
out like torch's (``{"state": {index: {...}}, "param_groups": [{..., "params": [...]}]}``),
and ``load_state_dict`` accepts either side's dict (CPU tensors convert through
``np.asarray``), so a run can be resumed on either side.

The arithmetic follows torch's order of operations (``lerp``, ``addcmul``, ``addcdiv``), so
float32 trajectories agree to rounding, not just to the formula.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from . import optim_kernels as rules
from .optim_blocks import BlockedUpdate
from .optim_kernels import adam_update_, sgd_update_

State = dict[str, Any]


def _scalar_dtype(param: np.ndarray) -> type:
    """The dtype torch keeps per-parameter scalars in (NAdam's ``mu_product``) when the default dtype
    matches float64 parameters: float64 for float64 parameters, float32 otherwise."""
    return np.float64 if param.dtype == np.float64 else np.float32


class Optimizer:
    """Shared bookkeeping: parameter groups, per-parameter state, work buffers and torch-style state dicts.

    ``state`` maps a parameter's position (counted across the groups, as torch's state dict
    numbers them) to its entries; ``params`` is the flat list of all parameters.
    """

    def __init__(self, params: Iterable[np.ndarray] | Iterable[dict[str, Any]], defaults: dict[str, Any]) -> None:
        groups = list(params)
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        self.defaults = dict(defaults)
        self.param_groups: list[dict[str, Any]] = []
        self.params: list[np.ndarray] = []
        for group in groups:
            self.add_param_group(group)  # type: ignore[arg-type]
        self.state: dict[int, State] = {}
        self._blocked = BlockedUpdate()  # cache-sized blocks over threads, scratch kept between steps

    def add_param_group(self, group: dict[str, Any]) -> None:
        """Add a group: its ``params`` and options; missing options take the constructor's defaults."""
        if not isinstance(group, dict) or "params" not in group:
            raise TypeError("a parameter group is a dict with a 'params' entry")
        params = group["params"]
        params = [params] if isinstance(params, np.ndarray) else list(params)
        for p in params:
            i = len(self.params)
            if not isinstance(p, np.ndarray) or not np.issubdtype(p.dtype, np.floating):
                raise TypeError(f"parameter {i} must be a floating NumPy array, got {type(p).__name__}")
            if not p.flags.writeable:
                raise ValueError(f"parameter {i} is read-only; step() updates parameters in place")
            if any(p is q for q in self.params):
                raise ValueError(f"parameter {i} appears twice")
            self.params.append(p)
        unknown = set(group) - set(self.defaults) - {"params"}
        if unknown:
            raise TypeError(f"unknown option(s) for {type(self).__name__}: {sorted(unknown)}")
        full = {**self.defaults, **{k: v for k, v in group.items() if k != "params"}}
        if "betas" in full:
            full["betas"] = tuple(full["betas"])
        self._validate(full)
        self.param_groups.append({"params": params, **full})

    def _validate(self, group: dict[str, Any]) -> None:
        """Reject the hyperparameters torch.optim rejects (subclasses extend)."""
        _require_non_negative(**{k: group[k] for k in ("lr", "eps", "weight_decay", "momentum") if k in group})
        for i, beta in enumerate(group.get("betas", ())):
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"Invalid beta parameter at index {i}: {beta}")

    def _indexed(
        self, grads: Sequence[np.ndarray | None],
    ) -> Iterator[tuple[int, np.ndarray, np.ndarray, dict[str, Any]]]:
        """``(position, param, grad, group)`` for every parameter with a gradient, group by group."""
        grads = list(grads)
        if len(grads) != len(self.params):
            raise ValueError(f"step() got {len(grads)} gradients for {len(self.params)} parameters")
        i = 0
        for group in self.param_groups:
            for p in group["params"]:
                g = grads[i]
                if g is not None:
                    g = np.asarray(g, dtype=p.dtype)
                    if g.shape != p.shape:
                        raise ValueError(f"gradient {i} has shape {g.shape}, parameter has {p.shape}")
                    yield i, p, g, group
                i += 1

    def state_dict(self) -> dict[str, Any]:
        """Copy of the state, laid out like ``torch.optim.Optimizer.state_dict()``."""
        state = {
            i: {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in s.items()}
            for i, s in self.state.items()
        }
        groups, start = [], 0
        for group in self.param_groups:
            n = len(group["params"])
            options = {k: v for k, v in group.items() if k != "params"}
            groups.append({**options, "params": list(range(start, start + n))})
            start += n
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state dict from this class or from the matching ``torch.optim`` class (groups included)."""
        groups = state_dict["param_groups"]
        sizes = [len(group["params"]) for group in self.param_groups]
        if [len(saved["params"]) for saved in groups] != sizes:
            raise ValueError("state dict's parameter groups do not match this optimizer's")
        for saved, group in zip(groups, self.param_groups, strict=True):
            for key, value in saved.items():
                if key not in ("params", "param_names"):
                    group[key] = tuple(value) if isinstance(value, list | tuple) else value
        ids = [pid for saved in groups for pid in saved["params"]]
        self.state = {}
        for i, saved_id in enumerate(ids):
            saved = state_dict["state"].get(saved_id)
            if not saved:
                continue
            param = self.params[i]
            entries: State = {}
            for key, value in saved.items():
                if value is None:
                    entries[key] = None
                elif key == "step":
                    entries[key] = float(np.asarray(value))
                elif key == "mu_product":
                    entries[key] = np.array(float(np.asarray(value)), dtype=_scalar_dtype(param))
                else:
                    entries[key] = np.array(np.asarray(value), dtype=param.dtype, copy=True)
            self.state[i] = entries

    def step(self, grads: Sequence[np.ndarray | None]) -> None:
        """Apply one step: one gradient per parameter (None skips that parameter), same shapes."""
        for i, param, grad, group in self._indexed(grads):
            self._update(i, param, grad, group)

    def _update(self, i: int, param: np.ndarray, grad: np.ndarray, group: dict[str, Any]) -> None:
        raise NotImplementedError


def _require_non_negative(**hyper: float) -> None:
    """Reject negative hyperparameters the way torch.optim does."""
    for name, value in hyper.items():
        if value < 0:
            raise ValueError(f"Invalid {name} value: {value}")


ParamsT = Iterable[np.ndarray] | Iterable[dict[str, Any]]


class SGD(Optimizer):
    """Stochastic gradient descent with torch.optim.SGD's semantics (see :func:`sgd_update_`)."""

    def __init__(self, params: ParamsT, lr: float = 1e-3, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False, *, maximize: bool = False) -> None:
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                                      nesterov=nesterov, maximize=maximize))

    def _validate(self, group: dict[str, Any]) -> None:
        super()._validate(group)
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")

    def _update(self, i: int, param: np.ndarray, grad: np.ndarray, group: dict[str, Any]) -> None:
        hyper = {k: group[k] for k in ("lr", "momentum", "dampening", "weight_decay", "nesterov", "maximize")}
        buf = self.state.get(i, {}).get("momentum_buffer")
        if buf is None:
            buf = sgd_update_(param, grad, None, **hyper)
        else:
            self._blocked.run(lambda p, g, b, scratch: sgd_update_(p, g, b, **hyper, scratch=scratch),
                              [param, grad, buf], 1)
        if group["momentum"] != 0:
            self.state[i] = {"momentum_buffer": buf}


class Adam(Optimizer):
    """Adam with torch.optim.Adam's semantics: L2 weight decay added to the gradient, unless
    ``decoupled_weight_decay`` (then it is AdamW)."""

    def __init__(self, params: ParamsT, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, amsgrad: bool = False, *,
                 maximize: bool = False, decoupled_weight_decay: bool = False) -> None:
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                                      maximize=maximize, decoupled_weight_decay=decoupled_weight_decay))

    def _update(self, i: int, param: np.ndarray, grad: np.ndarray, group: dict[str, Any]) -> None:
        state = self.state.get(i)
        if state is None:
            state = {"step": 0.0, "exp_avg": np.zeros_like(param), "exp_avg_sq": np.zeros_like(param)}
            if group["amsgrad"]:
                state["max_exp_avg_sq"] = np.zeros_like(param)
            self.state[i] = state
        state["step"] += 1
        beta1, beta2 = group["betas"]
        arrays = [param, grad, state["exp_avg"], state["exp_avg_sq"], state.get("max_exp_avg_sq")]
        hyper = dict(step=int(state["step"]), lr=group["lr"], beta1=beta1, beta2=beta2, eps=group["eps"],
                     weight_decay=group["weight_decay"], decoupled_weight_decay=group["decoupled_weight_decay"],
                     maximize=group["maximize"])
        self._blocked.run(
            lambda p, g, m, v, v_max, scratch: adam_update_(p, g, m, v, v_max, **hyper, scratch=scratch), arrays, 1)


class AdamW(Adam):
    r"""AdamW: Adam with decoupled weight decay :math:`\theta \leftarrow (1 - \eta\lambda)\theta`
    applied to the parameters before the moment update (default :math:`\lambda` = 1e-2)."""

    def __init__(self, params: ParamsT, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2, amsgrad: bool = False, *,
                 maximize: bool = False) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize,
                         decoupled_weight_decay=True)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """As :meth:`Optimizer.load_state_dict`; the decay stays decoupled, as in torch's AdamW."""
        super().load_state_dict(state_dict)
        for group in self.param_groups:
            group["decoupled_weight_decay"] = True


class RMSprop(Optimizer):
    """RMSprop with torch.optim.RMSprop's semantics (see :func:`.optim_kernels.rmsprop_update_`)."""

    def __init__(self, params: ParamsT, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0.0, momentum: float = 0.0, centered: bool = False,
                 maximize: bool = False) -> None:
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum,
                                      centered=centered, maximize=maximize))

    def _validate(self, group: dict[str, Any]) -> None:
        super()._validate(group)
        _require_non_negative(alpha=group["alpha"])

    def _update(self, i: int, param: np.ndarray, grad: np.ndarray, group: dict[str, Any]) -> None:
        state = self.state.get(i)
        if state is None:
            state = {"step": 0.0, "square_avg": np.zeros_like(param)}
            if group["momentum"] > 0:
                state["momentum_buffer"] = np.zeros_like(param)
            if group["centered"]:
                state["grad_avg"] = np.zeros_like(param)
            self.state[i] = state
        state["step"] += 1
        arrays = [param, grad, state["square_avg"], state.get("grad_avg") if group["centered"] else None,
                  state.get("momentum_buffer") if group["momentum"] > 0 else None]
        self._blocked.run(rules.rmsprop_update_, arrays, 2,
                          lr=group["lr"], alpha=group["alpha"], eps=group["eps"], weight_decay=group["weight_decay"],
                          momentum=group["momentum"], maximize=group["maximize"])


class Adagrad(Optimizer):
    """Adagrad with torch.optim.Adagrad's semantics; its state exists from construction, as in torch.

    As in torch, every accumulator starts at the *constructor's* ``initial_accumulator_value``:
    a per-group value is stored in the group but not used.
    """

    def __init__(self, params: ParamsT, lr: float = 1e-2, lr_decay: float = 0.0, weight_decay: float = 0.0,
                 initial_accumulator_value: float = 0.0, eps: float = 1e-10, maximize: bool = False) -> None:
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                                      initial_accumulator_value=initial_accumulator_value, eps=eps,
                                      maximize=maximize))
        for i, p in enumerate(self.params):
            self.state[i] = {"step": 0.0, "sum": np.full_like(p, initial_accumulator_value)}

    def _validate(self, group: dict[str, Any]) -> None:
        super()._validate(group)
        _require_non_negative(lr_decay=group["lr_decay"],
                              initial_accumulator_value=group["initial_accumulator_value"])

    def _update(self, i: int, param: np.ndarray, grad: np.ndarray, group: dict[str, Any]) -> None:
        state = self.state.setdefault(
            i, {"step": 0.0, "sum": np.full_like(param, self.defaults["initial_accumulator_value"])})
        state["step"] += 1
        clr = group["lr"] / (1 + (state["step"] - 1) * group["lr_decay"])
        self._blocked.run(rules.adagrad_update_, [param, grad, state["sum"]], 2,
                          clr=clr, eps=group["eps"], weight_decay=group["weight_decay"], maximize=group["maximize"])


class Adadelta(Optimizer):
    """Adadelta with torch.optim.Adadelta's semantics (see :func:`.optim_kernels.adadelta_update_`)."""

    def __init__(self, params: ParamsT, lr: float = 1.0, rho: float = 0.9, eps: float = 1e-6,
                 weight_decay: float = 0.0, maximize: bool = False) -> None:
        super().__init__(params, dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay, maximize=maximize))

    def _validate(self, group: dict[str, Any]) -> None:
        super()._validate(group)
        if not 0.0 <= group["rho"] <= 1.0:
            raise ValueError(f"Invalid rho value: {group['rho']}")

    def _update(self, i: int, param: np.ndarray, grad: np.ndarray, group: dict[str, Any]) -> None:
        state = self.state.get(i)
        if state is None:
            state = {"step": 0.0, "square_avg": np.zeros_like(param), "acc_delta": np.zeros_like(param)}
            self.state[i] = state
        state["step"] += 1
        self._blocked.run(rules.adadelta_update_, [param, grad, state["square_avg"], state["acc_delta"]], 3,
                          lr=group["lr"], rho=group["rho"], eps=group["eps"], weight_decay=group["weight_decay"],
                          maximize=group["maximize"])


class Adamax(Optimizer):
    """Adamax with torch.optim.Adamax's semantics (see :func:`.optim_kernels.adamax_update_`)."""

    def __init__(self, params: ParamsT, lr: float = 2e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, maximize: bool = False) -> None:
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                                      maximize=maximize))

    def _update(self, i: int, param: np.ndarray, grad: np.ndarray, group: dict[str, Any]) -> None:
        state = self.state.get(i)
        if state is None:
            state = {"step": 0.0, "exp_avg": np.zeros_like(param), "exp_inf": np.zeros_like(param)}
            self.state[i] = state
        state["step"] += 1
        beta1, beta2 = group["betas"]
        clr = group["lr"] / (1 - beta1 ** state["step"])
        self._blocked.run(rules.adamax_update_, [param, grad, state["exp_avg"], state["exp_inf"]], 2,
                          clr=clr, beta1=beta1, beta2=beta2, eps=group["eps"], weight_decay=group["weight_decay"],
                          maximize=group["maximize"])


class NAdam(Optimizer):
    """NAdam with torch.optim.NAdam's semantics, ``mu_product`` kept as torch keeps it (see :func:`_scalar_dtype`)."""

    def __init__(self, params: ParamsT, lr: float = 2e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, momentum_decay: float = 4e-3,
                 decoupled_weight_decay: bool = False, *, maximize: bool = False) -> None:
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                                      momentum_decay=momentum_decay, decoupled_weight_decay=decoupled_weight_decay,
                                      maximize=maximize))

    def _validate(self, group: dict[str, Any]) -> None:
        super()._validate(group)
        _require_non_negative(momentum_decay=group["momentum_decay"])

    def _update(self, i: int, param: np.ndarray, grad: np.ndarray, group: dict[str, Any]) -> None:
        state = self.state.get(i)
        if state is None:
            state = {"step": 0.0, "mu_product": np.array(1.0, dtype=_scalar_dtype(param)),
                     "exp_avg": np.zeros_like(param), "exp_avg_sq": np.zeros_like(param)}
            self.state[i] = state
        state["step"] += 1
        step, lr = state["step"], group["lr"]
        beta1, beta2 = group["betas"]
        mu = rules.nadam_momentum(beta1, step, group["momentum_decay"])
        mu_next = rules.nadam_momentum(beta1, step + 1, group["momentum_decay"])
        mu_product = state["mu_product"]
        mu_product *= mu  # in its own dtype, as torch's tensor
        product = float(mu_product)
        grad_coef = -lr * (1.0 - mu) / (1.0 - product)
        avg_coef = (-lr * mu_next) / (1.0 - product * mu_next)
        self._blocked.run(rules.nadam_update_, [param, grad, state["exp_avg"], state["exp_avg_sq"]], 2,
                          grad_coef=grad_coef, avg_coef=avg_coef, bias_correction2=1 - beta2**step, lr=lr,
                          beta1=beta1, beta2=beta2, eps=group["eps"], weight_decay=group["weight_decay"],
                          decoupled_weight_decay=group["decoupled_weight_decay"], maximize=group["maximize"])


class RAdam(Optimizer):
    """RAdam with torch.optim.RAdam's semantics (see :func:`.optim_kernels.radam_update_`)."""

    def __init__(self, params: ParamsT, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, decoupled_weight_decay: bool = False, *,
                 maximize: bool = False) -> None:
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                                      decoupled_weight_decay=decoupled_weight_decay, maximize=maximize))

    def _update(self, i: int, param: np.ndarray, grad: np.ndarray, group: dict[str, Any]) -> None:
        state = self.state.get(i)
        if state is None:
            state = {"step": 0.0, "exp_avg": np.zeros_like(param), "exp_avg_sq": np.zeros_like(param)}
            self.state[i] = state
        state["step"] += 1
        beta1, beta2 = group["betas"]
        self._blocked.run(rules.radam_update_, [param, grad, state["exp_avg"], state["exp_avg_sq"]], 2,
                          step=state["step"], lr=group["lr"], beta1=beta1, beta2=beta2, eps=group["eps"],
                          weight_decay=group["weight_decay"], decoupled_weight_decay=group["decoupled_weight_decay"],
                          maximize=group["maximize"])
