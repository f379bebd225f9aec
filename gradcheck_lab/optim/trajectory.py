"""The one optimizer run loop: two sides stepped with the same gradients, compared after every step.

:func:`check_optimizer <gradcheck_lab.optim.check.check_optimizer>` (a NumPy optimizer class) and
:func:`check_update_rule <gradcheck_lab.optim.update_rule.check_update_rule>` (a course update rule) build
their two sides (:class:`Side`) and call :func:`run_trajectory`; so does the comparison of torch's own
implementations. One policy for torch's default dtype holds for all of them (:func:`matching_default_dtype`).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from gradcheck_lab.core import arguments
from gradcheck_lab.core.comparison import Comparison, compare, compare_many, largest_finite_magnitudes
from gradcheck_lab.core.devices import resolve_device
from gradcheck_lab.core.dtypes import dtype_name, resolve_dtype, round_to_dtype
from gradcheck_lab.core.tolerances import Tolerance, trajectory_tolerance
from gradcheck_lab.core.torch_state import preserved_torch_state
from gradcheck_lab.errors import InvalidInputError, OptimizerMismatch, ReferenceContractError
from gradcheck_lab.optim.report import PARAM, Labels, OptimizerReport, mismatch_message

MAGNITUDES = (1e-8, 1e-7, 1e-6, 1e-4, 1e-2, 1.0, 1e1, 1e2)
"""Gradient element scales, down to where Adam's eps dominates sqrt(v)."""

Snapshot = tuple[list[np.ndarray], dict[tuple[int, str], np.ndarray] | None]
"""A side after a step: its parameters (float64) and its state ``{(param index, entry): float64 array}``
(None where it exposes no state)."""


def gradient_sequence(shapes: Sequence[tuple[int, ...]], steps: int, seed: int = 0,
                      largest: float = MAGNITUDES[-1]) -> Iterator[list[np.ndarray]]:
    """Gradients that exercise the regimes where optimizer bugs hide, as float64 arrays.

    Each element keeps one scale from 1e-8 to 1e2 (at most ``largest``) for the whole run (so
    the second moment of small elements stays near eps**2), some elements flip sign every step,
    about one in ten is zero at any step, and every fifth step one parameter gets an all-zero gradient.
    """
    rng = np.random.default_rng(seed)
    scales, flips = [], []
    for shape in shapes:
        size = math.prod(shape)
        levels = np.resize(np.minimum(np.array(MAGNITUDES), largest), size)
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


def largest_gradient(dtype: torch.dtype, steps: int) -> float:
    """The largest gradient scale a trajectory check in ``dtype`` draws: 1e2, or less where a sum of
    ``steps`` squared gradients (Adagrad's state) would overflow the dtype.

    A squared gradient averages 1.2 scale^2 (``|N(0, 1)| + 0.1`` squared); the bound keeps the sum
    of ``steps`` of them 8x below the dtype's largest value. float16 (65504) gets 12.8 at 50 steps:
    with 1e2 its accumulators overflowed within seven steps, on both sides alike, so a right
    optimizer could not pass. Other dtypes keep 1e2.
    """
    room = math.sqrt(torch.finfo(dtype).max / (8 * max(steps, 1)))
    return min(MAGNITUDES[-1], room)


def none_gradients(grads: list[np.ndarray], step: int) -> list[np.ndarray | None]:
    """Drop parameter ``k``'s gradient at steps where ``(step + k) % 4 == 0`` (as ``p.grad = None``):
    the optimizer must skip it, its state included; parameter 3 has none at step 1."""
    return [None if (step + k) % 4 == 0 else g for k, g in enumerate(grads)]


def math_precision(dtype: torch.dtype) -> torch.dtype | None:
    """float32 for float16 and bfloat16, else None: the precision of a low-precision check's decisive run.

    In float16 or bfloat16 a parameter rounds to 2^-11 or 2^-8 of itself each step, so an update
    rule off by a third of a 1e-2 step (a bias correction a step late) or one that only differs
    at tiny gradients (eps inside the square root) cannot show in the trajectory. The decisive
    run therefore starts from the same dtype-representable parameters and takes the same
    dtype-rounded gradients, with both sides computing in float32: a wrong rule shows at float32
    resolution, as ``check_gradients`` compares the math in float64. The run in the dtype itself
    follows, with its own (wider) bound.
    """
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else None


@contextlib.contextmanager
def matching_default_dtype(precision: torch.dtype) -> Iterator[None]:
    """torch's default dtype as a reference computing in ``precision`` keeps its scalars: float64 for
    float64, float32 otherwise; the caller's default is restored after.

    torch keeps some optimizer scalars (``step``, NAdam's ``mu_product``) in the default dtype, not the
    parameters': a float64 reference differs from torch at ~1e-9 relative from step 1 under a float32
    default, and a float32 one under a float64 default. Every trajectory check runs under this policy.
    """
    wanted = torch.float64 if precision == torch.float64 else torch.float32
    before = torch.get_default_dtype()
    if before != wanted:  # setting it costs ~0.15 ms: only when it changes
        torch.set_default_dtype(wanted)
    try:
        yield
    finally:
        if torch.get_default_dtype() != before:
            torch.set_default_dtype(before)


class Side(Protocol):
    """One implementation being stepped: the torch optimizer, a NumPy optimizer, an update rule."""

    def step(self, grads: list[np.ndarray | None]) -> None: ...

    def load_params(self, params: list[np.ndarray]) -> None: ...

    def snapshot(self) -> Snapshot: ...


@runtime_checkable
class StatefulSide(Side, Protocol):
    """A side whose state can be saved and loaded as a torch-layout state dict (for a state swap)."""

    def save_state(self) -> dict[str, object]: ...

    def load_state(self, state_dict: dict[str, object], dtype: torch.dtype, device: torch.device) -> None: ...


def swap_states(torch_side: Side, reference_side: Side, *, dtype: torch.dtype, device: torch.device) -> None:
    """Each side continues from the other's ``state_dict()``: both directions of the round trip at once."""
    __tracebackhide__ = True
    if not (isinstance(torch_side, StatefulSide) and isinstance(reference_side, StatefulSide)):
        raise InvalidInputError("swap_state_at= needs both sides to have state_dict() and load_state_dict()")
    saved_torch, saved_reference = torch_side.save_state(), reference_side.save_state()
    torch_side.load_state(saved_reference, dtype, device)
    reference_side.load_state(saved_torch, dtype, device)


@dataclass(frozen=True)
class Trajectory:
    """A trajectory check's validated arguments and its initial parameters (float64, dtype-representable)."""

    dtype: torch.dtype
    device: torch.device
    shapes: tuple[tuple[int, ...], ...]
    params: tuple[np.ndarray, ...]
    steps: int
    seed: int
    rtol: float | None = None
    atol: float | None = None

    @property
    def precisions(self) -> tuple[torch.dtype, ...]:
        """The runs, in order: float32 math first below float32 (:func:`math_precision`), then the dtype."""
        first = math_precision(self.dtype)
        return ((first,) if first else ()) + (self.dtype,)

    def tolerance(self, precision: torch.dtype) -> Tolerance:
        return trajectory_tolerance(precision, self.steps, rtol=self.rtol, atol=self.atol)


def plan_trajectory(shapes: object, *, steps: object, seed: object, device: str | torch.device,
                    dtype: str | torch.dtype, rtol: object = None, atol: object = None) -> Trajectory:
    """Validate a trajectory check's arguments (typed errors naming each) and draw its initial parameters.

    Raises:
        InvalidInputError: a shapes, steps, seed, rtol or atol the check cannot use.
        UnknownDtypeError, DeviceError: a dtype or device that is not supported here.
    """
    __tracebackhide__ = True
    shape_list = arguments.shapes("shapes", shapes)
    for s in shape_list:
        if math.prod(s) == 0:
            raise InvalidInputError(f"shapes: parameter shape {s} is empty; every parameter needs an element")
    n_steps = arguments.integer("steps", steps, minimum=1)
    n_seed = arguments.integer("seed", seed, minimum=0)
    rel, abs_ = arguments.tolerance("rtol", rtol), arguments.tolerance("atol", atol)
    torch_dtype, torch_device = resolve_dtype(dtype), resolve_device(device)
    rng = np.random.default_rng(n_seed + 1_000_003)
    params = tuple(round_to_dtype(rng.standard_normal(shape), torch_dtype) for shape in shape_list)
    return Trajectory(torch_dtype, torch_device, tuple(shape_list), params, n_steps, n_seed, rel, abs_)


def run_trajectory(
    trajectory: Trajectory,
    make_sides: Callable[[torch.dtype], tuple[Side, Side]],
    labels: Labels,
    *,
    state_names: Mapping[str, str] | None = None,
    free_running: bool = False,
    none_grads: bool = False,
    swap_state_at: int | None = None,
    precisions: Sequence[torch.dtype] | None = None,
) -> OptimizerReport:
    """Run :func:`compare_trajectories` in each precision (``trajectory.precisions`` unless given), torch's
    state (its default dtype by :func:`matching_default_dtype`) left as found; the last run's report.

    ``make_sides(precision)`` returns ``(torch side, reference side)``, fresh for each run.
    """
    __tracebackhide__ = True
    report = None
    with preserved_torch_state(trajectory.device):
        for precision in precisions or trajectory.precisions:
            with matching_default_dtype(precision):
                torch_side, reference_side = make_sides(precision)
                report = compare_trajectories(torch_side, reference_side, trajectory, precision, labels,
                                              state_names=state_names, free_running=free_running,
                                              none_grads=none_grads, swap_state_at=swap_state_at)
    assert report is not None
    return report


def _paired(torch_state: Mapping[tuple[int, str], np.ndarray], reference_state: Mapping[tuple[int, str], np.ndarray],
            state_names: Mapping[str, str] | None, labels: Labels) -> dict[tuple[int, str], tuple[np.ndarray, str]]:
    """``{(param, torch entry): (the reference's array, the reference's entry name)}`` for every pair compared.

    Without ``state_names`` the entries both sides name alike are paired (one of another shape is left out:
    it holds something else); with them, each named reference entry present is paired with its torch entry,
    and a shape that differs is the reference's mistake.
    """
    __tracebackhide__ = True
    if state_names is None:
        return {key: (value, key[1]) for key, value in reference_state.items()
                if key in torch_state and torch_state[key].shape == value.shape}
    pairs = {}
    for (param, name), value in reference_state.items():
        torch_name = state_names.get(name)
        if torch_name is None or (param, torch_name) not in torch_state:
            continue
        expected = torch_state[(param, torch_name)].shape
        if value.shape != expected:
            raise ReferenceContractError(
                f"{labels.entry(name)} of parameter {param} has shape {value.shape}, but torch's {torch_name}, which "
                f"it is compared with ({labels.naming or 'by state_names='}), has shape {expected}: pass "
                f"state_names= without {name!r} (or the entry torch names for it)")
        pairs[(param, torch_name)] = (value, name)
    return pairs


def renaming(torch_state: Mapping[tuple[int, str], np.ndarray], reference_state: Mapping[tuple[int, str], np.ndarray],
             tol: Tolerance) -> dict[str, str]:
    """The reference entries that agree with exactly one torch entry at every parameter (of the same shape,
    not all zero): ``{reference entry: torch entry}``."""
    found: dict[str, str] = {}
    for name in sorted({n for _, n in reference_state}):
        matches = []
        for torch_name in sorted({n for _, n in torch_state}):
            params = [p for p, n in reference_state if n == name and (p, torch_name) in torch_state]
            arrays = [(torch_state[(p, torch_name)], reference_state[(p, name)]) for p in params]
            if arrays and all(t.shape == r.shape and t.ndim > 0 for t, r in arrays) \
                    and any(np.any(t != 0) for t, _ in arrays) and all(compare(t, r, tol).passed for t, r in arrays):
                matches.append(torch_name)
        if len(matches) == 1:
            found[name] = matches[0]
    return found


def compare_trajectories(
    torch_side: Side,
    reference_side: Side,
    trajectory: Trajectory,
    precision: torch.dtype,
    labels: Labels,
    *,
    state_names: Mapping[str, str] | None = None,
    free_running: bool = False,
    none_grads: bool = False,
    swap_state_at: int | None = None,
) -> OptimizerReport:
    """Step two sides with the same gradients; raise :class:`OptimizerMismatch` at the first diverging step.

    Unless ``free_running``, each step starts the reference side from torch's parameters (teacher
    forcing); the states still evolve independently. ``state_names`` maps the reference's state entries
    to torch's (None: the entries named alike). ``none_grads`` drops gradients as :func:`none_gradients`
    does; after step ``swap_state_at`` each side loads the other's state dict (:func:`swap_states`), so a
    wrong or lossy state dict shows at the next step. The gradients are rounded to ``trajectory.dtype``;
    ``precision`` is the dtype the sides compute in.
    """
    __tracebackhide__ = True
    dtype, tol = trajectory.dtype, trajectory.tolerance(precision)
    name = dtype_name(dtype) + ("" if precision == dtype else f" ({dtype_name(precision)} math)")
    best = OptimizerReport(True, trajectory.steps, str(trajectory.device), name, tol, labels.reference, labels.torch)
    max_abs = max_rel = 0.0
    compared: dict[str, str] = {}  # torch entry -> the reference's entry compared with it
    history: dict[tuple[int, str], float] = {}
    gradients = gradient_sequence(trajectory.shapes, trajectory.steps, trajectory.seed,
                                  largest_gradient(dtype, trajectory.steps))
    for step, drawn in enumerate(gradients, start=1):
        rounded = [round_to_dtype(g, dtype) for g in drawn]
        grads = none_gradients(rounded, step) if none_grads else list[np.ndarray | None](rounded)
        if step > 1 and not free_running:
            reference_side.load_params(torch_side.snapshot()[0])
        torch_side.step(grads)
        reference_side.step(grads)
        torch_params, torch_state = torch_side.snapshot()
        reference_params, reference_state = reference_side.snapshot()
        pairs = {(i, PARAM): (t, r) for i, (t, r) in enumerate(zip(torch_params, reference_params, strict=True))}
        if torch_state is not None and reference_state is not None:
            for key, (value, reference_name) in _paired(torch_state, reference_state, state_names, labels).items():
                pairs[key] = (torch_state[key], value)
                compared[key[1]] = reference_name
        # Rounding committed while a value was large persists after it shrinks (weight decay, say):
        # scale each entry by the largest magnitude it has had so far.
        for key, largest in zip(pairs, largest_finite_magnitudes([t for t, _ in pairs.values()]), strict=True):
            history[key] = max(history.get(key, 0.0), largest)
        keys = list(pairs)
        results = compare_many(list(pairs.values()), tol, global_scales=[history[k] for k in keys])
        worst = max(range(len(keys)), key=results.ratios.__getitem__)  # the first pair at the largest ratio
        if results.ratios[worst] > best.ratio:
            (param, entry), c = keys[worst], results[worst]
            best = replace(best, ratio=c.ratio, worst_step=step, worst_param=param, worst_entry=entry,
                           worst_index=c.index, reference_value=c.actual, torch_value=c.expected)
        max_abs, max_rel = max([max_abs, *results.max_abs_errors]), max([max_rel, *results.max_rel_errors])
        failing = {keys[k]: results[k] for k, passed in enumerate(results.passed) if not passed}
        if failing or step == trajectory.steps:
            best = replace(best, max_abs_error=max_abs, max_rel_error=max_rel, state_entries=sorted(compared),
                           state_names=dict(compared))
        if failing:
            better = (None if torch_state is None or reference_state is None or state_names is None
                      else _better_names(torch_state, reference_state, state_names, failing, tol))
            raise _mismatch(best, step, failing, grads, pairs, labels, trajectory, precision, compared, better)
        if step == swap_state_at:
            swap_states(torch_side, reference_side, dtype=precision, device=trajectory.device)
    return best


def _better_names(torch_state: Mapping[tuple[int, str], np.ndarray],
                  reference_state: Mapping[tuple[int, str], np.ndarray], state_names: Mapping[str, str],
                  failing: Mapping[tuple[int, str], Comparison], tol: Tolerance) -> dict[str, str] | None:
    """A pairing under which the failing state entries agree, when only state entries fail; else None.

    It keeps the pairs of ``state_names`` that the found ones do not replace (``t`` with ``step``, say).
    """
    if any(entry == PARAM for _, entry in failing):
        return None
    found = renaming(torch_state, reference_state, tol)
    compared_with = {t: r for r, t in state_names.items()}  # torch entry -> the reference entry compared with it

    def explained(entry: str) -> bool:  # the reference entry compared with ``entry`` agrees with another one
        reference_name = compared_with.get(entry)
        return reference_name is not None and found.get(reference_name) not in (None, entry)

    if not all(explained(entry) for _, entry in failing):
        return None
    kept = {r: t for r, t in state_names.items() if r not in found and t not in found.values()}
    return {**kept, **found}


def _mismatch(report: OptimizerReport, step: int, failing: Mapping[tuple[int, str], Comparison],
              grads: Sequence[np.ndarray | None], pairs: Mapping[tuple[int, str], tuple[np.ndarray, np.ndarray]],
              labels: Labels, trajectory: Trajectory, precision: torch.dtype, compared: Mapping[str, str],
              better: Mapping[str, str] | None) -> OptimizerMismatch:
    failed = replace(report, passed=False, verdict="mismatch")
    first = min(failing.items(), key=lambda kv: (kv[0][1] != PARAM, -kv[1].ratio))
    t, r = pairs[first[0]]
    index = first[1].index
    both = bool(first[1].nonfinite) and len(index) == np.ndim(t) and not (
        np.isfinite(np.asarray(t)[index]) or np.isfinite(np.asarray(r)[index]))
    names = {torch_name: ref for torch_name, ref in compared.items()} if labels.naming or any(
        k != v for k, v in compared.items()) else {}
    message, param, entry = mismatch_message(failed, step, failing, grads, labels=labels, shapes=trajectory.shapes,
                                             precision=precision, both_nonfinite=both, names=names, renaming=better)
    return OptimizerMismatch(message, step=step, param=param, entry=entry, report=failed)
