"""What a check found: one :class:`Report` per gradient check, readable as text or JSON."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from gradcheck_lab.comparison import Comparison
from gradcheck_lab.tolerances import Tolerance


@dataclass(frozen=True)
class OracleVotes:
    """The finite-difference and Taylor votes beside reference-vs-autograd.

    ``disagreeing`` names the pairs that disagree, among ``"reference vs autograd"``,
    ``"reference vs finite differences"`` and ``"autograd vs finite differences"``.
    """

    reference_vs_autograd: bool
    reference_vs_fd: bool
    autograd_vs_fd: bool
    taylor_order_reference: float
    taylor_order_autograd: float
    directions: int

    @property
    def disagreeing(self) -> list[str]:
        pairs = {
            "reference vs autograd": self.reference_vs_autograd,
            "reference vs finite differences": self.reference_vs_fd,
            "autograd vs finite differences": self.autograd_vs_fd,
        }
        return [name for name, agrees in pairs.items() if not agrees]

    def verdict(self) -> str:
        if not self.disagreeing:
            return "reference, autograd and finite differences all agree"
        if self.reference_vs_autograd:
            return ("reference and autograd agree with each other but not with finite differences of the "
                    f"reference's value (Taylor orders {self.taylor_order_reference:.2f}): both gradients may "
                    "share a mistake, or the function is not smooth here")
        if self.autograd_vs_fd and not self.reference_vs_fd:
            return "finite differences agree with autograd, not with the reference: the reference gradient is wrong"
        if self.reference_vs_fd and not self.autograd_vs_fd:
            return "finite differences agree with the reference, not with autograd: the torch side is wrong"
        return "all three disagree: " + ", ".join(self.disagreeing)


@dataclass(frozen=True)
class Report:
    """The outcome of one gradient check on one device and dtype.

    ``max_abs_error``/``max_rel_error`` are the largest over the value and every gradient
    (relative errors are relative to each tensor's largest magnitude); ``worst_input``,
    ``worst_index``, ``expected`` and ``actual`` locate the element closest to (or furthest
    past) its bound; ``ratio`` is that element's error over its bound (<= 1 passes).
    """

    passed: bool
    device: str
    dtype: str
    max_abs_error: float
    max_rel_error: float
    ratio: float
    worst_input: str
    worst_index: tuple[int, ...]
    expected: float
    actual: float
    tolerance: Tolerance
    value: Comparison
    gradients: dict[str, Comparison] = field(default_factory=dict)
    oracle: OracleVotes | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["tolerance"] = asdict(self.tolerance)
        if self.oracle is not None:
            data["oracle"]["disagreeing"] = self.oracle.disagreeing
        return data

    def summary(self) -> str:
        status = "passed" if self.passed else "FAILED"
        return (f"{status} on {self.device}/{self.dtype}: max abs error {self.max_abs_error:.3g}, "
                f"max rel error {self.max_rel_error:.3g}, {self.ratio:.3g} of the bound "
                f"({self.tolerance.describe()})")
