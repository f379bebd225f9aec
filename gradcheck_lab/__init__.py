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
                     "register", "register_optimizer"), "cases"),
    "check_gradients": "check",
    "check_layer": "layers",
    "check_update_rule": "update_rule",
    "check_vjp": "vjp",
    "diagnose": "diagnosis",
    **dict.fromkeys(("verify_layer", "verify_update_rule", "verify_vjp"), "properties"),
    **dict.fromkeys(("Comparison", "compare"), "comparison"),
    **dict.fromkeys(("available_devices", "resolve_device", "resolve_devices"), "devices"),
    "resolve_dtype": "dtypes",
    **dict.fromkeys(("DeviceError", "GradcheckError", "GradientMismatch", "InconclusiveWarning", "InvalidInputError",
                     "NonFiniteError", "OptimizerMismatch", "ReferenceContractError", "ReferenceMutationWarning",
                     "TorchFunctionError", "UnknownDtypeError"), "errors"),
    **dict.fromkeys(("central_difference", "random_directions", "taylor_test"), "numeric"),
    **dict.fromkeys(("OptimizerReport", "check_optimizer", "check_torch_implementations", "gradient_sequence",
                     "torch_state_dict"), "optim_check"),
    **dict.fromkeys(("OracleVotes", "Report"), "report"),
    **dict.fromkeys(("Tolerance", "gradient_tolerance", "trajectory_tolerance"), "tolerances"),
    **dict.fromkeys(("VerifyResult", "VerifySummary", "verify"), "search"),
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'gradcheck_lab' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"gradcheck_lab.{module}"), name)
    globals()[name] = value  # the next access skips __getattr__
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


if TYPE_CHECKING:  # the eager imports, for type checkers and IDEs
    from gradcheck_lab.cases import (
        CASES,
        OPTIMIZER_CASES,
        Case,
        OptimizerCase,
        check_case,
        check_optimizer_case,
        register,
        register_optimizer,
    )
    from gradcheck_lab.check import check_gradients
    from gradcheck_lab.comparison import Comparison, compare
    from gradcheck_lab.devices import available_devices, resolve_device, resolve_devices
    from gradcheck_lab.diagnosis import diagnose
    from gradcheck_lab.dtypes import resolve_dtype
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
    from gradcheck_lab.layers import check_layer
    from gradcheck_lab.numeric import central_difference, random_directions, taylor_test
    from gradcheck_lab.optim_check import (
        OptimizerReport,
        check_optimizer,
        check_torch_implementations,
        gradient_sequence,
        torch_state_dict,
    )
    from gradcheck_lab.properties import verify_layer, verify_update_rule, verify_vjp
    from gradcheck_lab.report import OracleVotes, Report
    from gradcheck_lab.search import VerifyResult, VerifySummary, verify
    from gradcheck_lab.tolerances import Tolerance, gradient_tolerance, trajectory_tolerance
    from gradcheck_lab.update_rule import check_update_rule
    from gradcheck_lab.vjp import check_vjp
