"""What a check found: one :class:`Report` per gradient check, readable as text or JSON."""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from gradcheck_lab.core.comparison import Comparison
from gradcheck_lab.core.tolerances import Tolerance

Verdict = Literal["passed", "inconclusive", "mismatch"]


@dataclass(frozen=True)
class OracleVotes:
    """The finite-difference votes beside reference-vs-autograd.

    ``reference_vs_fd`` / ``autograd_vs_fd`` are True (agree), False (disagree) or None: the oracle
    abstained, for the reason in ``abstained`` (a kink along the direction, cancellation, no
    convergence). ``disagreeing`` names the pairs that disagree.
    """

    reference_vs_autograd: bool
    reference_vs_fd: bool | None
    autograd_vs_fd: bool | None
    taylor_order_reference: float
    taylor_order_autograd: float
    directions: int
    abstained: str | None = None
    estimate: float | None = None
    predicted_reference: float | None = None
    predicted_autograd: float | None = None

    @property
    def disagreeing(self) -> list[str]:
        pairs = {
            "reference vs autograd": self.reference_vs_autograd,
            "reference vs finite differences": self.reference_vs_fd,
            "autograd vs finite differences": self.autograd_vs_fd,
        }
        return [name for name, agrees in pairs.items() if agrees is False]

    @property
    def shared_mistake(self) -> bool:
        """Reference and autograd agree with each other, and finite differences disagree with both."""
        return self.reference_vs_autograd and self.reference_vs_fd is False and self.autograd_vs_fd is False

    def verdict(self) -> str:
        if self.reference_vs_fd is None:
            return f"finite differences abstain: {self.abstained}"
        if not self.disagreeing:
            return "reference, autograd and finite differences all agree"
        if self.shared_mistake:
            return ("reference and autograd agree with each other but not with finite differences of the value: "
                    f"along a random direction they predict {self.predicted_reference:.6g}, finite differences "
                    f"give {self.estimate:.6g} (Taylor order {self.taylor_order_reference:.2f}, 2 for a right "
                    "gradient): both gradients may share a mistake")
        if self.autograd_vs_fd and not self.reference_vs_fd:
            return "finite differences agree with autograd, not with the reference: the reference gradient is wrong"
        if self.reference_vs_fd and not self.autograd_vs_fd:
            return "finite differences agree with the reference, not with autograd: the torch side is wrong"
        if self.reference_vs_fd and self.autograd_vs_fd:
            return ("finite differences agree with both within their own resolution (about 1e-6 of the "
                    "directional derivative): the difference is smaller than they can see")
        return "all three disagree: " + ", ".join(self.disagreeing)


class ByName(dict[str, Comparison]):
    """Comparisons keyed by plain parameter name (``report.gradients["x"]``).

    The display labels of earlier releases (``"'x' (input 0)"``) still resolve, with a DeprecationWarning,
    for one release; ``labels`` maps each plain name to its label.
    """

    def __init__(self, items: Mapping[str, Comparison] | Iterable[tuple[str, Comparison]] = (),
                 labels: Mapping[str, str] | None = None) -> None:
        super().__init__(items)
        self.labels = dict(labels or {})

    def __missing__(self, key: str) -> Comparison:
        for name, label in self.labels.items():
            if key == label and name in self:
                warnings.warn(f"report keys are plain parameter names now: use [{name!r}], not [{label!r}]",
                              DeprecationWarning, stacklevel=2)
                return self[name]
        raise KeyError(key)


@dataclass(frozen=True)
class Report:
    """The outcome of one gradient check on one device and dtype.

    ``verdict`` is ``"passed"``, ``"inconclusive"`` (float64 rounding at these inputs can explain the
    disagreement, so they cannot tell right from wrong) or ``"mismatch"``; ``passed`` is true only
    for ``"passed"``.

    ``value`` and ``gradients`` compare the reference with torch in the dtype under test; ``math``
    compares it with torch in float64 on the same inputs (the same objects in a float64 check).
    ``max_abs_error``/``max_rel_error`` are the largest over the value and every gradient of the
    dtype comparison (relative errors are relative to each tensor's largest magnitude);
    ``gradients`` and ``math`` are keyed by plain parameter name (``"x"``; ``"input0"`` where the reference's
    parameters cannot be read); ``labels`` maps each to the label messages use (``"'x' (input 0)"``).
    ``worst_input``, ``worst_index``, ``reference_value`` and ``torch_value`` locate the element closest
    to, or furthest past, its bound in either comparison (``expected``/``actual``: their deprecated names),
    and ``ratio`` is that element's error over its bound (<= 1 passes); ``bound_terms`` holds every term of that bound.
    ``diagnosis`` says how a gradient is wrong when a pattern fits; ``notes`` holds kinks found and
    anything else worth knowing (a reference that modifies its inputs, an unresolved dtype check).
    ``cause`` is the headline of a mismatch that no single element explains (a reference computing below
    float64); ``error_ratio`` (with ``reference_dtype=``) is the reference's error against torch in float64
    over torch's own error in the reference's dtype, the largest over tensors.
    """

    passed: bool
    device: str
    dtype: str
    max_abs_error: float
    max_rel_error: float
    ratio: float
    worst_input: str
    worst_index: tuple[int, ...]
    reference_value: float
    torch_value: float
    tolerance: Tolerance
    value: Comparison
    gradients: dict[str, Comparison] = field(default_factory=dict)
    oracle: OracleVotes | None = None
    verdict: Verdict = "passed"
    math: dict[str, Comparison] = field(default_factory=dict)
    math_tolerance: Tolerance | None = None
    bound_terms: dict[str, float] = field(default_factory=dict)
    diagnosis: str | None = None
    notes: tuple[str, ...] = ()
    cause: str | None = None
    error_ratio: float | None = None
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def expected(self) -> float:
        """Deprecated: :attr:`reference_value`."""
        warnings.warn("Report.expected is deprecated: use Report.reference_value", DeprecationWarning, stacklevel=2)
        return self.reference_value

    @property
    def actual(self) -> float:
        """Deprecated: :attr:`torch_value`."""
        warnings.warn("Report.actual is deprecated: use Report.torch_value", DeprecationWarning, stacklevel=2)
        return self.torch_value

    def label(self, name: str) -> str:
        """The display label of a plain name (``"x"`` -> ``"'x' (input 0)"``)."""
        return self.labels.get(name, name)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if self.oracle is not None:
            data["oracle"]["disagreeing"] = self.oracle.disagreeing
        data["worst_index"] = list(self.worst_index)
        return data

    def summary(self) -> str:
        status = {"passed": "passed", "inconclusive": "INCONCLUSIVE", "mismatch": "FAILED"}[self.verdict]
        return (f"{status} on {self.device}/{self.dtype}: max abs error {self.max_abs_error:.3g}, "
                f"max rel error {self.max_rel_error:.3g}, {self.ratio:.3g} of the bound "
                f"({self.tolerance.describe()})")


def _where(name: str) -> str:
    return "the value (forward)" if name == "value" else f"the gradient of {name}"


def _failing(comparisons: dict[str, Comparison]) -> list[tuple[str, Comparison]]:
    return sorted(((n, c) for n, c in comparisons.items() if not c.passed), key=lambda item: -item[1].ratio)


def mismatch_message(report: Report, extra: list[str] | None = None) -> str:
    """The failure (or inconclusive) message: where, by how much, every term of the bound, and why."""
    math_failing = _failing(report.math) if report.math is not report.gradients else []
    dtype_failing = _failing({"value": report.value, **report.gradients})
    if report.verdict == "inconclusive":
        lines = [_inconclusive_headline(report)]
    elif report.cause:
        lines = [report.cause]
        for _, c in (math_failing or dtype_failing)[:1]:
            lines += _details(c, "torch in float64" if math_failing else f"torch in {report.dtype}")
    elif math_failing:
        name = report.label(math_failing[0][0])
        lines = [f"{_where(name)} disagrees on {report.device}/{report.dtype}: the reference against torch "
                 f"re-run in float64 on the same inputs"]
        lines += _details(math_failing[0][1], "torch in float64")
        if len(math_failing) > 1:
            lines.append("  also disagreeing: " + ", ".join(report.label(n) for n, _ in math_failing[1:]))
    elif dtype_failing:
        name = report.label(dtype_failing[0][0])
        exact = "" if report.dtype == "float64" else (
            f", beyond what {report.dtype} rounding explains at these inputs (the float64 math agrees: "
            f"the torch side loses precision in {report.dtype})" if report.math else "")
        lines = [f"{_where(name)} disagrees on {report.device}/{report.dtype}{exact}"]
        lines += _details(dtype_failing[0][1], f"torch in {report.dtype}")
        if len(dtype_failing) > 1:
            lines.append("  also disagreeing: " + ", ".join(report.label(n) for n, _ in dtype_failing[1:]))
    elif extra:
        lines = [f"the gradients disagree on {report.device}/{report.dtype} only at points where the function is "
                 "not differentiable: a convention at a kink (kinks='subgradient' accepts any value between the "
                 "one-sided derivatives)"]
    else:
        lines = [f"gradients disagree with finite differences on {report.device}/{report.dtype}"]
    tolerance = report.math_tolerance if (math_failing or report.verdict == "inconclusive") else report.tolerance
    if tolerance is not None:
        lines.append(f"  tolerance ({tolerance.precision} comparison): {tolerance.describe()}, "
                     f"resolution {tolerance.resolution:.0e} of the tensor's largest magnitude")
    if report.diagnosis:
        lines.append(f"  diagnosis: {report.diagnosis}")
    lines += [f"  kink: {line}" for line in (extra or [])]
    if report.oracle is not None:
        lines.append(f"  oracle: {report.oracle.verdict()}")
    return "\n".join(lines)


def comparison_lines(c: Comparison, first: str, second: str, *, note: str = "", bound: bool = True) -> list[str]:
    """The lines every mismatch message shows for one comparison: the one message builder.

    ``first`` and ``second`` name the sides in the comparison's order (``c.expected``, ``c.actual``), e.g.
    "reference" and "torch in float64", or "torch Adam" and "numpy Adam"; ``note`` is appended to the
    worst element's line; ``bound`` adds every term of the bound at that element.
    """
    if c.nonfinite:
        return [f"  {c.nonfinite}"]
    fraction = f"{c.failing} of {c.size} element{'s' if c.size != 1 else ''} ({100 * c.failing / max(c.size, 1):.3g}%)"
    worst = f"  worst element {list(c.index)}: {first} {c.expected!r}, {second} {c.actual!r}"
    lines = [
        worst + (f"; {note}" if note else ""),
        f"  max abs error {c.max_abs_error:.3e}, max rel error {c.max_rel_error:.3e} (relative to the tensor's "
        f"largest magnitude, {c.scale:.3e}); {fraction} past their bound, the worst {c.ratio:.3g}x it",
    ]
    if bound:
        lines.append(f"  at the worst element: {c.describe_bound()}")
    return lines


def _details(c: Comparison, torch_label: str) -> list[str]:
    return comparison_lines(c, "reference", torch_label)


def _inconclusive_headline(report: Report) -> str:
    unresolved = [(n, c) for n, c in report.math.items() if c.terms.get("floor*phi", 0.0) > 0]
    name, c = max(unresolved or list(report.math.items()), key=lambda item: item[1].terms.get("floor*phi", 0.0))
    floor = c.terms.get("floor*phi", 0.0)
    return "\n".join([
        f"inconclusive on {report.device}/{report.dtype}: float64 rounding at these inputs can explain the "
        f"disagreement in {_where(report.label(name))}, so they cannot tell a right gradient from a wrong one",
        f"  element {list(c.index)}: reference {c.expected!r}, torch in float64 {c.actual!r}; moving the inputs by "
        f"a few ulps moves the result by up to {floor:.3e} ({floor / c.scale if c.scale else float('inf'):.2e} of "
        "the tensor's largest magnitude)",
        f"  at that element: {c.describe_bound()}",
    ])
