"""gradcheck-lab: prove hand-derived gradients and optimizers agree with torch.autograd and torch.optim.

The package imports lazily: ``import gradcheck_lab`` (and the pytest plugin, which loads in every
pytest run of an environment it is installed in) costs no torch import until a name below is used.
``gradcheck_lab.reference`` (the NumPy references) never imports torch at all.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Each public name and the module that defines it.
_EXPORTS: dict[str, str] = {
    **dict.fromkeys(("CASES", "OPTIMIZER_CASES", "Case", "OptimizerCase", "check_case", "check_optimizer_case",
                     "register", "register_optimizer"), "cases.registry"),
    "check_gradients": "gradients.check",
    "check_layer": "gradients.layers",
    "check_update_rule": "optim.update_rule",
    "check_vjp": "gradients.vjp",
    "diagnose": "core.diagnosis",
    **dict.fromkeys(("verify_layer", "verify_vjp"), "gradients.properties"),
    "verify_update_rule": "optim.search",
    **dict.fromkeys(("Comparison", "compare"), "core.comparison"),
    **dict.fromkeys(("available_devices", "resolve_device", "resolve_devices"), "core.devices"),
    "resolve_dtype": "core.dtypes",
    **dict.fromkeys(("DeviceError", "GradcheckError", "GradientMismatch", "InconclusiveWarning", "InvalidInputError",
                     "NonFiniteError", "OptimizerMismatch", "ReferenceContractError", "ReferenceMutationWarning",
                     "TorchFunctionError", "UnknownDtypeError"), "errors"),
    **dict.fromkeys(("central_difference", "random_directions", "taylor_test"), "core.oracle"),
    **dict.fromkeys(("OptimizerReport", "Schedule", "check_optimizer", "check_torch_implementations",
                     "gradient_sequence", "torch_state_dict"), "optim.check"),
    **dict.fromkeys(("OracleVotes", "Report"), "core.report"),
    **dict.fromkeys(("Tolerance", "gradient_tolerance", "trajectory_tolerance"), "core.tolerances"),
    **dict.fromkeys(("VerifyResult", "VerifySummary", "verify"), "gradients.search"),
}

__all__ = sorted(_EXPORTS)

_SUBMODULES = {"strategies": "gradients.strategies"}
"""Submodules reachable as attributes (``gl.strategies.labels``), imported on first use."""


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"gradcheck_lab.{_SUBMODULES[name]}")
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'gradcheck_lab' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"gradcheck_lab.{module}"), name)
    globals()[name] = value  # the next access skips __getattr__
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


if TYPE_CHECKING:  # the eager imports, for type checkers and IDEs
    from gradcheck_lab.cases.registry import (
        CASES,
        OPTIMIZER_CASES,
        Case,
        OptimizerCase,
        check_case,
        check_optimizer_case,
        register,
        register_optimizer,
    )
    from gradcheck_lab.core.comparison import Comparison, compare
    from gradcheck_lab.core.devices import available_devices, resolve_device, resolve_devices
    from gradcheck_lab.core.diagnosis import diagnose
    from gradcheck_lab.core.dtypes import resolve_dtype
    from gradcheck_lab.core.oracle import central_difference, random_directions, taylor_test
    from gradcheck_lab.core.report import OracleVotes, Report
    from gradcheck_lab.core.tolerances import Tolerance, gradient_tolerance, trajectory_tolerance
    from gradcheck_lab.errors import (
        DeviceError,
        GradcheckError,
        GradientMismatch,
        InconclusiveWarning,
        InvalidInputError,
        NonFiniteError,
        OptimizerMismatch,
        ReferenceContractError,
        ReferenceMutationWarning,
        TorchFunctionError,
        UnknownDtypeError,
    )
    from gradcheck_lab.gradients.check import check_gradients
    from gradcheck_lab.gradients.layers import check_layer
    from gradcheck_lab.gradients.properties import verify_layer, verify_vjp
    from gradcheck_lab.gradients.search import VerifyResult, VerifySummary, verify
    from gradcheck_lab.gradients.vjp import check_vjp
    from gradcheck_lab.optim.check import (
        OptimizerReport,
        Schedule,
        check_optimizer,
        check_torch_implementations,
        gradient_sequence,
        torch_state_dict,
    )
    from gradcheck_lab.optim.search import verify_update_rule
    from gradcheck_lab.optim.update_rule import check_update_rule
