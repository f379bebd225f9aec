"""The README's API example runs as written, and its CI command blocks exist."""

from __future__ import annotations

import re
from pathlib import Path

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_the_api_example_runs(capsys):
    section = README.split("## The API by example", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    exec(compile(code, "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "passed on cpu/float32" in out
    assert "the gradient of 'pred' (input 0) disagrees" in out
    assert "the reference gradient is wrong" in out


def test_the_two_ci_commands_are_marked():
    for step in ("verify", "test"):
        block = re.search(rf"<!-- ci:{step} -->\n```bash\n(.+?)\n```", README)
        assert block, f"README.md lacks the <!-- ci:{step} --> command block"
        assert "-c constraints.txt" in block.group(1)
