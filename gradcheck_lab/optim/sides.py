"""The sides a trajectory compares: a torch.optim optimizer and a NumPy optimizer class with torch's layout.

(A course update rule is the third kind: :class:`~gradcheck_lab.optim.update_rule.RuleSide`.)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from gradcheck_lab.core.devices import resolve_device
from gradcheck_lab.core.dtypes import float64_array, resolve_dtype, tensor_copy
from gradcheck_lab.optim.trajectory import Snapshot

Groups = Sequence[Mapping[str, Any]] | None
"""Parameter groups by index, ``[{"params": [0, 1], "lr": 0.1}, {"params": [2]}]``: every parameter, in order."""


@dataclass(frozen=True)
class Schedule:
    """A learning-rate scheduler for each side: ``numpy_cls(optimizer, **kwargs)`` and
    ``torch_cls(optimizer, **kwargs, **torch_kwargs)`` (``torch_kwargs``: e.g. ``cycle_momentum=False``)."""

    numpy_cls: Callable[..., Any]
    torch_cls: Callable[..., Any]
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    torch_kwargs: Mapping[str, Any] = field(default_factory=dict)


def _grouped(params: list[Any], groups: Groups) -> list[Any]:
    """The constructor's first argument: the parameters themselves, or torch-style groups of them."""
    if groups is None:
        return params
    return [{**{k: v for k, v in g.items() if k != "params"}, "params": [params[i] for i in g["params"]]}
            for g in groups]


def _group_starts(groups: Groups) -> list[int]:
    """The index of each group's first parameter (one group of all parameters without groups)."""
    if groups is None:
        return [0]
    return [int(g["params"][0]) for g in groups]


def _to_float64(value: Any) -> np.ndarray | None:
    if value is None:
        return None
    if isinstance(value, torch.Tensor):
        return float64_array(value)
    arr = np.asarray(value)
    return arr.astype(np.float64) if arr.dtype.kind in "fiub" else None


def _state_entries(optimizer: Any, groups: Groups) -> dict[tuple[int, str], np.ndarray] | None:
    """``{(param index, entry): float64 array}`` from a torch-layout state dict, with each group's learning
    rate as entry ``"lr"`` of its first parameter; None without a state dict."""
    state_dict_fn = getattr(optimizer, "state_dict", None)
    if not callable(state_dict_fn):
        return None
    sd = state_dict_fn()
    if not isinstance(sd, Mapping) or not isinstance(sd.get("state"), Mapping):
        return None
    param_groups = sd.get("param_groups") or []
    ids = [pid for g in param_groups if isinstance(g, Mapping) for pid in g.get("params", [])]
    entries = {}
    for key, per_param in sd["state"].items():
        index = ids.index(key) if ids and key in ids else key
        if not isinstance(per_param, Mapping):
            continue
        for name, value in per_param.items():
            arr = _to_float64(value)
            if arr is not None:
                entries[(int(index), str(name))] = arr
    held = getattr(optimizer, "param_groups", None)
    if isinstance(held, list | tuple):
        entries.update({(start, "lr"): np.asarray(float(g["lr"]))
                        for start, g in zip(_group_starts(groups), held, strict=False) if isinstance(g, Mapping)})
    return entries


class NumpySide:
    """A NumPy optimizer class with torch's constructor, ``step(grads)`` and (optionally) ``state_dict()``."""

    def __init__(self, cls: Callable[..., Any], params: Sequence[np.ndarray], hyper: Mapping[str, Any],
                 np_dtype: type[np.floating], groups: Groups = None, schedule: Schedule | None = None) -> None:
        __tracebackhide__ = True
        self.params: list[np.ndarray] = [p.astype(np_dtype) for p in params]
        self.np_dtype = np_dtype
        self.groups = groups
        self.optimizer = cls(_grouped(self.params, groups), **hyper)
        self.scheduler = schedule.numpy_cls(self.optimizer, **schedule.kwargs) if schedule else None

    def step(self, grads: list[np.ndarray | None]) -> None:
        __tracebackhide__ = True
        self.optimizer.step([None if g is None else g.astype(self.np_dtype) for g in grads])
        if self.scheduler is not None:
            self.scheduler.step()

    def current(self) -> list[np.ndarray]:
        """The parameters as the optimizer holds them now.

        The contract is in-place updates of the arrays it was given; an optimizer that instead
        rebinds the entries of its own ``params`` list (``self.params[i] = p - lr * g``) is read
        from that list.
        """
        held = getattr(self.optimizer, "params", None)
        if not isinstance(held, list | tuple) or len(held) != len(self.params):
            return self.params
        same_shapes = all(isinstance(h, np.ndarray) and h.shape == p.shape
                          for h, p in zip(held, self.params, strict=True))
        return list(held) if same_shapes else self.params

    def load_params(self, params: list[np.ndarray]) -> None:
        for p, value in zip(self.current(), params, strict=True):
            p[...] = value

    def snapshot(self) -> Snapshot:
        __tracebackhide__ = True
        return [np.asarray(p, dtype=np.float64) for p in self.current()], _state_entries(self.optimizer, self.groups)

    def save_state(self) -> dict[str, object]:
        return dict(self.optimizer.state_dict())

    def load_state(self, state_dict: dict[str, object], dtype: torch.dtype, device: torch.device) -> None:
        self.optimizer.load_state_dict(state_dict)


class TorchSide:
    """A ``torch.optim`` optimizer over tensors made from the parameters, in ``dtype`` on ``device``."""

    def __init__(self, cls: Callable[..., Any], params: Sequence[np.ndarray], hyper: Mapping[str, Any],
                 device: torch.device, dtype: torch.dtype, groups: Groups = None,
                 schedule: Schedule | None = None) -> None:
        self.device, self.dtype, self.groups = device, dtype, groups
        self.params = [torch.tensor(p, dtype=dtype, device=device, requires_grad=True) for p in params]
        self.optimizer = cls(_grouped(self.params, groups), **hyper)
        self.scheduler = (schedule.torch_cls(self.optimizer, **schedule.kwargs, **schedule.torch_kwargs)
                          if schedule else None)
        self._snapshot: Snapshot | None = None  # until the next step or load: a trajectory reads it twice a step

    def step(self, grads: list[np.ndarray | None]) -> None:
        __tracebackhide__ = True
        self._snapshot = None
        for p, g in zip(self.params, grads, strict=True):
            # (a copy of its own: an optimizer may work on its gradient in place, and the other side reads g)
            p.grad = None if g is None else tensor_copy(g, self.device, self.dtype)
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()

    def load_params(self, params: list[np.ndarray]) -> None:
        self._snapshot = None
        with torch.no_grad():
            for p, value in zip(self.params, params, strict=True):
                p.copy_(tensor_copy(value, self.device, self.dtype))

    def snapshot(self) -> Snapshot:
        """The parameters and state entries in float64, read once between steps (valid until the next one)."""
        if self._snapshot is None:
            self._snapshot = ([float64_array(p) for p in self.params], _state_entries(self.optimizer, self.groups))
        return self._snapshot

    def save_state(self) -> dict[str, object]:
        """torch's state dict with tensors as NumPy arrays (bfloat16 widened to float32)."""
        sd = self.optimizer.state_dict()
        state = {key: {name: _to_numpy(value) for name, value in entries.items()}
                 for key, entries in sd["state"].items()}
        return {"state": state, "param_groups": [dict(g) for g in sd["param_groups"]]}

    def load_state(self, state_dict: dict[str, object], dtype: torch.dtype, device: torch.device) -> None:
        self._snapshot = None
        self.optimizer.load_state_dict(torch_state_dict(state_dict, device=device, dtype=dtype))


RECORD_LIMIT = 1 << 22
"""Elements (parameters and state entries, over all steps) up to which :class:`Recorded` keeps a trajectory."""


class Recorded:
    """A side stepped once and played back: the first run records the snapshot after each step, later runs
    (against other partners, with the same gradients) read them instead of stepping it again.

    For a teacher-forced side (the one whose parameters the other loads each step): its trajectory does not
    depend on its partner. A recording over :data:`RECORD_LIMIT` elements is dropped (``replayable`` false:
    the caller steps a fresh side instead).
    """

    def __init__(self, side: TorchSide) -> None:
        self.side: TorchSide | None = side
        self.dtype = side.dtype
        self.snapshots: list[Snapshot] = []
        self.recorded = 0
        self.steps = 0

    @property
    def replayable(self) -> bool:
        return self.side is None and self.recorded <= RECORD_LIMIT

    def replay(self) -> Recorded:
        """Play the recording back from its first step."""
        self.steps = 0
        return self

    def step(self, grads: list[np.ndarray | None]) -> None:
        __tracebackhide__ = True
        self.steps += 1
        if self.side is not None:
            self.side.step(grads)

    def load_params(self, params: list[np.ndarray]) -> None:
        raise TypeError("a recorded side is teacher-forced: nothing loads parameters into it")

    def snapshot(self) -> Snapshot:
        if self.side is None:
            if not 0 < self.steps <= len(self.snapshots):
                raise IndexError(f"step {self.steps} of a recording of {len(self.snapshots)} steps")
            return self.snapshots[self.steps - 1]
        params, state = self.side.snapshot()
        if len(self.snapshots) < self.steps and self.recorded <= RECORD_LIMIT:  # copies: the live ones change
            copied = ([p.copy() for p in params], None if state is None else {k: v.copy() for k, v in state.items()})
            self.snapshots.append(copied)
            self.recorded += sum(p.size for p in params) + sum(v.size for v in (state or {}).values())
        return params, state

    def finish(self) -> None:
        """End the recording run: from now on the side is played back (if the recording was kept whole)."""
        if self.recorded > RECORD_LIMIT:
            self.snapshots = []
        self.side = None


def _to_numpy(value: Any) -> Any:
    if not isinstance(value, torch.Tensor):
        return value
    value = value.detach().cpu()
    return (value.float() if value.dtype == torch.bfloat16 else value).numpy().copy()


def torch_state_dict(state_dict: Mapping[str, Any], *, device: str | torch.device = "cpu",
                     dtype: str | torch.dtype = "float64") -> dict[str, Any]:
    """A NumPy optimizer's state dict with arrays turned into tensors, ready for ``torch.optim...load_state_dict``.

    ``step`` becomes a float32 CPU scalar tensor, as torch stores it.
    """
    torch_dtype, torch_device = resolve_dtype(dtype), resolve_device(device)
    state = {}
    for key, entries in state_dict["state"].items():
        state[key] = {
            name: (torch.tensor(float(np.asarray(value)), dtype=torch.float32) if name == "step"
                   else None if value is None
                   else torch.tensor(np.asarray(value), dtype=torch_dtype, device=torch_device))
            for name, value in entries.items()
        }
    return {"state": state, "param_groups": [dict(g) for g in state_dict["param_groups"]]}
