"""The case registry: each case binds a NumPy reference to its torch equivalent.

Adding an op is adding one :func:`register` call: the generic tests, ``gradcheck-lab verify`` and the
benchmarks sweep :data:`CASES` (and :data:`OPTIMIZER_CASES`). Importing this module registers the built-in
catalogues (:mod:`~gradcheck_lab.cases.gradient_cases`, :mod:`~gradcheck_lab.cases.layer_cases`,
:mod:`~gradcheck_lab.cases.optimizer_cases`); a user's cases come from a module (:func:`load_case_module`) or
the ``gradcheck_lab.cases`` entry-point group (:func:`load_entry_point_cases`).
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

import torch
from hypothesis import strategies as st

from gradcheck_lab.cases import ENTRY_POINT_GROUP
from gradcheck_lab.core.dtypes import FLOAT_DTYPES, dtype_name, resolve_dtype
from gradcheck_lab.core.report import Report
from gradcheck_lab.gradients.check import check_gradients
from gradcheck_lab.gradients.inputs import ReferenceFn, TorchFn
from gradcheck_lab.optim.check import check_optimizer
from gradcheck_lab.optim.report import OptimizerReport
from gradcheck_lab.optim.sides import Schedule

ALL_DTYPES = tuple(FLOAT_DTYPES)


@dataclass(frozen=True)
class Case:
    """A reference/torch pair with the inputs it is checked on.

    ``inputs`` is a hypothesis strategy of input tuples (float64, or integer for data);
    ``dtypes`` the dtypes it supports; ``tolerances`` optional per-dtype
    ``{"rtol": ..., "atol": ...}`` overrides, each with a reason in ``description``;
    ``constants`` the indices of data inputs (labels, targets, masks: see ``check_gradients``);
    ``options`` further keyword arguments for ``check_gradients`` (``kinks=...``, say).
    """

    name: str
    reference: ReferenceFn
    torch_fn: TorchFn
    inputs: st.SearchStrategy[tuple[Any, ...]]
    dtypes: tuple[str, ...] = ALL_DTYPES
    tolerances: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    description: str = ""
    constants: tuple[int, ...] = ()
    options: Mapping[str, Any] = field(default_factory=dict)

    def check_options(self, dtype: str) -> dict[str, Any]:
        """The keyword arguments ``check_gradients`` takes for this case in ``dtype``."""
        return {"constants": self.constants, **self.options, **self.tolerances.get(dtype, {})}


@dataclass(frozen=True)
class OptimizerCase:
    """A NumPy optimizer and its torch.optim class with the hyperparameters they are checked under."""

    name: str
    numpy_cls: type
    torch_cls: type
    hyper: Mapping[str, Any]
    shapes: tuple[tuple[int, ...], ...] = ((4, 3), (3,), (2, 2, 2))
    steps: int = 50
    # float16 cannot hold Adam's default eps (1e-8 rounds to 0), so both sides divide 0 by 0.
    dtypes: tuple[str, ...] = ("float64", "float32")
    description: str = ""
    # The matrix check_optimizer covers (see there): groups by index, a scheduler on both sides,
    # gradients that are None at some steps, a state-dict swap after a step.
    param_groups: tuple[Mapping[str, Any], ...] | None = None
    scheduler: Schedule | None = None
    none_grads: bool = False
    swap_state_at: int | None = None


CASES: dict[str, Case] = {}
OPTIMIZER_CASES: dict[str, OptimizerCase] = {}
REGISTERED_BY: dict[str, str] = {}
"""Case name -> the module that registered it (whoever imported that module first)."""


def _caller_module() -> str:
    """The module of the code that called ``register``/``register_optimizer``."""
    frame = inspect.currentframe()
    try:
        caller = frame.f_back.f_back if frame is not None and frame.f_back is not None else None
        return str(caller.f_globals.get("__name__", "")) if caller is not None else ""
    finally:
        del frame


def register(case: Case) -> Case:
    """Add a case to :data:`CASES`; names are unique."""
    __tracebackhide__ = True
    if case.name in CASES:
        raise ValueError(f"a case named {case.name!r} is already registered")
    for dtype in case.dtypes:
        resolve_dtype(dtype)
    CASES[case.name] = case
    REGISTERED_BY[case.name] = _caller_module()
    return case


def register_optimizer(case: OptimizerCase) -> OptimizerCase:
    """Add an optimizer case to :data:`OPTIMIZER_CASES`; names are unique."""
    __tracebackhide__ = True
    if case.name in OPTIMIZER_CASES:
        raise ValueError(f"an optimizer case named {case.name!r} is already registered")
    OPTIMIZER_CASES[case.name] = case
    REGISTERED_BY[case.name] = _caller_module()
    return case


def get_case(case: Case | str) -> Case:
    __tracebackhide__ = True
    if isinstance(case, Case):
        return case
    try:
        return CASES[case]
    except KeyError:
        raise KeyError(f"no case named {case!r}; known cases: {', '.join(sorted(CASES))}") from None


def check_case(case: Case | str, inputs: Any, *, device: str | torch.device = "cpu",
               dtype: str | torch.dtype = "float64", **kwargs: Any) -> Report:
    """:func:`check_gradients` for a registered case (by object or name), with its tolerance overrides."""
    __tracebackhide__ = True
    case = get_case(case)
    options = {**case.check_options(dtype_name(resolve_dtype(dtype))), **kwargs}
    return check_gradients(case.reference, case.torch_fn, inputs, device=device, dtype=dtype, **options)


def check_optimizer_case(case: OptimizerCase | str, *, device: str | torch.device = "cpu",
                         dtype: str | torch.dtype = "float64", **kwargs: Any) -> OptimizerReport:
    """:func:`check_optimizer` for a registered optimizer case."""
    __tracebackhide__ = True
    case = OPTIMIZER_CASES[case] if isinstance(case, str) else case
    options = {"hyper": case.hyper, "shapes": case.shapes, "steps": case.steps, "param_groups": case.param_groups,
               "scheduler": case.scheduler, "none_grads": case.none_grads, "swap_state_at": case.swap_state_at,
               **kwargs}
    return check_optimizer(case.numpy_cls, case.torch_cls, device=device, dtype=dtype, **options)


# --- a user's cases ---

class CaseLoadError(Exception):
    """A user's case module or entry point could not be loaded (a usage error: nothing was checked)."""


def load_entry_point_cases() -> list[str]:
    """Import every module registered under the ``gradcheck_lab.cases`` entry-point group; their names.

    One that fails raises :class:`CaseLoadError` naming it: skipping it would let a run pass without its cases.
    """
    loaded = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            target = ep.load()
            if callable(target):  # a function that registers cases when called
                target()
        except Exception as exc:
            raise CaseLoadError(f"the {ENTRY_POINT_GROUP} entry point {ep.name!r} ({ep.value}) failed to load: "
                                f"{type(exc).__name__}: {exc}") from exc
        loaded.append(ep.value)
    return loaded


def cases_of_module(name: str) -> list[str]:
    """The cases (gradient and optimizer) that module ``name`` or one of its submodules registered, in order."""
    return [n for n in [*CASES, *OPTIMIZER_CASES]
            if REGISTERED_BY.get(n) == name or REGISTERED_BY.get(n, "").startswith(name + ".")]


def load_case_module(name: str) -> list[str]:
    """Import a user's module (registering its cases as it imports); the names of the cases it registered.

    A module imported before (by an entry point, say) registered its cases then: they are found all the same.
    """
    before = set(CASES) | set(OPTIMIZER_CASES)
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())  # like `python -m`: a module in the current folder is found
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and name.startswith(exc.name):
            raise CaseLoadError(f"--cases: no module named {name!r} (from the current folder or sys.path)") from exc
        raise CaseLoadError(f"--cases {name}: importing it failed: {type(exc).__name__}: {exc}") from exc
    except Exception as exc:
        raise CaseLoadError(f"--cases {name}: importing it failed: {type(exc).__name__}: {exc}") from exc
    mine = set(cases_of_module(name))
    return [n for n in [*CASES, *OPTIMIZER_CASES] if n not in before or n in mine]



def load_user_cases(modules: Sequence[str] = ()) -> list[str]:
    """Every ``gradcheck_lab.cases`` entry point, then each of ``modules``; the names of the cases those modules
    registered, in order (see :func:`load_case_module`). Raises :class:`CaseLoadError` naming what failed."""
    load_entry_point_cases()
    return [n for module in modules for n in load_case_module(module)]

# The built-in catalogues register themselves on import (they import the names above).
from gradcheck_lab.cases import gradient_cases, layer_cases, optimizer_cases  # noqa: E402, F401
