"""Guards that keep the structure honest: the import contracts (pyproject.toml) and no private name across modules."""

from __future__ import annotations

import ast
import importlib.util
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = "import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports())"


def lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    pytest.importorskip("importlinter")
    return subprocess.run([sys.executable, "-c", LINT_IMPORTS], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_the_import_contracts_hold():
    """`lint-imports`: the layers (cli > bench, runner > cases > gradients | optim > core > errors) and the
    NumPy references importing neither torch nor the harness."""
    proc = lint_imports(ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 broken" in proc.stdout


def test_the_import_contracts_catch_an_arrow_back_up(tmp_path):
    for folder in ("gradcheck_lab", "reference"):
        shutil.copytree(ROOT / folder, tmp_path / folder, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    with (tmp_path / "gradcheck_lab" / "core" / "dtypes.py").open("a") as f:
        f.write("\nfrom gradcheck_lab.cases import registry  # noqa\n")
    with (tmp_path / "reference" / "linear.py").open("a") as f:
        f.write("\nimport torch  # noqa\n")
    proc = lint_imports(tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "0 kept, 2 broken" in proc.stdout, proc.stdout
    assert "gradcheck_lab.core.dtypes -> gradcheck_lab.cases.registry" in proc.stdout
    assert "reference.linear -> torch" in proc.stdout


PROJECT = ("gradcheck_lab", "reference", "tests", "benchmarks", "conftest")


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _package(path: Path) -> str:
    """The dotted package a file of the repository lives in (reference/ installs as gradcheck_lab.reference)."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts[:-1])
    return ".".join(["gradcheck_lab", *parts] if parts[:1] == ["reference"] else parts)


def _absolute(node: ast.ImportFrom, path: Path) -> str:
    if not node.level:
        return node.module or ""
    base = _package(path).split(".")
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _root_name(node: ast.expr) -> str | None:
    while isinstance(node, ast.Attribute):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def private_uses(path: Path, text: str | None = None) -> Iterator[str]:
    """`from m import _x` of a project module, and `m._x` on a name bound to an imported project module."""
    tree = ast.parse(path.read_text() if text is None else text, str(path))
    modules: set[str] = set()  # local names bound to a project module
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in PROJECT:
                    modules.add(alias.asname or alias.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom):
            source = _absolute(node, path)
            if source.split(".")[0] not in PROJECT:
                continue
            for alias in node.names:
                if _private(alias.name):
                    yield f"{path.relative_to(ROOT)}:{node.lineno}: from {source} import {alias.name}"
                elif _is_module(f"{source}.{alias.name}"):
                    modules.add(alias.asname or alias.name)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr) and _root_name(node.value) in modules:
            yield f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}"


def python_files() -> list[Path]:
    files = [ROOT / "conftest.py"]
    for folder in ("gradcheck_lab", "reference", "tests", "benchmarks"):
        files += sorted((ROOT / folder).rglob("*.py"))
    return files


KNOWN: set[str] = set()
"""Known uses, each to be removed by the change that fixes it (a fixed one left here fails the test)."""


def test_no_module_uses_another_modules_private_names():
    """Test the public behaviour, or make the helper public in its module if it is a real API of that module."""
    found = [use for path in python_files() for use in private_uses(path)]
    unknown = [use for use in found if _without_line(use) not in KNOWN]
    assert not unknown, "private names used across modules:\n" + "\n".join(unknown)
    assert not KNOWN - {_without_line(use) for use in found}, "fixed: remove from KNOWN"


def _without_line(use: str) -> str:
    path, _, rest = use.split(":", 2)
    return f"{path}:{rest}"


def test_the_private_name_scan_sees_both_forms():
    text = ("from gradcheck_lab.reference import conv\nfrom gradcheck_lab.core.threads import _x\n"
            "import gradcheck_lab as gl\nconv._col2im(1)\ngl._homes()\nself._fine = 1\ngl.__version__\n")
    found = list(private_uses(ROOT / "tests" / "sample.py", text))
    assert found == ["tests/sample.py:2: from gradcheck_lab.core.threads import _x",
                     "tests/sample.py:4: conv._col2im", "tests/sample.py:5: gl._homes"]
