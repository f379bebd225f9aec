"""``check_optimizer``: a NumPy optimizer against its torch.optim class, step by step.

Both sides start from the same parameters and are fed the same gradients; after every step the
parameters, and every state entry both sides name, are compared (:mod:`gradcheck_lab.optim.trajectory`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from gradcheck_lab.core import arguments
from gradcheck_lab.core.arguments import call_style
from gradcheck_lab.core.dtypes import numpy_dtype
from gradcheck_lab.core.torch_state import preserved_torch_state
from gradcheck_lab.errors import InvalidInputError
from gradcheck_lab.optim import validation
from gradcheck_lab.optim.report import Labels, OptimizerReport
from gradcheck_lab.optim.sides import Groups, NumpySide, Recorded, Schedule, TorchSide, torch_state_dict
from gradcheck_lab.optim.trajectory import (
    Side,
    gradient_sequence,
    largest_gradient,
    matching_default_dtype,
    math_precision,
    plan_trajectory,
    run_trajectory,
)

__all__ = ["OptimizerReport", "Schedule", "check_optimizer", "check_torch_implementations", "gradient_sequence",
           "largest_gradient", "math_precision", "torch_state_dict", "torch_variants"]


def _schedule(name: str, scheduler: Any) -> Schedule | None:
    __tracebackhide__ = True
    if scheduler is None or isinstance(scheduler, Schedule):
        return scheduler
    if isinstance(scheduler, tuple) and 2 <= len(scheduler) <= 4:
        return Schedule(*scheduler)
    raise InvalidInputError(f"{name} must be a gradcheck_lab.Schedule(numpy_cls, torch_cls, kwargs) or a tuple of "
                            f"its fields, got {scheduler!r:.120}")


@call_style(positional=2, renamed={"numpy_cls": "optimizer_cls", "torch_cls": "torch_optimizer",
                                   "torch_optimizer_cls": "torch_optimizer"})
def check_optimizer(
    optimizer_cls: Callable[..., Any],
    torch_optimizer: type[torch.optim.Optimizer],
    *,
    hyper: Mapping[str, Any] | None = None,
    shapes: Sequence[Sequence[int]] = ((4, 3), (3,)),
    steps: int = 50,
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype = "float64",
    rtol: float | None = None,
    atol: float | None = None,
    seed: int = 0,
    torch_hyper: Mapping[str, Any] | None = None,
    free_running: bool = False,
    param_groups: Groups = None,
    scheduler: Schedule | tuple[Any, ...] | None = None,
    none_grads: bool = False,
    swap_state_at: int | None = None,
) -> OptimizerReport:
    """Check a NumPy optimizer class against a ``torch.optim`` class, step by step.

    Each step starts the reference's parameters from torch's (written into its arrays in place); the
    optimizer states are never synchronized. Weight decay inside Adam feeds the parameters back through
    ``1 / sqrt(v)``, which for gradients near eps amplifies rounding hundreds of times a step, so two
    right implementations drift apart when left free-running; a wrong update rule still differs at its
    first step. float16 and bfloat16 are checked twice (see
    :func:`~gradcheck_lab.optim.trajectory.math_precision`): first both sides in float32 on
    dtype-representable parameters and gradients (decisive), then in the dtype itself (the NumPy side in
    float16, or float32 for bfloat16, which NumPy lacks); the report is the second run's.

    Args:
        optimizer_cls: the reference, ``optimizer_cls(params, **hyper)`` over a list of NumPy arrays, updating
            them in place on ``step(grads)`` (a class or a factory); its ``state_dict()`` in torch's layout,
            where it has one, is compared entry by entry (old name: ``numpy_cls=``).
        torch_optimizer: the ``torch.optim`` class, built as ``torch_optimizer(tensors, **hyper, **torch_hyper)``
            (old names: ``torch_cls=``, ``torch_optimizer_cls=``).
        hyper: hyperparameters both sides take (each a name ``torch_optimizer`` takes).
        shapes: one shape per parameter.
        steps: optimizer steps, each fed :func:`gradient_sequence`'s gradients (rounded to ``dtype``).
        device, dtype: where and in which precision torch runs.
        rtol, atol: override the trajectory tolerance (None: the dtype's, grown with ``steps``).
        seed: seeds the initial parameters and the gradients.
        torch_hyper: options for torch only (``foreach=False``, say).
        free_running: compare the two trajectories as they are, without teacher forcing.
        param_groups: groups by parameter index, in order, with per-group options over ``hyper``
            (``[{"params": [0], "lr": 0.1}, {"params": [1]}]``).
        scheduler: a :class:`Schedule` (or a tuple of its fields) built on each side's optimizer and stepped
            after each optimizer step; each group's learning rate is compared as state entry ``"lr"``.
        none_grads: drop some gradients (``p.grad = None``) as
            :func:`~gradcheck_lab.optim.trajectory.none_gradients` does.
        swap_state_at: a step after which each side continues from the other's ``state_dict()``.

    Returns:
        The :class:`OptimizerReport` (verdict ``"passed"``).

    Raises:
        OptimizerMismatch: at the first step where a parameter or a state entry differs, naming the step,
            the parameter and the entry; its ``report`` has verdict ``"mismatch"``.
        InvalidInputError: an argument the check cannot use (named, with the fix), before anything runs.
    """
    __tracebackhide__ = True
    reference = validation.reference_optimizer("optimizer_cls", optimizer_cls, "your optimizer class")
    torch_cls = validation.torch_optimizer_class("torch_optimizer", torch_optimizer)
    both = validation.hyperparameters("hyper", hyper, torch_cls)
    torch_only = validation.hyperparameters("torch_hyper", torch_hyper, torch_cls)
    validation.accepted_by_torch("hyper", {**both, **torch_only}, torch_cls)
    trajectory = plan_trajectory(shapes, steps=steps, seed=seed, device=device, dtype=dtype, rtol=rtol, atol=atol)
    groups = validation.group_options("param_groups", param_groups, len(trajectory.shapes), torch_cls)
    schedule = _schedule("scheduler", scheduler)
    if swap_state_at is not None:
        arguments.integer("swap_state_at", swap_state_at, minimum=1)

    def make_sides(precision: torch.dtype) -> tuple[Side, Side]:
        __tracebackhide__ = True
        return (TorchSide(torch_cls, trajectory.params, {**both, **torch_only}, trajectory.device, precision, groups,
                          schedule),
                NumpySide(reference, trajectory.params, both, numpy_dtype(precision), groups, schedule))

    labels = Labels(f"numpy {getattr(reference, '__name__', 'optimizer')}", f"torch {torch_cls.__name__}")
    return run_trajectory(trajectory, make_sides, labels, free_running=free_running, none_grads=none_grads,
                          swap_state_at=swap_state_at)


def torch_variants(device: torch.device) -> dict[str, dict[str, bool]]:
    """The implementations torch.optim offers: the for-loop, ``foreach`` and ``fused``."""
    variants = {"for-loop": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}
    return variants if device.type in ("cpu", "cuda", "mps") else {"for-loop": {"foreach": False}}


@call_style(positional=1, renamed={"torch_cls": "torch_optimizer"})
def check_torch_implementations(
    torch_optimizer: type[torch.optim.Optimizer],
    *,
    hyper: Mapping[str, Any] | None = None,
    shapes: Sequence[Sequence[int]] = ((4, 3), (3,)),
    steps: int = 50,
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype = "float64",
    seed: int = 0,
) -> dict[str, OptimizerReport]:
    """Check torch's ``foreach`` and ``fused`` implementations against its for-loop, where the device has them.

    Args:
        torch_optimizer: the ``torch.optim`` class (old name: ``torch_cls=``).
        hyper, shapes, steps, device, dtype, seed: as for :func:`check_optimizer`.

    Returns:
        ``{"foreach": report, "fused": report}``; a variant torch refuses for this device or dtype (at
        construction or on the first step) is left out, not reported as a failure.

    Raises:
        OptimizerMismatch: a variant diverges from the for-loop.
        InvalidInputError: an argument the check cannot use, before anything runs.
    """
    __tracebackhide__ = True
    torch_cls = validation.torch_optimizer_class("torch_optimizer", torch_optimizer)
    options = validation.hyperparameters("hyper", hyper, torch_cls)
    trajectory = plan_trajectory(shapes, steps=steps, seed=seed, device=device, dtype=dtype)
    reports = {}
    loop: Recorded | None = None  # the for-loop is teacher-forced: stepped once, played back to the next variant
    for name, flags in torch_variants(trajectory.device).items():
        if name == "for-loop" or not _runs(torch_cls, {**options, **flags}, trajectory.params, trajectory.device,
                                           trajectory.dtype):
            continue

        def make_sides(precision: torch.dtype, flags: Mapping[str, bool] = flags) -> tuple[Side, Side]:
            nonlocal loop
            params, where = trajectory.params, trajectory.device
            if loop is None or not loop.replayable or loop.dtype != precision:
                loop = Recorded(TorchSide(torch_cls, params, {**options, "foreach": False}, where, precision))
            else:
                loop.replay()
            return loop, TorchSide(torch_cls, params, {**options, **flags}, where, precision)

        labels = Labels(f"torch {torch_cls.__name__} {name}", f"torch {torch_cls.__name__} for-loop")
        reports[name] = run_trajectory(trajectory, make_sides, labels, precisions=(trajectory.dtype,))
        if loop is not None and loop.side is not None:
            loop.finish()
    return reports


def _runs(torch_cls: type, options: Mapping[str, Any], params: Sequence[np.ndarray], device: torch.device,
          dtype: torch.dtype) -> bool:
    """Whether torch builds this variant and takes a step with it here."""
    with preserved_torch_state(device), matching_default_dtype(dtype):
        try:
            TorchSide(torch_cls, params, options, device, dtype).step([np.zeros(p.shape) for p in params])
        except (RuntimeError, ValueError, TypeError):
            return False
    return True
