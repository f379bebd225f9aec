"""``gradcheck-lab verify | list | bench`` as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import gradcheck_lab as gl
from gradcheck_lab import cli


def test_list_names_every_case(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    for name in [*gl.CASES, *gl.OPTIMIZER_CASES]:
        assert name in out
    assert cli.main(["list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert {row["name"] for row in listed} == set(gl.CASES) | set(gl.OPTIMIZER_CASES)


def test_verify_prints_a_table_and_writes_json(tmp_path, capsys):
    path = tmp_path / "verify.json"
    code = cli.main(["verify", "--device", "cpu", "--case", "sigmoid", "--case", "adam", "--max-examples", "3",
                     "--json", str(path)])
    out = capsys.readouterr().out
    assert code == 0
    assert "case" in out and "max abs err" in out and "tolerance" in out
    assert "sigmoid" in out and "adam [torch foreach vs for-loop]" in out
    payload = json.loads(path.read_text())
    assert payload["passed"] is True and payload["machine"]["torch"] == torch.__version__
    rows = payload["results"]
    assert {r["dtype"] for r in rows if r["case"] == "sigmoid"} == set(gl.CASES["sigmoid"].dtypes)
    assert all(r["passed"] for r in rows)


def test_verify_exits_non_zero_on_a_failure(monkeypatch, capsys):
    broken = gl.Case("broken_square", lambda x: (np.sum(x**2), (x,)), lambda x: (x**2).sum(),
                     gl.CASES["mean_of_squares"].inputs, dtypes=("float64",))
    monkeypatch.setitem(gl.CASES, "broken_square", broken)
    code = cli.main(["verify", "--device", "cpu", "--case", "broken_square", "--max-examples", "5"])
    out = capsys.readouterr().out
    assert code == 1
    assert "FAIL" in out and "broken_square" in out and "disagrees" in out


def test_unknown_case_and_unavailable_device_are_usage_errors(capsys):
    assert cli.main(["verify", "--case", "nope"]) == 2
    if not torch.cuda.is_available():
        assert cli.main(["verify", "--device", "cuda", "--case", "sigmoid"]) == 2
        assert "CUDA is not available" in capsys.readouterr().err


def test_bench_runs_a_tiny_sweep_with_json(tmp_path, capsys):
    path = tmp_path / "bench.json"
    code = cli.main(["bench", "--sizes", "8,16", "--device", "cpu", "--repeats", "3", "-q", "--json", str(path)])
    assert code == 0
    out = capsys.readouterr().out
    assert "GFLOP/s" in out and "GB/s" in out and "% ceil" in out
    payload = json.loads(path.read_text())
    assert {r["workload"] for r in payload["rows"]} == {"linear", "sigmoid_mse", "mlp", "adam", "conv"}
    assert {r["backend"] for r in payload["rows"]} == {"numpy", "torch-cpu"}
    assert all(r["median_s"] > 0 and r["ceiling"] > 0 for r in payload["rows"])


def test_console_script_and_module_entry_point():
    result = subprocess.run([sys.executable, "-m", "gradcheck_lab", "list"], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0 and "sigmoid_mse" in result.stdout


@pytest.mark.parametrize("points, expected", [
    ([(16, 0.2), (64, 0.8), (256, 3.0), (1024, 9.0)], 256),
    ([(16, 2.0), (64, 0.9), (256, 3.0)], 256),
    ([(16, 0.5), (64, 0.9)], None),
])
def test_crossover_is_where_the_gpu_stays_faster(points, expected):
    from gradcheck_lab.bench import crossover

    assert crossover(points) == expected
