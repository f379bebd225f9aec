"""gradcheck-lab: prove hand-derived gradients and optimizers agree with torch.autograd and torch.optim.

The public names are ``__all__`` below, listed once. The package imports lazily: ``import gradcheck_lab``
(and the pytest plugin, which loads in every pytest run of an environment it is installed in) costs no
torch import until one of them is used. ``gradcheck_lab.reference`` (the NumPy references) never imports
torch at all.

Adding a public name is two lines: its entry in ``__all__`` and its import line in the ``TYPE_CHECKING``
block at the end. That block is the one table of where each name lives: type checkers read it (the
``x as x`` form is what ``mypy --strict`` needs to see an explicit re-export), and at run time
``__getattr__`` reads it from this file's source to import the name's module on first use.
"""

from __future__ import annotations

import ast
import functools
import importlib
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [  # sorted (ruff RUF022); each name's home is its import line in the TYPE_CHECKING block
    "CASES",
    "CandidateContractError",
    "Case",
    "DeviceError",
    "DtypeOverflowError",
    "GradcheckError",
    "GradientMismatch",
    "InconclusiveWarning",
    "InvalidInputError",
    "NonFiniteError",
    "NondeterministicReferenceError",
    "OptimizerCase",
    "OptimizerMismatch",
    "OptimizerReport",
    "ReferenceContractError",
    "ReferenceMutationWarning",
    "Report",
    "ResourceError",
    "Schedule",
    "TorchFunctionError",
    "TorchFunctionReport",
    "UnknownDtypeError",
    "VerifyResult",
    "check_case",
    "check_gradients",
    "check_hessian",
    "check_hvp",
    "check_jvp",
    "check_layer",
    "check_optimizer",
    "check_torch_function",
    "check_update_rule",
    "check_vjp",
    "gradient_sequence",
    "register",
    "register_optimizer",
    "resolve_dtype",
    "strategies",
    "verify",
    "verify_hvp",
    "verify_jvp",
    "verify_layer",
    "verify_optimizer",
    "verify_torch_function",
    "verify_update_rule",
    "verify_vjp",
]

_MOVED: dict[str, str] = {
    "Comparison": "gradcheck_lab.core.comparison",
    "compare": "gradcheck_lab.core.comparison",
    "available_devices": "gradcheck_lab.core.devices",
    "resolve_device": "gradcheck_lab.core.devices",
    "resolve_devices": "gradcheck_lab.core.devices",
    "diagnose": "gradcheck_lab.core.diagnosis",
    "central_difference": "gradcheck_lab.core.oracle",
    "random_directions": "gradcheck_lab.core.oracle",
    "taylor_test": "gradcheck_lab.core.oracle",
    "OracleVotes": "gradcheck_lab.core.report",
    "Tolerance": "gradcheck_lab.core.tolerances",
    "gradient_tolerance": "gradcheck_lab.core.tolerances",
    "trajectory_tolerance": "gradcheck_lab.core.tolerances",
    "VerifySummary": "gradcheck_lab.gradients.search",
    "OPTIMIZER_CASES": "gradcheck_lab.cases.registry",
    "check_optimizer_case": "gradcheck_lab.cases.registry",
    "check_torch_implementations": "gradcheck_lab.optim.check",
    "torch_state_dict": "gradcheck_lab.optim.sides",
}
"""Names dropped from the top level in 0.2, still served (with a DeprecationWarning) until 0.3: name -> home."""


@functools.cache
def _homes() -> dict[str, str]:
    """Each public name -> the module it lives in, read from the ``TYPE_CHECKING`` imports of this file."""
    tree = ast.parse(Path(__file__).read_text(encoding="utf-8"))
    block = next(node for node in tree.body
                 if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING")
    return {alias.asname or alias.name: f"{node.module}.{alias.name}" if node.module == __name__ else str(node.module)
            for node in block.body if isinstance(node, ast.ImportFrom) for alias in node.names}


if not TYPE_CHECKING:  # hidden from type checkers, so that they report a misspelt gl.<name>

    def __getattr__(name: str) -> Any:
        __tracebackhide__ = True  # a misspelt name is the caller's problem: pytest shows their line
        if name in __all__:
            home = _homes()[name]
            if home == f"{__name__}.{name}":  # a submodule (gl.strategies)
                return importlib.import_module(home)
            value = getattr(importlib.import_module(home), name)
            globals()[name] = value  # the next access skips __getattr__
            return value
        if name in _MOVED:
            warnings.warn(f"gradcheck_lab.{name} is deprecated and leaves the top level in gradcheck-lab 0.3: "
                          f"use `from {_MOVED[name]} import {name}`", DeprecationWarning, stacklevel=2)
            return getattr(importlib.import_module(_MOVED[name]), name)
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted({*globals(), *__all__})


if TYPE_CHECKING:  # the home of each name in __all__ (see the module docstring); nothing here runs
    from gradcheck_lab import strategies as strategies
    from gradcheck_lab.cases.registry import CASES as CASES
    from gradcheck_lab.cases.registry import Case as Case
    from gradcheck_lab.cases.registry import OptimizerCase as OptimizerCase
    from gradcheck_lab.cases.registry import check_case as check_case
    from gradcheck_lab.cases.registry import register as register
    from gradcheck_lab.cases.registry import register_optimizer as register_optimizer
    from gradcheck_lab.core.dtypes import resolve_dtype as resolve_dtype
    from gradcheck_lab.core.report import Report as Report
    from gradcheck_lab.errors import CandidateContractError as CandidateContractError
    from gradcheck_lab.errors import DeviceError as DeviceError
    from gradcheck_lab.errors import DtypeOverflowError as DtypeOverflowError
    from gradcheck_lab.errors import GradcheckError as GradcheckError
    from gradcheck_lab.errors import GradientMismatch as GradientMismatch
    from gradcheck_lab.errors import InconclusiveWarning as InconclusiveWarning
    from gradcheck_lab.errors import InvalidInputError as InvalidInputError
    from gradcheck_lab.errors import NondeterministicReferenceError as NondeterministicReferenceError
    from gradcheck_lab.errors import NonFiniteError as NonFiniteError
    from gradcheck_lab.errors import OptimizerMismatch as OptimizerMismatch
    from gradcheck_lab.errors import ReferenceContractError as ReferenceContractError
    from gradcheck_lab.errors import ReferenceMutationWarning as ReferenceMutationWarning
    from gradcheck_lab.errors import ResourceError as ResourceError
    from gradcheck_lab.errors import TorchFunctionError as TorchFunctionError
    from gradcheck_lab.errors import UnknownDtypeError as UnknownDtypeError
    from gradcheck_lab.gradients.check import check_gradients as check_gradients
    from gradcheck_lab.gradients.hvp import check_hessian as check_hessian
    from gradcheck_lab.gradients.hvp import check_hvp as check_hvp
    from gradcheck_lab.gradients.jvp import check_jvp as check_jvp
    from gradcheck_lab.gradients.layers import check_layer as check_layer
    from gradcheck_lab.gradients.properties import verify_layer as verify_layer
    from gradcheck_lab.gradients.properties import verify_vjp as verify_vjp
    from gradcheck_lab.gradients.search import VerifyResult as VerifyResult
    from gradcheck_lab.gradients.search import verify as verify
    from gradcheck_lab.gradients.second_search import verify_hvp as verify_hvp
    from gradcheck_lab.gradients.second_search import verify_jvp as verify_jvp
    from gradcheck_lab.gradients.torch_function import check_torch_function as check_torch_function
    from gradcheck_lab.gradients.torch_function_rule import TorchFunctionReport as TorchFunctionReport
    from gradcheck_lab.gradients.torch_function_search import verify_torch_function as verify_torch_function
    from gradcheck_lab.gradients.vjp import check_vjp as check_vjp
    from gradcheck_lab.optim.check import check_optimizer as check_optimizer
    from gradcheck_lab.optim.report import OptimizerReport as OptimizerReport
    from gradcheck_lab.optim.search import verify_optimizer as verify_optimizer
    from gradcheck_lab.optim.search import verify_update_rule as verify_update_rule
    from gradcheck_lab.optim.sides import Schedule as Schedule
    from gradcheck_lab.optim.trajectory import gradient_sequence as gradient_sequence
    from gradcheck_lab.optim.update_rule import check_update_rule as check_update_rule
