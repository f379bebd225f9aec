r"""Learning-rate schedules in NumPy-free Python with ``torch.optim.lr_scheduler``'s semantics.

A scheduler holds an optimizer with ``param_groups`` (any of :mod:`.optim`'s) and rewrites
each group's ``"lr"``. As in torch: construction records ``initial_lr`` in each group and
takes step 0 (``last_epoch`` goes from -1 to 0), ``step()`` is called once *after* each
optimizer step, and ``get_last_lr()`` returns the rates the last ``step()`` set.

torch computes most schedules *recursively*, from the group's current rate rather than from
a closed form; the recursive and closed forms agree in exact arithmetic but not in floating
point (CosineAnnealingLR drifts by about 1e-15 relative after hundreds of steps). These
classes use torch's recursive forms, so they match torch to the last bit, not just to rounding.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any


class LRScheduler:
    """Shared bookkeeping: ``initial_lr``, ``base_lrs``, ``last_epoch`` and the step that writes the rates."""

    def __init__(self, optimizer: Any, last_epoch: int = -1) -> None:
        self.optimizer = optimizer
        if last_epoch == -1:
            for group in optimizer.param_groups:
                group.setdefault("initial_lr", group["lr"])
        elif any("initial_lr" not in group for group in optimizer.param_groups):
            raise KeyError("param 'initial_lr' is not specified in param_groups when resuming a scheduler")
        self.base_lrs: list[float] = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = last_epoch
        self._step_count = 0
        self._is_initial = True
        self.step()
        self._is_initial = False

    def get_lr(self) -> list[float]:
        """The rates for ``self.last_epoch``, already advanced (torch's recursive form)."""
        raise NotImplementedError

    def _current(self) -> list[float]:
        return [group["lr"] for group in self.optimizer.param_groups]

    def step(self) -> None:
        """Advance the schedule one step and write the new rates into the optimizer's groups."""
        self._step_count += 1
        self.last_epoch += 1
        values = self.get_lr()
        for group, lr in zip(self.optimizer.param_groups, values, strict=True):
            group["lr"] = lr
        self._last_lr = self._current()

    def get_last_lr(self) -> list[float]:
        """The rates set by the last :meth:`step` (one per parameter group)."""
        return list(self._last_lr)

    def state_dict(self) -> dict[str, Any]:
        """Everything but the optimizer, as torch's ``state_dict``."""
        return {k: v for k, v in self.__dict__.items() if k != "optimizer"}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.__dict__.update(state_dict)


class LambdaLR(LRScheduler):
    r""":math:`\eta_t = \eta_0 \cdot \lambda(t)`, one ``lr_lambda`` for all groups or one per group."""

    def __init__(self, optimizer: Any, lr_lambda: Callable[[int], float] | Sequence[Callable[[int], float]],
                 last_epoch: int = -1) -> None:
        n = len(optimizer.param_groups)
        if isinstance(lr_lambda, list | tuple):
            if len(lr_lambda) != n:
                raise ValueError(f"Expected {n} lr_lambdas, but got {len(lr_lambda)}")
            self.lr_lambdas = list(lr_lambda)
        else:
            self.lr_lambdas = [lr_lambda] * n
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        return [base * fn(self.last_epoch) for fn, base in zip(self.lr_lambdas, self.base_lrs, strict=True)]

    def state_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("optimizer", "lr_lambdas")}


class StepLR(LRScheduler):
    r""":math:`\eta_t = \eta_{t-1} \gamma` when :math:`t` is a positive multiple of ``step_size``, else unchanged."""

    def __init__(self, optimizer: Any, step_size: int, gamma: float = 0.1, last_epoch: int = -1) -> None:
        self.step_size, self.gamma = step_size, gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        if self.last_epoch == 0 or self.last_epoch % self.step_size != 0:
            return self._current()
        return [lr * self.gamma for lr in self._current()]


class MultiStepLR(LRScheduler):
    r""":math:`\eta_t = \eta_{t-1} \gamma^k` at a milestone listed :math:`k` times, else unchanged."""

    def __init__(self, optimizer: Any, milestones: Iterable[int], gamma: float = 0.1, last_epoch: int = -1) -> None:
        self.milestones, self.gamma = Counter(milestones), gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        if self.last_epoch not in self.milestones:
            return self._current()
        return [lr * self.gamma ** self.milestones[self.last_epoch] for lr in self._current()]


class ExponentialLR(LRScheduler):
    r""":math:`\eta_t = \eta_{t-1} \gamma` (recursively: not :math:`\eta_0 \gamma^t`, which rounds differently)."""

    def __init__(self, optimizer: Any, gamma: float, last_epoch: int = -1) -> None:
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        if self._is_initial:
            return self._current()
        return [lr * self.gamma for lr in self._current()]


class CosineAnnealingLR(LRScheduler):
    r"""Cosine annealing from :math:`\eta_0` to ``eta_min`` over ``T_max`` steps, in torch's recursive form.

    .. math::
        \eta_t = \eta_{min} + (\eta_{t-1} - \eta_{min})
            \frac{1 + \cos(\pi t / T)}{1 + \cos(\pi (t - 1) / T)}

    except at :math:`t - 1 - T \equiv 0 \pmod{2T}` (the trough, where the ratio is 0/0), where
    :math:`\eta_t = \eta_{t-1} + (\eta_0 - \eta_{min})(1 - \cos(\pi / T)) / 2`. Past ``T_max``
    the rate climbs back up: the schedule is periodic with period :math:`2T`.
    """

    def __init__(self, optimizer: Any, T_max: int, eta_min: float = 0.0, last_epoch: int = -1) -> None:
        self.T_max, self.eta_min = T_max, eta_min
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        t, period, low = self.last_epoch, self.T_max, self.eta_min
        if self._is_initial:
            return self._current()
        if self._step_count == 1 and t > 0:
            return [low + (base - low) * (1 + math.cos(t * math.pi / period)) / 2 for base in self.base_lrs]
        if (t - 1 - period) % (2 * period) == 0:
            return [lr + (base - low) * (1 - math.cos(math.pi / period)) / 2
                    for base, lr in zip(self.base_lrs, self._current(), strict=True)]
        return [(1 + math.cos(math.pi * t / period)) / (1 + math.cos(math.pi * (t - 1) / period)) * (lr - low) + low
                for lr in self._current()]


class LinearLR(LRScheduler):
    r"""Linear ramp of the factor from ``start_factor`` to ``end_factor`` over ``total_iters`` steps (recursive).

    .. math::
        \eta_0 = s\,\eta, \quad \eta_t = \eta_{t-1}
            \left(1 + \frac{e - s}{T s + (t - 1)(e - s)}\right) \ (1 \le t \le T)
    """

    def __init__(self, optimizer: Any, start_factor: float = 1.0 / 3, end_factor: float = 1.0,
                 total_iters: int = 5, last_epoch: int = -1) -> None:
        if start_factor > 1.0 or start_factor <= 0:
            raise ValueError("Starting multiplicative factor expected to be greater than 0 and less or equal to 1.")
        if end_factor > 1.0 or end_factor < 0:
            raise ValueError("Ending multiplicative factor expected to be between 0 and 1.")
        self.start_factor, self.end_factor, self.total_iters = start_factor, end_factor, total_iters
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        if self.last_epoch == 0:
            return [lr * self.start_factor for lr in self._current()]
        if self._is_initial or self.last_epoch > self.total_iters:
            return self._current()
        diff = self.end_factor - self.start_factor
        factor = 1.0 + diff / (self.total_iters * self.start_factor + (self.last_epoch - 1) * diff)
        return [lr * factor for lr in self._current()]


class OneCycleLR(LRScheduler):
    r"""The one-cycle policy (learning rate only, as torch's ``cycle_momentum=False``).

    From ``max_lr / div_factor`` up to ``max_lr`` over the first ``pct_start`` of
    ``total_steps`` (phase ends at step :math:`p T - 1`), then down to
    ``initial_lr / final_div_factor`` at step :math:`T - 1`; with ``three_phase`` the descent
    first returns to ``initial_lr`` (at :math:`2 p T - 2`). Within a phase from :math:`a` to
    :math:`b` at fraction :math:`f`: :math:`b + (a - b)(1 + \cos \pi f)/2` ("cos") or
    :math:`a + (b - a) f` ("linear"). Closed form: torch's too.
    """

    def __init__(self, optimizer: Any, max_lr: float | Sequence[float], total_steps: int, pct_start: float = 0.3,
                 anneal_strategy: str = "cos", div_factor: float = 25.0, final_div_factor: float = 1e4,
                 three_phase: bool = False, last_epoch: int = -1) -> None:
        if total_steps <= 0 or not isinstance(total_steps, int):
            raise ValueError(f"Expected positive integer total_steps, but got {total_steps}")
        if not isinstance(pct_start, float) or not 0 <= pct_start <= 1:
            raise ValueError(f"Expected float between 0 and 1 pct_start, but got {pct_start}")
        if anneal_strategy not in ("cos", "linear"):
            raise ValueError(f"anneal_strategy must be one of 'cos' or 'linear', instead got {anneal_strategy}")
        self.total_steps, self.anneal_strategy = total_steps, anneal_strategy
        up_end = float(pct_start * total_steps) - 1
        if three_phase:
            self._phases = [(up_end, "initial_lr", "max_lr"),
                            (float(2 * pct_start * total_steps) - 2, "max_lr", "initial_lr"),
                            (total_steps - 1, "initial_lr", "min_lr")]
        else:
            self._phases = [(up_end, "initial_lr", "max_lr"), (total_steps - 1, "max_lr", "min_lr")]
        groups = optimizer.param_groups
        max_lrs = [float(v) for v in max_lr] if isinstance(max_lr, Sequence) else [float(max_lr)] * len(groups)
        if len(max_lrs) != len(groups):
            raise ValueError(f"expected {len(groups)} values for max_lr, got {len(max_lrs)}")
        if last_epoch == -1:
            for group, peak in zip(groups, max_lrs, strict=True):
                group["initial_lr"] = peak / div_factor
                group["max_lr"] = peak
                group["min_lr"] = group["initial_lr"] / final_div_factor
        super().__init__(optimizer, last_epoch)

    def _anneal(self, start: float, end: float, pct: float) -> float:
        if self.anneal_strategy == "cos":
            return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
        return (end - start) * pct + start

    def get_lr(self) -> list[float]:
        t = self.last_epoch
        if t > self.total_steps:
            raise ValueError(f"Tried to step {t} times. The specified number of total steps is {self.total_steps}")
        lrs = []
        for group in self.optimizer.param_groups:
            start_step = 0.0
            for i, (end_step, start_key, end_key) in enumerate(self._phases):
                if t <= end_step or i == len(self._phases) - 1:
                    pct = (t - start_step) / (end_step - start_step)
                    lrs.append(self._anneal(group[start_key], group[end_key], pct))
                    break
                start_step = end_step
        return lrs
