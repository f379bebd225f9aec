"""``check_optimizer``: a NumPy optimizer against its torch.optim class, step by step.

Both sides start from the same parameters and are fed the same gradients; after every
step the parameters, and every state entry both sides name, are compared.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from gradcheck_lab.core.comparison import Comparison, compare, finite_or_zero
from gradcheck_lab.core.devices import resolve_device
from gradcheck_lab.core.dtypes import dtype_name, resolve_dtype, round_to_dtype
from gradcheck_lab.core.report import comparison_lines
from gradcheck_lab.core.tolerances import Tolerance, trajectory_tolerance
from gradcheck_lab.core.torch_state import preserved_torch_state
from gradcheck_lab.errors import InvalidInputError, OptimizerMismatch

_MAGNITUDES = (1e-8, 1e-7, 1e-6, 1e-4, 1e-2, 1.0, 1e1, 1e2)
"""Gradient element scales, down to where Adam's eps dominates sqrt(v)."""

_NUMPY_DTYPES = {torch.float64: np.float64, torch.float32: np.float32,
                 torch.float16: np.float16, torch.bfloat16: np.float32}

Snapshot = tuple[list[np.ndarray], dict[tuple[int, str], np.ndarray] | None]


def gradient_sequence(shapes: Sequence[tuple[int, ...]], steps: int, seed: int = 0,
                      largest: float = _MAGNITUDES[-1]) -> Iterator[list[np.ndarray]]:
    """Gradients that exercise the regimes where optimizer bugs hide, as float64 arrays.

    Each element keeps one scale from 1e-8 to 1e2 (at most ``largest``) for the whole run (so
    the second moment of small elements stays near eps**2), some elements flip sign every step,
    about one in ten is zero at any step, and every fifth step one parameter gets an all-zero gradient.
    """
    rng = np.random.default_rng(seed)
    scales, flips = [], []
    for shape in shapes:
        size = math.prod(shape)
        levels = np.resize(np.minimum(np.array(_MAGNITUDES), largest), size)
        scales.append(rng.permutation(levels).reshape(shape))
        flips.append(rng.random(shape) < 0.5)
    for step in range(steps):
        grads = []
        for k, shape in enumerate(shapes):
            g = (np.abs(rng.standard_normal(shape)) + 0.1) * scales[k]
            g = np.where(flips[k] & (step % 2 == 1), -g, g)
            g = np.where(rng.random(shape) < 0.1, 0.0, g)
            if step % 5 == 4 and k == step % len(shapes):
                g = np.zeros(shape)
            grads.append(g)
        yield grads


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


def _group_starts(groups: Groups, n: int) -> list[int]:
    """The index of each group's first parameter (one group of all parameters without groups)."""
    if groups is None:
        return [0]
    return [int(g["params"][0]) for g in groups]


class _NumpySide:
    def __init__(self, cls: type, params: list[np.ndarray], hyper: Mapping[str, Any], np_dtype: type,
                 groups: Groups = None, schedule: Schedule | None = None) -> None:
        self.params: list[np.ndarray] = [p.astype(np_dtype) for p in params]
        self.np_dtype = np_dtype
        self.groups = groups
        self.optimizer = cls(_grouped(self.params, groups), **hyper)
        self.scheduler = schedule.numpy_cls(self.optimizer, **schedule.kwargs) if schedule else None

    def step(self, grads: list[np.ndarray | None]) -> None:
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
        state = _state_entries(self.optimizer)
        if state is not None:
            state.update(_learning_rates(self.optimizer, self.groups, len(self.params)))
        return [np.asarray(p, dtype=np.float64) for p in self.current()], state

    def save_state(self) -> dict[str, Any]:
        return dict(self.optimizer.state_dict())

    def load_state(self, state_dict: dict[str, Any], dtype: torch.dtype, device: torch.device) -> None:
        self.optimizer.load_state_dict(state_dict)


class _TorchSide:
    def __init__(self, cls: type, params: list[np.ndarray], hyper: Mapping[str, Any],
                 device: torch.device, dtype: torch.dtype, groups: Groups = None,
                 schedule: Schedule | None = None) -> None:
        self.device, self.dtype, self.groups = device, dtype, groups
        self.params = [torch.tensor(p, dtype=dtype, device=device, requires_grad=True) for p in params]
        self.optimizer = cls(_grouped(self.params, groups), **hyper)
        self.scheduler = (schedule.torch_cls(self.optimizer, **schedule.kwargs, **schedule.torch_kwargs)
                          if schedule else None)

    def step(self, grads: list[np.ndarray | None]) -> None:
        for p, g in zip(self.params, grads, strict=True):
            p.grad = None if g is None else torch.tensor(g, dtype=self.dtype, device=self.device)
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()

    def load_params(self, params: list[np.ndarray]) -> None:
        with torch.no_grad():
            for p, value in zip(self.params, params, strict=True):
                p.copy_(torch.tensor(value, dtype=self.dtype, device=self.device))

    def snapshot(self) -> Snapshot:
        state = _state_entries(self.optimizer)
        if state is not None:
            state.update(_learning_rates(self.optimizer, self.groups, len(self.params)))
        return [p.detach().double().cpu().numpy() for p in self.params], state

    def save_state(self) -> dict[str, Any]:
        """torch's state dict with tensors as NumPy arrays (bfloat16 widened to float32)."""
        sd = self.optimizer.state_dict()
        state = {key: {name: _to_numpy(value) for name, value in entries.items()}
                 for key, entries in sd["state"].items()}
        return {"state": state, "param_groups": [dict(g) for g in sd["param_groups"]]}

    def load_state(self, state_dict: dict[str, Any], dtype: torch.dtype, device: torch.device) -> None:
        self.optimizer.load_state_dict(torch_state_dict(state_dict, device=device, dtype=dtype))


def _to_numpy(value: Any) -> Any:
    if not isinstance(value, torch.Tensor):
        return value
    value = value.detach().cpu()
    return (value.float() if value.dtype == torch.bfloat16 else value).numpy().copy()


def _learning_rates(optimizer: Any, groups: Groups, n: int) -> dict[tuple[int, str], np.ndarray]:
    """``{(first parameter of the group, "lr"): rate}`` for each parameter group the optimizer exposes."""
    held = getattr(optimizer, "param_groups", None)
    if not isinstance(held, list | tuple):
        return {}
    return {(start, "lr"): np.asarray(float(g["lr"]))
            for start, g in zip(_group_starts(groups, n), held, strict=False) if isinstance(g, Mapping)}


def swap_states(expected_side: Any, actual_side: Any, *, dtype: torch.dtype, device: torch.device) -> None:
    """Each side continues from the other's ``state_dict()``: both directions of the round trip at once."""
    saved_expected, saved_actual = expected_side.save_state(), actual_side.save_state()
    expected_side.load_state(saved_actual, dtype, device)
    actual_side.load_state(saved_expected, dtype, device)


def none_gradients(grads: list[np.ndarray], step: int) -> list[np.ndarray | None]:
    """Drop parameter ``k``'s gradient at steps where ``(step + k) % 4 == 0`` (as ``p.grad = None``):
    the optimizer must skip it, its state included; parameter 3 has none at step 1."""
    return [None if (step + k) % 4 == 0 else g for k, g in enumerate(grads)]


def _to_float64(value: Any) -> np.ndarray | None:
    if value is None:
        return None
    if isinstance(value, torch.Tensor):
        return value.detach().double().cpu().numpy()
    arr = np.asarray(value)
    return arr.astype(np.float64) if arr.dtype.kind in "fiub" else None


def _state_entries(optimizer: Any) -> dict[tuple[int, str], np.ndarray] | None:
    """``{(param index, entry): float64 array}`` from a torch-layout state dict, or None without one."""
    state_dict_fn = getattr(optimizer, "state_dict", None)
    if not callable(state_dict_fn):
        return None
    sd = state_dict_fn()
    if not isinstance(sd, Mapping) or not isinstance(sd.get("state"), Mapping):
        return None
    groups = sd.get("param_groups") or []
    ids = [pid for g in groups if isinstance(g, Mapping) for pid in g.get("params", [])]
    entries = {}
    for key, per_param in sd["state"].items():
        index = ids.index(key) if ids and key in ids else key
        if not isinstance(per_param, Mapping):
            continue
        for name, value in per_param.items():
            arr = _to_float64(value)
            if arr is not None:
                entries[(int(index), str(name))] = arr
    return entries


@dataclass
class OptimizerReport:
    """The outcome of a trajectory comparison: the worst agreement over all steps, params and entries."""

    passed: bool
    steps: int
    device: str
    dtype: str
    tolerance: Tolerance
    max_abs_error: float = 0.0
    max_rel_error: float = 0.0
    ratio: float = 0.0
    worst_step: int = 0
    worst_param: int = 0
    worst_entry: str = "param"
    state_entries: list[str] = field(default_factory=list)

    def summary(self) -> str:
        state = f"state entries {', '.join(self.state_entries)}" if self.state_entries else "parameters only"
        return (f"{'passed' if self.passed else 'FAILED'} on {self.device}/{self.dtype} over {self.steps} steps "
                f"({state}): max abs error {self.max_abs_error:.3g}, max rel error {self.max_rel_error:.3g}, "
                f"{self.ratio:.3g} of the bound")


def _setup(shapes: Sequence[Sequence[int]], steps: int, seed: int, device: str | torch.device,
           dtype: str | torch.dtype) -> tuple[torch.dtype, torch.device, list[tuple[int, ...]], list[np.ndarray]]:
    """Validate a trajectory check's arguments; return the dtype, device, shapes and initial parameters."""
    torch_dtype, torch_device = resolve_dtype(dtype), resolve_device(device)
    if steps < 1:
        raise InvalidInputError(f"steps must be at least 1, got {steps}")
    shape_list = [tuple(int(n) for n in s) for s in shapes]
    if not shape_list:
        raise InvalidInputError("shapes is empty: give at least one parameter shape")
    for s in shape_list:
        if math.prod(s) == 0:
            raise InvalidInputError(f"parameter shape {s} is empty")
    rng = np.random.default_rng(seed + 1_000_003)
    params = [round_to_dtype(rng.standard_normal(shape), torch_dtype) for shape in shape_list]
    return torch_dtype, torch_device, shape_list, params


def largest_gradient(dtype: torch.dtype, steps: int) -> float:
    """The largest gradient scale a trajectory check in ``dtype`` draws: 1e2, or less where a sum of
    ``steps`` squared gradients (Adagrad's state) would overflow the dtype.

    A squared gradient averages 1.2 scale^2 (``|N(0, 1)| + 0.1`` squared); the bound keeps the sum
    of ``steps`` of them 8x below the dtype's largest value. float16 (65504) gets 12.8 at 50 steps:
    with 1e2 its accumulators overflowed within seven steps, on both sides alike, so a right
    optimizer could not pass. Other dtypes keep 1e2.
    """
    room = math.sqrt(torch.finfo(dtype).max / (8 * max(steps, 1)))
    return min(_MAGNITUDES[-1], room)


def compare_trajectories(
    expected_side: Any,
    actual_side: Any,
    shapes: Sequence[tuple[int, ...]],
    *,
    steps: int,
    seed: int,
    device: torch.device,
    dtype: torch.dtype,
    tol: Tolerance,
    labels: tuple[str, str],
    free_running: bool = False,
    none_grads: bool = False,
    swap_state_at: int | None = None,
    precision: torch.dtype | None = None,
) -> OptimizerReport:
    """Step two sides with the same gradients; raise :class:`OptimizerMismatch` at the first diverging step.

    Unless ``free_running``, each step starts the actual side from the expected side's parameters
    (teacher forcing); the states still evolve independently. ``none_grads`` drops gradients as
    :func:`none_gradients` does; after step ``swap_state_at`` each side loads the other's state
    dict (:func:`swap_states`), so a wrong or lossy state dict shows at the next step. The
    gradients are rounded to ``dtype``; ``precision`` names the dtype the sides compute in where
    it differs (:func:`math_precision`).
    """
    name = dtype_name(dtype) + ("" if precision in (None, dtype) else f" ({dtype_name(precision)} math)")
    report = OptimizerReport(True, steps, str(device), name, tol)
    history: dict[tuple[int, str], float] = {}
    for step, drawn in enumerate(gradient_sequence(shapes, steps, seed, largest_gradient(dtype, steps)), start=1):
        rounded = [round_to_dtype(g, dtype) for g in drawn]
        grads = none_gradients(rounded, step) if none_grads else list[np.ndarray | None](rounded)
        if step > 1 and not free_running:
            actual_side.load_params(expected_side.snapshot()[0])
        expected_side.step(grads)
        actual_side.step(grads)
        (exp_params, exp_state), (act_params, act_state) = expected_side.snapshot(), actual_side.snapshot()
        pairs: dict[tuple[int, str], tuple[np.ndarray, np.ndarray]] = {
            (i, "param"): (e, a) for i, (e, a) in enumerate(zip(exp_params, act_params, strict=True))}
        if exp_state is not None and act_state is not None:
            common = sorted(set(exp_state) & set(act_state))
            report.state_entries = sorted({name for _, name in common})
            pairs.update({key: (exp_state[key], act_state[key]) for key in common
                          if exp_state[key].shape == act_state[key].shape})
        # Rounding committed while a value was large persists after it shrinks (weight decay, say):
        # scale each entry by the largest magnitude it has had so far.
        for key, (e, _) in pairs.items():
            history[key] = max(history.get(key, 0.0), float(np.max(np.abs(finite_or_zero(e)), initial=0.0)))
        results = {key: compare(e, a, tol, global_scale=history[key]) for key, (e, a) in pairs.items()}
        for (param, entry), c in results.items():
            if c.ratio > report.ratio:
                report.ratio, report.worst_step, report.worst_param, report.worst_entry = c.ratio, step, param, entry
            report.max_abs_error = max(report.max_abs_error, c.max_abs_error)
            report.max_rel_error = max(report.max_rel_error, c.max_rel_error)
        failing = {key: c for key, c in results.items() if not c.passed}
        if failing:
            report.passed = False
            raise _mismatch(step, failing, grads, report, labels, precision or dtype)
        if step == swap_state_at:
            swap_states(expected_side, actual_side, dtype=precision or dtype, device=device)
    return report


def _mismatch(step: int, failing: dict[tuple[int, str], Comparison], grads: list[np.ndarray | None],
              report: OptimizerReport, labels: tuple[str, str], precision: torch.dtype) -> OptimizerMismatch:
    # Name a parameter entry first when one diverges: state differences explain, parameters show.
    (param, entry), c = min(failing.items(), key=lambda kv: (kv[0][1] != "param", -kv[1].ratio))
    where = (f"learning rate of the group holding parameter {param}" if entry == "lr"
             else f"parameter {param}" + ("" if entry == "param" else f", state entry {entry!r}"))
    lines = [f"optimizer diverges at step {step} on {report.device}/{report.dtype}: {where}"]
    if c.nonfinite:
        lines.append(f"  {c.nonfinite}")
        if "both sides" in c.nonfinite:
            finfo = torch.finfo(precision)
            lines.append(f"  {labels[0]} is not finite there either: this configuration overflows or divides by zero "
                         f"in {dtype_name(precision)} (a hyperparameter below {finfo.tiny * finfo.eps:.2g}, such as "
                         "eps=1e-8 in float16, rounds to 0), so there is nothing to compare")
    else:
        g = grads[param]
        grad_here = ("None (skipped)" if g is None
                     else f"{float(g[c.index]):.3g}" if len(c.index) == g.ndim else "n/a")
        lines += comparison_lines(c, labels[0], labels[1], note=f"gradient there this step {grad_here}",
                                  bound=False)
    others = [f"param {p} {e}" for (p, e) in failing if (p, e) != (param, entry)]
    if others:
        lines.append("  also diverging at this step: " + ", ".join(others))
    lines.append(f"  tolerance: {report.tolerance.describe()} (for {report.steps} steps)")
    return OptimizerMismatch("\n".join(lines), step=step, param=param, entry=entry, report=report)


def math_precision(dtype: torch.dtype) -> torch.dtype | None:
    """float32 for float16 and bfloat16, else None: the precision of a low-precision check's decisive run.

    In float16 or bfloat16 a parameter rounds to 2^-11 or 2^-8 of itself each step, so an update
    rule off by a third of a 1e-2 step (a bias correction a step late) or one that only differs
    at tiny gradients (eps inside the square root) cannot show in the trajectory. The decisive
    run therefore starts from the same dtype-representable parameters and takes the same
    dtype-rounded gradients, with both sides computing in float32: a wrong rule shows at float32
    resolution, as :func:`~gradcheck_lab.gradients.check.check_gradients` compares the math in float64.
    The run in the dtype itself follows, with its own (wider) bound.
    """
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else None


def check_optimizer(
    numpy_cls: type,
    torch_cls: type,
    *,
    hyper: Mapping[str, Any] | None = None,
    shapes: Sequence[Sequence[int]] = ((4, 3), (3,)),
    steps: int = 50,
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype = "float64",
    seed: int = 0,
    torch_hyper: Mapping[str, Any] | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    free_running: bool = False,
    param_groups: Groups = None,
    scheduler: Schedule | tuple[Any, ...] | None = None,
    none_grads: bool = False,
    swap_state_at: int | None = None,
) -> OptimizerReport:
    """Check a NumPy optimizer class against a ``torch.optim`` class, step by step.

    ``numpy_cls(params, **hyper)`` must update its list of arrays in place on
    ``step(grads)``; ``torch_cls(tensors, **hyper, **torch_hyper)`` is stepped with the same
    gradients (see :func:`gradient_sequence`). After every step the parameters are compared,
    and every state entry both ``state_dict()`` name when the NumPy class has one. Raises
    :class:`OptimizerMismatch` naming the first diverging step, the parameter and the entry.

    Each step starts the NumPy parameters from torch's (written into its arrays in place);
    the optimizer states are never synchronized. Weight decay inside Adam feeds the parameters
    back through ``1 / sqrt(v)``, which for gradients near eps amplifies rounding hundreds of
    times a step, so two right implementations drift apart when left free-running; a wrong
    update rule still differs at its first step. ``free_running=True`` compares the two
    trajectories as they are.

    The matrix, all optional: ``param_groups`` (by parameter index, in order, with per-group
    options over ``hyper``: ``[{"params": [0], "lr": 0.1}, {"params": [1, 2]}]``); a
    ``scheduler`` (:class:`Schedule`, or a tuple of its fields) built on each side's optimizer
    and stepped after each optimizer step, its group learning rates compared as state entry
    ``"lr"``; ``none_grads`` (see :func:`none_gradients`); ``swap_state_at``, a step after which
    each side continues from the other's ``state_dict()``.

    float16 and bfloat16 are checked twice (:func:`math_precision`): first both sides in float32
    on dtype-representable parameters and gradients (decisive, at float32 resolution), then in
    the dtype itself (the NumPy side in float16, or float32 for bfloat16, which NumPy lacks);
    the report is the second run's.
    """
    torch_dtype, torch_device, shape_list, params = _setup(shapes, steps, seed, device, dtype)
    hyper = dict(hyper or {})
    groups = _checked_groups(param_groups, len(shape_list))
    schedule = Schedule(*scheduler) if isinstance(scheduler, tuple) else scheduler
    math_run = math_precision(torch_dtype)
    report = None
    with preserved_torch_state(torch_device):
        for precision in ((math_run,) if math_run else ()) + (torch_dtype,):
            _match_default_dtype(precision)
            expected = _TorchSide(torch_cls, params, {**hyper, **(torch_hyper or {})}, torch_device, precision,
                                  groups, schedule)
            actual = _NumpySide(numpy_cls, params, hyper, _NUMPY_DTYPES[precision], groups, schedule)
            report = compare_trajectories(
                expected, actual, shape_list, steps=steps, seed=seed, device=torch_device, dtype=torch_dtype,
                tol=trajectory_tolerance(precision, steps, rtol=rtol, atol=atol), free_running=free_running,
                none_grads=none_grads, swap_state_at=swap_state_at, precision=precision,
                labels=(f"torch {torch_cls.__name__}", f"numpy {numpy_cls.__name__}"))
    assert report is not None
    return report


def _checked_groups(groups: Groups, n: int) -> Groups:
    """Parameter groups must list every parameter index once, in order (so both sides number them alike)."""
    if groups is None:
        return None
    order = [int(i) for g in groups for i in g["params"]]
    if order != list(range(n)) or any(not g["params"] for g in groups):
        raise InvalidInputError(f"param_groups must split the parameters 0..{n - 1} in order into non-empty "
                                f"groups, got {[list(g['params']) for g in groups]}")
    return [dict(g) for g in groups]


def _match_default_dtype(dtype: torch.dtype) -> None:
    """Make torch keep its optimizer scalars (``step``, NAdam's ``mu_product``) as the reference does:
    float64 for float64 parameters, float32 otherwise (the caller restores the default)."""
    wanted = torch.float64 if dtype == torch.float64 else torch.float32
    if torch.get_default_dtype() != wanted:
        torch.set_default_dtype(wanted)


def torch_variants(device: torch.device) -> dict[str, dict[str, bool]]:
    """The implementations torch.optim offers: the for-loop, ``foreach`` and ``fused``."""
    variants = {"for-loop": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}
    return variants if device.type in ("cpu", "cuda", "mps") else {"for-loop": {"foreach": False}}


def check_torch_implementations(
    torch_cls: type,
    *,
    hyper: Mapping[str, Any] | None = None,
    shapes: Sequence[Sequence[int]] = ((4, 3), (3,)),
    steps: int = 50,
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype = "float64",
    seed: int = 0,
) -> dict[str, OptimizerReport]:
    """Check torch's ``foreach`` and ``fused`` implementations against its for-loop, where the device has them.

    A variant torch refuses for this device or dtype (at construction or on the first step) is
    left out of the result, not reported as a failure.
    """
    torch_dtype, torch_device, shape_list, params = _setup(shapes, steps, seed, device, dtype)
    hyper = dict(hyper or {})
    tol = trajectory_tolerance(torch_dtype, steps)
    reports = {}
    with preserved_torch_state(torch_device):
        for name, flags in torch_variants(torch_device).items():
            if name == "for-loop":
                continue
            try:
                probe = _TorchSide(torch_cls, params, {**hyper, **flags}, torch_device, torch_dtype)
                probe.step([np.zeros(s) for s in shape_list])
            except (RuntimeError, ValueError, TypeError):
                continue
            baseline = _TorchSide(torch_cls, params, {**hyper, "foreach": False}, torch_device, torch_dtype)
            variant = _TorchSide(torch_cls, params, {**hyper, **flags}, torch_device, torch_dtype)
            reports[name] = compare_trajectories(baseline, variant, shape_list, steps=steps, seed=seed,
                                                 device=torch_device, dtype=torch_dtype, tol=tol,
                                                 labels=("torch for-loop", f"torch {name}"))
    return reports


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
