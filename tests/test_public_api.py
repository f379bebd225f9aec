"""The public surface: listed once in gradcheck_lab/__init__.py, lazy, and every name where it says it is."""

from __future__ import annotations

import ast
import importlib
import inspect
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import gradcheck_lab as gl

INIT = Path(gl.__file__)


def _type_checking_imports() -> dict[str, str]:
    """name -> module of each ``from m import x as x`` in __init__.py's TYPE_CHECKING block."""
    tree = ast.parse(INIT.read_text())
    block = next(n for n in tree.body if isinstance(n, ast.If) and ast.unparse(n.test) == "TYPE_CHECKING")
    homes = {}
    for node in block.body:
        assert isinstance(node, ast.ImportFrom), ast.unparse(node)
        for alias in node.names:
            assert alias.asname == alias.name, f"{ast.unparse(node)}: mypy --strict needs `import {alias.name} as " \
                                               f"{alias.name}` to see an explicit re-export"
            homes[alias.name] = str(node.module)
    return homes


def test_all_is_a_literal_list_matching_the_type_checking_imports():
    tree = ast.parse(INIT.read_text())
    assigned = [n.value for n in tree.body
                if isinstance(n, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in n.targets)]
    assert len(assigned) == 1 and isinstance(assigned[0], ast.List), "__all__ must be one literal list (mypy)"
    literal = [ast.literal_eval(e) for e in assigned[0].elts]
    assert literal == gl.__all__
    assert len(set(literal)) == len(literal)
    assert set(literal) == set(_type_checking_imports())


@pytest.mark.parametrize("name", gl.__all__)
def test_every_public_name_resolves_without_warning_to_its_home(name):
    home = _type_checking_imports()[name]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        value = getattr(gl, name)
    if home == "gradcheck_lab":  # a submodule
        assert inspect.ismodule(value) and value.__name__ == f"gradcheck_lab.{name}"
    else:
        assert value is getattr(importlib.import_module(home), name)
    assert name in dir(gl)


DEPRECATED = {
    "Comparison": "gradcheck_lab.core.comparison", "compare": "gradcheck_lab.core.comparison",
    "available_devices": "gradcheck_lab.core.devices", "resolve_device": "gradcheck_lab.core.devices",
    "resolve_devices": "gradcheck_lab.core.devices", "diagnose": "gradcheck_lab.core.diagnosis",
    "central_difference": "gradcheck_lab.core.oracle", "random_directions": "gradcheck_lab.core.oracle",
    "taylor_test": "gradcheck_lab.core.oracle", "OracleVotes": "gradcheck_lab.core.report",
    "Tolerance": "gradcheck_lab.core.tolerances", "gradient_tolerance": "gradcheck_lab.core.tolerances",
    "trajectory_tolerance": "gradcheck_lab.core.tolerances", "VerifySummary": "gradcheck_lab.gradients.search",
    "OPTIMIZER_CASES": "gradcheck_lab.cases.registry", "check_optimizer_case": "gradcheck_lab.cases.registry",
    "check_torch_implementations": "gradcheck_lab.optim.check", "torch_state_dict": "gradcheck_lab.optim.sides",
}


@pytest.mark.parametrize("name", sorted(DEPRECATED))
def test_a_name_dropped_from_the_top_level_still_works_for_a_release_and_names_its_home(name):
    assert name not in gl.__all__
    with pytest.warns(DeprecationWarning, match=rf"gradcheck_lab\.{name} .*from {DEPRECATED[name]} import {name}"):
        value = getattr(gl, name)
    assert value is getattr(importlib.import_module(DEPRECATED[name]), name)


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'check_gradient'"):
        gl.check_gradient  # noqa: B018


def test_strategies_as_attribute_and_as_module():
    import gradcheck_lab.gradients.strategies as source
    import gradcheck_lab.strategies as thin

    assert gl.strategies is thin
    public = {name for name, value in vars(source).items()
              if not name.startswith("_") and getattr(value, "__module__", None) == source.__name__}
    assert public <= set(thin.__all__), f"gradcheck_lab/strategies.py lacks {sorted(public - set(thin.__all__))}"
    for name in thin.__all__:
        assert getattr(thin, name) is getattr(source, name)


def test_importing_the_package_imports_no_torch_and_the_references_none_of_the_harness():
    code = ("import sys, gradcheck_lab, gradcheck_lab.reference.optim, gradcheck_lab.reference.losses; "
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('gradcheck_lab.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = eval(out)
    assert "gradcheck_lab.reference.optim" in loaded
    assert all(m.startswith("gradcheck_lab.reference") for m in loaded), loaded  # no torch, no harness module
