"""``verify``: ``check_gradients`` over every input a hypothesis search can find, shrunk on failure."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

from gradcheck_lab.core.devices import resolve_devices
from gradcheck_lab.core.dtypes import dtype_name, resolve_dtype
from gradcheck_lab.core.report import Report
from gradcheck_lab.core.tolerances import Tolerance
from gradcheck_lab.errors import GradientMismatch, InconclusiveWarning, InvalidInputError, NonFiniteError
from gradcheck_lab.gradients.check import check_gradients
from gradcheck_lab.gradients.inputs import ReferenceFn, TorchFn
from gradcheck_lab.gradients.strategies import DEFAULT_BOUND, ElementSpec, input_tuples


@dataclass
class VerifySummary:
    """The worst agreement seen for one device and dtype over every example.

    ``examples`` counts the inputs that passed (the evidence); ``inconclusive`` those where float64
    rounding could explain a disagreement, which prove nothing either way and are not in the maxima.
    """

    device: str
    dtype: str
    examples: int = 0
    max_abs_error: float = 0.0
    max_rel_error: float = 0.0
    ratio: float = 0.0
    tolerance: Tolerance | None = None
    inconclusive: int = 0

    def add(self, report: Report) -> None:
        if report.verdict == "inconclusive":
            self.inconclusive += 1
            return
        self.examples += 1
        self.max_abs_error = max(self.max_abs_error, report.max_abs_error)
        self.max_rel_error = max(self.max_rel_error, report.max_rel_error)
        self.ratio = max(self.ratio, report.ratio)
        self.tolerance = report.tolerance


@dataclass
class VerifyResult:
    """One :class:`VerifySummary` per device and dtype; ``passed`` is always true when returned."""

    summaries: list[VerifySummary] = field(default_factory=list)
    passed: bool = True


def _describe(inputs: Sequence[Any]) -> str:
    with np.printoptions(precision=17, threshold=64):
        return "\n".join(f"    input {k}: {np.array2string(np.asarray(x), separator=', ')}"
                         for k, x in enumerate(inputs))


def verify(
    reference_fn: ReferenceFn,
    torch_fn: TorchFn,
    *,
    shapes: Sequence[tuple[int, ...]] | None = None,
    devices: Sequence[str] | str = ("cpu",),
    dtypes: Sequence[str | torch.dtype] | str = ("float64",),
    max_examples: int = 100,
    inputs: st.SearchStrategy[tuple[Any, ...]] | None = None,
    bound: float = DEFAULT_BOUND,
    elements: ElementSpec = None,
    rtol: float | None = None,
    atol: float | None = None,
    finite_differences: bool = False,
    seed: int | None = None,
    **check_kwargs: Any,
) -> VerifyResult:
    """Run :func:`check_gradients` on inputs hypothesis draws, on every device and dtype.

    Inputs come from ``inputs`` (a strategy of input tuples) or are drawn for ``shapes`` with
    elements in ``[-bound, bound]`` (or from ``elements``, e.g. ``st.floats(0.1, 4.0)`` for a
    function defined for positive inputs only; or one per input, where an entry may draw the whole array,
    as ``gst.labels((8,), 4)`` does). On the first failure hypothesis shrinks the example; the
    error raised (``GradientMismatch`` or another typed error) is the one for the *minimal*
    counterexample, which ``GradientMismatch.inputs`` holds. ``seed`` fixes the search.
    """
    __tracebackhide__ = True
    if inputs is None:
        if shapes is None:
            raise InvalidInputError("verify needs shapes=[...] or inputs=<strategy of input tuples>")
        inputs = input_tuples([tuple(s) for s in shapes], bound, elements)
    device_list = resolve_devices(devices if isinstance(devices, str) else list(devices))
    dtype_list = [resolve_dtype(d) for d in ([dtypes] if isinstance(dtypes, str | torch.dtype) else dtypes)]
    summaries = {(dev, dt): VerifySummary(dev, dtype_name(dt)) for dev in device_list for dt in dtype_list}

    def one_example(example: tuple[Any, ...]) -> None:
        for (dev, dt), summary in summaries.items():
            with warnings.catch_warnings():  # counted, and reported once at the end
                warnings.simplefilter("ignore", InconclusiveWarning)
                summary.add(check_gradients(reference_fn, torch_fn, example, device=dev, dtype=dt, rtol=rtol,
                                            atol=atol, finite_differences=finite_differences, **check_kwargs))

    search = settings(
        settings(),
        max_examples=max_examples,
        deadline=None,
        database=None,
        report_multiple_bugs=False,
        suppress_health_check=list(HealthCheck),
    )(given(inputs)(one_example))
    if seed is not None:
        search = hypothesis_seed(seed)(search)
    try:
        search()
    except GradientMismatch as exc:
        raise GradientMismatch(f"{exc}\n  minimal counterexample (after shrinking):\n{_describe(exc.inputs or ())}",
                               report=exc.report, inputs=exc.inputs) from None
    except NonFiniteError as exc:
        raise NonFiniteError(f"{exc}\n  if the function is only defined on part of the line, restrict the inputs: "
                             "verify(..., elements=st.floats(0.1, 4.0)) or inputs=<strategy>") from None
    unresolved = [s for s in summaries.values() if s.inconclusive]
    if unresolved:
        counts = ", ".join(f"{s.inconclusive} of {s.inconclusive + s.examples} on {s.device}/{s.dtype}"
                           for s in unresolved)
        warnings.warn(f"inconclusive inputs, not counted as evidence: {counts} (float64 rounding at those inputs "
                      "could explain the disagreement; check_gradients on one of them says where)",
                      InconclusiveWarning, stacklevel=2)
    return VerifyResult(list(summaries.values()))
