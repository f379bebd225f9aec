"""The typed errors gradcheck-lab raises. Every message says what is wrong and where."""

from __future__ import annotations

from typing import Any


class GradcheckError(Exception):
    """Base class of every error gradcheck-lab raises on purpose."""


class InvalidInputError(GradcheckError, TypeError, ValueError):
    """An input cannot be checked: not a floating array, empty, integer, complex, ..."""


class NonFiniteError(GradcheckError, ValueError):
    """NaN or Inf in an input, or in either side's value or gradients."""


class ReferenceContractError(GradcheckError, TypeError, ValueError):
    """The reference did not return ``(value, grads)`` with one gradient per input, same shapes."""


class TorchFunctionError(GradcheckError, TypeError, ValueError):
    """The torch function's output cannot be differentiated as asked (non-scalar, unused input, ...)."""


class UnknownDtypeError(GradcheckError, TypeError, ValueError):
    """A dtype name or object that is not a supported floating dtype."""


class DeviceError(GradcheckError, RuntimeError, ValueError):
    """A device string that is malformed or names a device this machine does not have."""


class GradientMismatch(GradcheckError, AssertionError):
    """The reference and torch.autograd disagree beyond tolerance.

    ``report`` holds the full :class:`~gradcheck_lab.core.report.Report`; ``inputs`` the
    inputs (as given) that show the disagreement.
    """

    def __init__(self, message: str, report: Any = None, inputs: tuple[Any, ...] | None = None):
        super().__init__(message)
        self.report = report
        self.inputs = inputs


class InconclusiveWarning(UserWarning):
    """A check could not tell right from wrong: float64 rounding at these inputs explains the disagreement.

    The check returns its :class:`~gradcheck_lab.core.report.Report` with ``verdict == "inconclusive"``
    (and ``passed`` False); :func:`~gradcheck_lab.gradients.search.verify` does not count such inputs as evidence.
    """


class ReferenceMutationWarning(UserWarning):
    """The reference modified the arrays it was given (the harness passes copies, so nothing is corrupted)."""


class OptimizerMismatch(GradcheckError, AssertionError):
    """A NumPy optimizer and its torch.optim counterpart diverge: ``step``, ``param``, ``entry`` say where."""

    def __init__(self, message: str, *, step: int = 0, param: int = 0, entry: str = "param", report: Any = None):
        # (defaults: copy and pickle rebuild an exception from its message, then restore these attributes)
        super().__init__(message)
        self.step = step
        self.param = param
        self.entry = entry
        self.report = report


class CandidateContractError(TorchFunctionError):
    """A candidate torch implementation (a custom ``autograd.Function``, a fused kernel) breaks autograd's contract:
    its output is not differentiable, or its backward returns a gradient of the wrong dtype, shape or device."""


class DtypeOverflowError(NonFiniteError):
    """A result overflows the dtype under test where the float64 truth is finite: this input cannot be judged in it."""


class NondeterministicReferenceError(ReferenceContractError):
    """The reference returned different results for the same inputs: uninitialized weights or random state?"""


class ResourceError(GradcheckError, MemoryError):
    """A check cannot fit in the memory free on this machine: refused before any work, naming what it needs."""
