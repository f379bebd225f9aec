"""gradcheck-lab: prove hand-derived gradients and optimizers agree with torch.autograd and torch.optim."""

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
from gradcheck_lab.compare import Comparison, compare
from gradcheck_lab.devices import available_devices, resolve_device, resolve_devices
from gradcheck_lab.dtypes import resolve_dtype
from gradcheck_lab.errors import (
    DeviceError,
    GradcheckError,
    GradientMismatch,
    InvalidInputError,
    NonFiniteError,
    OptimizerMismatch,
    ReferenceContractError,
    TorchFunctionError,
    UnknownDtypeError,
)
from gradcheck_lab.numeric import central_difference, random_directions, taylor_test
from gradcheck_lab.optim_check import (
    OptimizerReport,
    check_optimizer,
    check_torch_implementations,
    gradient_sequence,
    torch_state_dict,
)
from gradcheck_lab.report import OracleVotes, Report
from gradcheck_lab.tolerances import Tolerance, gradient_tolerance, trajectory_tolerance
from gradcheck_lab.verify import VerifyResult, VerifySummary, verify

__version__ = "0.1.0"

__all__ = [
    "CASES",
    "OPTIMIZER_CASES",
    "Case",
    "Comparison",
    "DeviceError",
    "GradcheckError",
    "GradientMismatch",
    "InvalidInputError",
    "NonFiniteError",
    "OptimizerCase",
    "OptimizerMismatch",
    "OptimizerReport",
    "OracleVotes",
    "ReferenceContractError",
    "Report",
    "Tolerance",
    "TorchFunctionError",
    "UnknownDtypeError",
    "VerifyResult",
    "VerifySummary",
    "available_devices",
    "central_difference",
    "check_case",
    "check_gradients",
    "check_optimizer",
    "check_optimizer_case",
    "check_torch_implementations",
    "compare",
    "gradient_sequence",
    "gradient_tolerance",
    "random_directions",
    "register",
    "register_optimizer",
    "resolve_device",
    "resolve_devices",
    "resolve_dtype",
    "taylor_test",
    "torch_state_dict",
    "trajectory_tolerance",
    "verify",
]
