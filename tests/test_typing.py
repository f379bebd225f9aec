"""Typed user code sees the documented API: `mypy --strict` accepts a user's module and reports their mistakes.

A user's module (tests/typing/user_code.py) written against `import gradcheck_lab as gl` and
`from gradcheck_lab import ...` must type-check under `mypy --strict` as it would in a project that installed
the package (errors inside the package are not the user's: `follow_imports = silent`, as for any installed
package). torch is skipped (`Any`) to keep the check to seconds: the exports and our own signatures are what
is tested. The same module runs, and every check in it passes.
"""

from __future__ import annotations

import runpy
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent / "typing"
ROOT = HERE.parents[1]
CONFIG = """\
[mypy]
strict = True
follow_imports = silent
[mypy-torch,torch.*]
follow_imports = skip
"""


@pytest.fixture(scope="module")
def mypy_output(tmp_path_factory: pytest.TempPathFactory) -> str:
    pytest.importorskip("mypy")
    config = tmp_path_factory.mktemp("mypy") / "mypy.ini"
    config.write_text(CONFIG)
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(config), "--cache-dir", str(ROOT / ".mypy_cache" / "user"),
         "--no-error-summary", "--show-error-codes", str(HERE / "user_code.py"), str(HERE / "user_mistakes.py")],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert not proc.stderr.strip(), proc.stderr
    return proc.stdout


def test_mypy_strict_accepts_the_documented_api(mypy_output):
    assert "user_code.py" not in mypy_output, mypy_output


def test_mypy_strict_reports_a_users_mistakes(mypy_output):
    reported = {(int(line.split(":")[1]), line.rsplit("[", 1)[1].rstrip("]"))
                for line in mypy_output.splitlines() if line.split(":")[0].endswith("user_mistakes.py")}
    expected = {(number, line.rsplit("# ", 1)[1].split(":")[0])
                for number, line in enumerate((HERE / "user_mistakes.py").read_text().splitlines(), start=1)
                if "# " in line and line.rsplit("# ", 1)[1].split(":")[0] in ("attr-defined", "arg-type")}
    assert len(expected) == 4
    assert reported == expected, mypy_output


def test_the_typed_user_module_runs_and_every_check_passes():
    lines = runpy.run_path(str(HERE / "user_code.py"))["check_everything"]()
    assert lines[0].startswith("passed on cpu/float32")
    assert "0.5 times torch's" in lines[2]
    assert sum(line.startswith("passed") for line in lines) == 5, lines  # gradients, vjp, layer, rule, optimizer
    assert lines[-2] == "VerifyResult"
