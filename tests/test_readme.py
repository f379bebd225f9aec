"""Every Python block of the README runs as written; its CI command blocks exist.

A block runs in a fresh namespace in this process (what it registers is unregistered after), except:
a block whose first line is ``# test_<name>.py`` is a user's test file, run by pytest in a fresh project
folder; a block whose first line is ``# not run: <reason>`` is shown only (the reason is required).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from gradcheck_lab.cases import registry

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def python_blocks() -> list[tuple[str, int, str]]:
    """(section heading, line number, code) of every ```python block."""
    blocks = []
    for match in re.finditer(r"^```python\n(.*?)^```", README, re.S | re.M):
        line = README.count("\n", 0, match.start()) + 1
        heading = re.findall(r"^#{2,3} (.+)$", README[: match.start()], re.M)[-1]
        blocks.append((heading, line, match.group(1)))
    return blocks


BLOCKS = python_blocks()
EXPECTED = [  # (a block showing this code, what it prints)
    ('dtype="float32").summary())', ["passed on cpu/float32"]),
    ("except gl.GradientMismatch as err:\n    print(err)",
     ["the gradient of 'pred' (input 0) disagrees", "the reference gradient is wrong"]),
    ("print(report.verdict,", ["passed"]),
]


def test_the_readme_has_its_python_blocks():
    assert len(BLOCKS) >= 7
    assert all(any(shown in code for _, _, code in BLOCKS) for shown, _ in EXPECTED)
    assert all(not code.startswith("# not run") or re.match(r"# not run: \S", code) for _, _, code in BLOCKS)


@pytest.mark.parametrize(("heading", "line", "code"), BLOCKS, ids=[f"L{line}" for _, line, _ in BLOCKS])
def test_every_python_block_runs_as_written(heading, line, code, capsys, tmp_path):
    first = code.splitlines()[0]
    if first.startswith("# not run:"):
        pytest.skip(f"README.md:{line}: {first}")
    test_file = re.fullmatch(r"# (test_\w+\.py)", first)
    if test_file:
        out = run_as_a_users_test_file(tmp_path, test_file.group(1), code)
        assert " passed" in out and "failed" not in out, out
        return
    gradient_cases, optimizer_cases = dict(registry.CASES), dict(registry.OPTIMIZER_CASES)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", DeprecationWarning)  # the README shows no deprecated name
            exec(compile(code, f"README.md:{line}", "exec"), {"__name__": f"readme_{line}"})
    finally:
        for table, before in ((registry.CASES, gradient_cases), (registry.OPTIMIZER_CASES, optimizer_cases)):
            table.clear()
            table.update(before)
    out = capsys.readouterr().out
    for shown, printed in EXPECTED:
        if shown in code:
            assert all(text in out for text in printed), out


def run_as_a_users_test_file(folder: Path, name: str, code: str) -> str:
    (folder / name).write_text(code)
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTEST_ADDOPTS", "PYTEST_XDIST_WORKER", "HYPOTHESIS_PROFILE")}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:xdist",
                           "-p", "no:benchmark", "-q", "--hypothesis-profile", "gradcheck-ci", name],
                          cwd=folder, env=env, capture_output=True, text=True, timeout=300)
    return proc.stdout + proc.stderr


def test_the_two_ci_commands_are_marked():
    for step in ("verify", "test"):
        block = re.search(rf"<!-- ci:{step} -->\n```bash\n(.+?)\n```", README)
        assert block, f"README.md lacks the <!-- ci:{step} --> command block"
        assert "-c constraints.txt" in block.group(1)


def test_the_places_for_the_other_features_are_there():
    for heading in ("Custom torch Functions and kernels in low precision",
                    "Forward mode, second order and complex inputs"):
        assert f"\n## {heading}\n" in README
