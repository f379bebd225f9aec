"""What an optimizer check found: :class:`OptimizerReport`, and the one message an optimizer mismatch reads as.

Words: the *reference* is the user's implementation (a NumPy optimizer class, a course update rule);
*torch* is the ``torch.optim`` class it is checked against.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from gradcheck_lab.core.comparison import Comparison
from gradcheck_lab.core.dtypes import dtype_name
from gradcheck_lab.core.report import Verdict
from gradcheck_lab.core.tolerances import Tolerance

PARAM = "param"
"""The entry name of a parameter itself (beside the state entries)."""


@dataclass(frozen=True)
class OptimizerReport:
    """The outcome of a trajectory comparison: the worst agreement over all steps, parameters and entries.

    ``verdict`` is ``"passed"`` or ``"mismatch"`` (the report an
    :class:`~gradcheck_lab.errors.OptimizerMismatch` carries); ``passed`` is true only for ``"passed"``.
    ``reference`` names the user's implementation and ``torch`` the torch.optim class. ``worst_step``,
    ``worst_param`` and ``worst_entry`` (``"param"`` or a torch state entry) locate the element closest to,
    or furthest past, its bound; ``reference_value`` and ``torch_value`` are the two sides there and
    ``ratio`` its error over the bound (<= 1 passes). ``state_entries`` lists the torch state entries
    compared; ``state_names`` says which entry of the reference each was compared with
    (``{"exp_avg": "m"}`` for an update rule's ``config['m']``).
    """

    passed: bool
    steps: int
    device: str
    dtype: str
    tolerance: Tolerance
    reference: str = "reference"
    torch: str = "torch"
    verdict: Verdict = "passed"
    max_abs_error: float = 0.0
    max_rel_error: float = 0.0
    ratio: float = 0.0
    worst_step: int = 0
    worst_param: int = 0
    worst_entry: str = PARAM
    worst_index: tuple[int, ...] = ()
    reference_value: float = 0.0
    torch_value: float = 0.0
    state_entries: list[str] = field(default_factory=list)
    state_names: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["worst_index"] = list(self.worst_index)
        data["state_names"] = dict(self.state_names)
        return data

    def summary(self) -> str:
        status = {"passed": "passed", "inconclusive": "INCONCLUSIVE", "mismatch": "FAILED"}[self.verdict]
        state = f"state entries {', '.join(self.state_entries)}" if self.state_entries else "parameters only"
        return (f"{status} on {self.device}/{self.dtype} over {self.steps} steps, {self.reference} against "
                f"{self.torch} ({state}): max abs error {self.max_abs_error:.3g}, max rel error "
                f"{self.max_rel_error:.3g}, {self.ratio:.3g} of the bound ({self.tolerance.describe()})")


@dataclass(frozen=True)
class Labels:
    """How a message names the two sides and the reference's state entries.

    ``entry(name)`` names a state entry of the reference (``"config['v']"``, ``"state entry 'exp_avg'"``);
    ``naming`` says where the pairing of reference entries with torch's came from (``"by the CS231n
    naming; pass state_names= to change it"``), empty where the names are the same on both sides.
    """

    reference: str
    torch: str
    entry: Callable[[str], str] = lambda name: f"state entry {name!r}"
    naming: str = ""


def _where(param: int, entry: str, shapes: Sequence[tuple[int, ...]]) -> str:
    shape = f" (shape {shapes[param]})" if param < len(shapes) else ""
    if entry == "lr":
        return f"the learning rate of the group holding parameter {param}"
    return f"parameter {param}{shape}" + ("" if entry == PARAM else f", state entry {entry!r}")


def _pairing(names: Mapping[str, str], labels: Labels) -> str:
    """``config['m'] compared with torch's exp_avg, config['v'] with exp_avg_sq (by the CS231n naming; ...)``."""
    pairs = [f"{labels.entry(ref)} with torch's {t}" if k == 0 else f"{labels.entry(ref)} with {t}"
             for k, (t, ref) in enumerate(sorted(names.items()))]
    return ", ".join(pairs) + (f" ({labels.naming})" if labels.naming else "")


def mismatch_message(
    report: OptimizerReport,
    step: int,
    failing: Mapping[tuple[int, str], Comparison],
    grads: Sequence[np.ndarray | None],
    *,
    labels: Labels,
    shapes: Sequence[tuple[int, ...]],
    precision: torch.dtype,
    both_nonfinite: bool,
    names: Mapping[str, str],
    renaming: Mapping[str, str] | None = None,
) -> tuple[str, int, str]:
    """The message of an optimizer mismatch, and the (parameter, entry) it names first.

    A parameter entry is named first when one diverges (state differences explain, parameters show).
    ``names`` maps each torch state entry compared to the reference's entry (named in every message);
    ``renaming`` (reference entry -> torch entry), where given, is a pairing under which the reference's
    state agrees with torch's at this step: the state is named differently, not computed wrongly.
    """
    (param, entry), c = min(failing.items(), key=lambda kv: (kv[0][1] != PARAM, -kv[1].ratio))
    source = names.get(entry)
    where = _where(param, entry, shapes)
    if source is not None and source != entry:  # a reference entry named otherwise: say which, and why
        where += (f": {labels.entry(source)} compared with torch's {entry}"
                 + (f" ({labels.naming})" if labels.naming else ""))
    lines = [f"optimizer diverges at step {step} on {report.device}/{report.dtype}: {where}"]
    if renaming:
        suggestion = "{" + ", ".join(f"{k!r}: {v!r}" for k, v in sorted(renaming.items())) + "}"
        held = ", ".join(f"{labels.entry(k)} holds what torch calls {v}" for k, v in sorted(renaming.items())
                         if names.get(v) != k)
        lines.append(f"  the state is named differently, not computed wrongly: {held} (they agree at this step); "
                     f"pass state_names={suggestion}")
    if c.nonfinite:
        lines.append(f"  {c.nonfinite}")
        if both_nonfinite:
            finfo = torch.finfo(precision)
            lines.append(f"  {labels.torch} is not finite there either: this configuration overflows or divides by "
                         f"zero in {dtype_name(precision)} (a hyperparameter below {finfo.tiny * finfo.eps:.2g}, such "
                         "as eps=1e-8 in float16, rounds to 0), so there is nothing to compare")
    else:
        g = grads[param] if param < len(grads) else None
        grad_here = ("None (skipped)" if g is None
                     else f"{float(g[c.index]):.3g}" if len(c.index) == g.ndim else "n/a")
        lines.append(f"  worst element {list(c.index)}: reference {c.actual!r} ({labels.reference}), "
                     f"torch {c.expected!r} ({labels.torch}); gradient there this step {grad_here}")
        lines.append(f"  max abs error {c.max_abs_error:.3e}, max rel error {c.max_rel_error:.3e}, "
                     f"{c.ratio:.3g}x the allowed bound")
    others = [f"parameter {p}" + ("" if e == PARAM else f" state entry {e!r}")
              + (f" ({labels.entry(names[e])})" if e in names and names[e] != e else "")
              for (p, e) in failing if (p, e) != (param, entry)]
    if others:
        lines.append("  also diverging at this step: " + ", ".join(others))
    if names:
        lines.append(f"  state compared: {_pairing(names, labels)}")
    lines.append(f"  tolerance: {report.tolerance.describe()} (for {report.steps} steps)")
    return "\n".join(lines), param, entry
