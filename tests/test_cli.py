"""``gradcheck-lab verify | list | bench`` as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import gradcheck_lab as gl
from gradcheck_lab import runner
from gradcheck_lab.bench import workloads
from gradcheck_lab.cases.registry import OPTIMIZER_CASES
from gradcheck_lab.cli import commands as cli


def test_list_names_every_case(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    for name in [*gl.CASES, *OPTIMIZER_CASES]:
        assert name in out
    assert cli.main(["list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert {row["name"] for row in listed} == set(gl.CASES) | set(OPTIMIZER_CASES)


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
    row = next(line for line in out.splitlines() if line.startswith("broken_square"))
    assert "FAIL (GradientMismatch" in row and "nan" not in row  # the row says what failed


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
    assert {r["workload"] for r in payload["rows"]} == set(workloads.WORKLOADS)  # one per optimizer rule too
    assert {r["backend"] for r in payload["rows"]} == {"numpy", "torch-cpu"}
    assert all(r["median_s"] > 0 and r["ceiling"] > 0 for r in payload["rows"])


def test_bench_holds_every_backend_on_a_device_to_one_ceiling_and_says_how_it_was_measured(tmp_path, capsys):
    path = tmp_path / "bench.json"
    code = cli.main(["bench", "--sizes", "8,16", "--device", "cpu", "--repeats", "2", "-q", "--workload", "linear",
                     "--workload", "mlp", "--workload", "conv", "--workload", "adam", "--json", str(path),
                     "--note", "machine loaded"])
    assert code == 0
    payload = json.loads(path.read_text())
    assert payload["note"] == "machine loaded"
    ceilings = {(c["kind"], c["device"], c["size"]): c for c in payload["ceilings"]}
    assert {k[0] for k in ceilings} == {"gemm", "conv-gemm", "copy"} and {k[1] for k in ceilings} == {"cpu"}
    for c in ceilings.values():
        both = {"numpy", "torch-cpu"}  # the roofline: the better of both libraries (conv: in both layouts)
        assert set(c["candidates"]) == (both | {f"{b} (transposed)" for b in both} if c["kind"] == "conv-gemm"
                                        else both)
        assert c["rate"] == max(c["candidates"].values()) and c["best"] in c["candidates"]
        assert "fastest" in c["method"] and c["dtype"] == "float32"
    for row in payload["rows"]:
        ceiling = ceilings[(row["ceiling_kind"], "cpu", row["size"])]
        assert row["ceiling"] == ceiling["rate"]  # numpy and torch rows alike
        assert row["percent_of_ceiling"] == pytest.approx(100 * row["rate"] / ceiling["rate"])
    kinds = {r["workload"]: r["ceiling_kind"] for r in payload["rows"]}
    assert kinds == {"linear": "gemm", "mlp": "gemm", "conv": "conv-gemm", "adam": "copy"}


def _gpu_result():
    from gradcheck_lab.bench.run import BenchResult, BenchRow

    rows = [BenchRow("linear", backend, "float32", n, t, 0.01, 1.0, "GFLOP/s", 2.0, 50.0)
            for backend, n, t in [("torch-cpu", 64, 1e-4), ("torch-cpu", 256, 4e-3),
                                  ("torch-cuda:0", 64, 2e-4), ("torch-cuda:0", 256, 1e-4)]]
    result = BenchResult(rows=rows, machine={"cpu": "Test CPU", "gpus": ["NVIDIA Test GPU 80GB"], "cores": 2})
    return result


def test_a_run_with_gpu_rows_writes_the_crossovers_and_a_gpu_json(monkeypatch, tmp_path, capsys):
    from gradcheck_lab.bench import run as bench_run

    def fake_run(*args, **kwargs):
        result = _gpu_result()
        bench_run.fill_speedups(result)
        return result

    monkeypatch.setattr(bench_run, "run_bench", fake_run)
    path = tmp_path / "cpu.json"
    assert cli.main(["bench", "--device", "cpu", "-q", "--json", str(path)]) == 0
    out = capsys.readouterr().out
    assert "crossover linear: GPU faster from n=256 on" in out and "40.0x" in out and "0.5x" in out
    gpu = json.loads((tmp_path / "gpu-nvidia-test-gpu-80gb-float32.json").read_text())
    assert {r["backend"] for r in gpu["rows"]} == {"torch-cpu", "torch-cuda:0"}
    assert gpu["crossovers"] == {"linear": 256}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device: the GPU rows need one")
def test_bench_device_all_on_a_gpu_machine_writes_gpu_rows(tmp_path, capsys):
    path = tmp_path / "bench.json"
    assert cli.main(["bench", "--sizes", "64,256", "--workload", "linear", "--repeats", "2", "-q",
                     "--device", "all", "--json", str(path)]) == 0
    assert "crossover linear" in capsys.readouterr().out
    assert any(r["backend"].startswith("torch-cuda") for r in json.loads(path.read_text())["rows"])
    assert list(tmp_path.glob("gpu-*.json"))


def test_bench_verification_reports_every_method_as_a_ratio_to_the_baseline(tmp_path, capsys):
    path = tmp_path / "bench.json"
    code = cli.main(["bench", "--workload", "linear", "--sizes", "8", "--device", "cpu", "--repeats", "1", "-q",
                     "--verification", "--verification-sizes", "8", "--json", str(path)])
    assert code == 0
    out = capsys.readouterr().out
    assert "oracle/fast" in out and "gradcheck fast" in out
    (row,) = json.loads(path.read_text())["verification"]
    assert row["n"] == 8 and row["baseline_s"] > 0
    assert set(row["ratios"]) == {"plain", "oracle", "gradcheck fast", "gradcheck full"}
    assert all(r > 0 for r in row["ratios"].values())


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
    from gradcheck_lab.bench.run import crossover

    assert crossover(points) == expected


# --- the command line as a user meets it --------------------------------------------------------

def _fake_row(case, device, dtype, max_examples, seed):
    return runner.Row(case.name, "gradient", device, dtype, max_examples, 1e-16, 1e-16, "rtol=1e-8", True, 0.0)


def test_rows_print_as_they_finish(monkeypatch, capsys):
    seen_before = []

    def row(case, device, dtype, max_examples, seed):
        seen_before.append(capsys.readouterr().out)  # what was printed before this check ran
        return _fake_row(case, device, dtype, max_examples, seed)

    monkeypatch.setattr(runner, "gradient_row", row)
    argv = ["verify", "--device", "cpu", "--case", "sigmoid", "--dtype", "float64,float32", "--jobs", "1"]
    assert cli.main(argv) == 0
    assert "case" in seen_before[0] and "sigmoid" not in seen_before[0]  # the header, before any work
    assert "sigmoid  cpu     float64" in seen_before[1]  # the first row, before the second check


def test_ctrl_c_prints_finished_rows_and_partial_json(monkeypatch, tmp_path, capsys):
    calls = []

    def row(*args):
        calls.append(args)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return _fake_row(*args)

    monkeypatch.setattr(runner, "gradient_row", row)
    path = tmp_path / "partial.json"
    code = cli.main(["verify", "--device", "cpu", "--case", "sigmoid", "--dtype", "float64,float32", "--json",
                     str(path), "--jobs", "1"])
    out = capsys.readouterr().out
    assert code == 130
    assert "sigmoid  cpu     float64" in out and "interrupted: 1 of 2 checks finished" in out
    payload = json.loads(path.read_text())
    assert payload["interrupted"] is True and payload["passed"] is False
    assert [r["dtype"] for r in payload["results"]] == ["float64"]


def _without_timings(path):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in json.loads(path.read_text())["results"]]


def test_parallel_workers_give_the_sequential_rows_in_the_same_order(tmp_path, capsys):
    """Same checks, same examples, same results, same order: only the wall time may differ."""
    argv = ["verify", "--device", "cpu", "--case", "sigmoid", "--case", "relu", "--case", "sgd", "--max-examples", "4"]
    assert cli.main([*argv, "--jobs", "1", "--json", str(tmp_path / "one.json")]) == 0
    sequential = capsys.readouterr().out
    assert cli.main([*argv, "--jobs", "2", "--json", str(tmp_path / "two.json")]) == 0
    parallel = capsys.readouterr().out
    one, two = _without_timings(tmp_path / "one.json"), _without_timings(tmp_path / "two.json")
    assert len(one) >= 8 and one == two
    assert [line.split()[:3] for line in sequential.splitlines()[2:]] == \
        [line.split()[:3] for line in parallel.splitlines()[2:]]


def test_ctrl_c_stops_the_workers_and_keeps_the_finished_rows(monkeypatch, tmp_path, capsys):
    import os
    import signal
    import time

    def row(case, device, dtype, max_examples, seed):
        if dtype == "float32":  # the second check, in its worker: Ctrl-C arrives while it runs
            time.sleep(2.0)
            os.kill(os.getppid(), signal.SIGINT)
            time.sleep(60)
        return _fake_row(case, device, dtype, max_examples, seed)

    monkeypatch.setattr(runner, "gradient_row", row)
    path = tmp_path / "partial.json"
    start = time.perf_counter()
    code = cli.main(["verify", "--device", "cpu", "--case", "sigmoid", "--dtype", "float64,float32", "--jobs", "2",
                     "--json", str(path)])
    assert code == 130 and time.perf_counter() - start < 30  # the sleeping worker was stopped, not waited for
    assert "interrupted: 1 of 2 checks finished" in capsys.readouterr().out
    payload = json.loads(path.read_text())
    assert payload["interrupted"] is True and [r["dtype"] for r in payload["results"]] == ["float64"]


def test_a_selection_that_checks_nothing_is_an_error(capsys):
    assert "float16" not in OPTIMIZER_CASES["adam"].dtypes
    assert cli.main(["verify", "--device", "cpu", "--case", "adam", "--dtype", "float16"]) == 2
    assert "checks nothing" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [
    ["bench", "--sizes", "abc"], ["bench", "--sizes", "0"], ["bench", "--sizes", "16,-4"], ["bench", "--repeats", "0"],
    ["verify", "--max-examples", "0"], ["verify", "--max-examples", "many"],
    ["verify", "--json", "/no/such/folder/out.json"], ["bench", "--json", "/no/such/folder/out.json"],
])
def test_bad_arguments_are_usage_errors_before_any_work(monkeypatch, capsys, argv):
    from gradcheck_lab.bench import run as bench

    def no_work(*args, **kwargs):
        raise AssertionError("work started")

    monkeypatch.setattr(runner, "check_results", no_work)
    monkeypatch.setattr(bench, "run_bench", no_work)
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "usage:" in err and "error:" in err and "Traceback" not in err


def test_plot_without_matplotlib_is_a_usage_error(monkeypatch, tmp_path, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real(name, *a))
    with pytest.raises(SystemExit) as exc:
        cli.main(["bench", "--device", "cpu", "--plot", str(tmp_path / "p.png")])
    assert exc.value.code == 2 and "matplotlib" in capsys.readouterr().err


def test_version_and_plain_help(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out.strip() == f"gradcheck-lab {gl.__version__}"
    for argv in (["--help"], ["verify", "--help"], ["bench", "--help"]):
        with pytest.raises(SystemExit):
            cli.main(argv)
        text = capsys.readouterr().out
        assert "``" not in text and ":func:" not in text
    with pytest.raises(SystemExit):
        cli.main(["verify", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: 25)" in text and "(default: all)" in text and "(default: None)" not in text


def test_a_closed_pipe_is_no_traceback():
    proc = subprocess.Popen([sys.executable, "-m", "gradcheck_lab", "list"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before the first line is written
    err = proc.stderr.read().decode()
    proc.wait(timeout=60)
    assert "Traceback" not in err and "BrokenPipeError" not in err


def test_inconclusive_count_comes_from_the_summary(monkeypatch, capsys):
    from types import SimpleNamespace

    from gradcheck_lab.gradients import search

    summary = SimpleNamespace(examples=4, max_abs_error=1e-9, max_rel_error=1e-8, tolerance=None, inconclusive=3)
    monkeypatch.setattr(search, "verify", lambda *a, **k: SimpleNamespace(summaries=[summary]))
    assert cli.main(["verify", "--device", "cpu", "--case", "sigmoid", "--dtype", "float64"]) == 0
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if line.startswith("case"))
    row = next(line for line in out.splitlines() if line.startswith("sigmoid"))
    assert "inconclusive" in header and row.split()[6] == "3"
    assert "3 inconclusive examples" in out


USER_CASES = """
import numpy as np
import gradcheck_lab as gl

gl.register(gl.Case("user_cube_{tag}", lambda x: (np.sum(x**3), (3 * x**2,)), lambda t: (t**3).sum(),
                    gl.CASES["mean_of_squares"].inputs, dtypes=("float64",), description="a user's own case"))
"""


@pytest.fixture
def user_cases(tmp_path, monkeypatch, request):
    """A user's module that registers one case; the registry is restored afterwards."""
    tag = request.node.name.replace("[", "_").replace("]", "_")
    (tmp_path / f"my_cases_{tag}.py").write_text(USER_CASES.format(tag=tag))
    monkeypatch.syspath_prepend(str(tmp_path))
    import gradcheck_lab.cases.registry as registry  # a plain attribute only once imported

    monkeypatch.setattr(registry, "CASES", dict(registry.CASES))
    monkeypatch.setattr(registry, "REGISTERED_BY", dict(registry.REGISTERED_BY))
    monkeypatch.setattr(gl, "CASES", registry.CASES)
    return f"my_cases_{tag}", f"user_cube_{tag}"


def _entry_points(monkeypatch, *eps):
    """The gradcheck_lab.cases entry-point group holds ``eps`` (and no other group anything)."""
    from gradcheck_lab.cases import registry

    monkeypatch.setattr(registry, "entry_points", lambda group: list(eps) if group == cli.ENTRY_POINT_GROUP else [])


def test_verify_cases_runs_only_the_users_module(user_cases, tmp_path, capsys):
    module, name = user_cases
    path = tmp_path / "out.json"
    code = cli.main(["verify", "--device", "cpu", "--cases", module, "--max-examples", "3", "--json", str(path)])
    assert code == 0, capsys.readouterr()
    assert [r["case"] for r in json.loads(path.read_text())["results"]] == [name]
    assert cli.main(["verify", "--cases", "no_such_module_xyz"]) == 2


def test_entry_point_group_adds_cases(user_cases, monkeypatch, capsys):
    import importlib
    from types import SimpleNamespace

    module, name = user_cases
    ep = SimpleNamespace(value=module, load=lambda: importlib.import_module(module))
    _entry_points(monkeypatch, ep)
    assert cli.main(["list"]) == 0
    assert name in capsys.readouterr().out


def test_cases_finds_a_module_that_an_entry_point_imported_first(user_cases, monkeypatch, tmp_path, capsys):
    """The module is an entry point too: the entry point imports (and registers) it before --cases does."""
    import importlib
    from types import SimpleNamespace

    module, name = user_cases
    _entry_points(monkeypatch, SimpleNamespace(name="mine", value=module, load=lambda: importlib.import_module(module)))
    path = tmp_path / "out.json"
    code = cli.main(["verify", "--device", "cpu", "--cases", module, "--max-examples", "2", "--json", str(path),
                     "--no-optimizers"])
    assert code == 0, capsys.readouterr()
    assert [r["case"] for r in json.loads(path.read_text())["results"]] == [name]
    from gradcheck_lab.cases import registry

    assert registry.load_case_module(module) == [name]  # imported already: found by the module that registered it
    assert registry.cases_of_module("gradcheck_lab.cases.optimizer_cases") == list(registry.OPTIMIZER_CASES)


def test_a_case_module_or_entry_point_that_fails_to_load_is_a_usage_error(tmp_path, monkeypatch, capsys):
    """No traceback and no partial run: the message names the module or entry point and the error."""
    from types import SimpleNamespace

    (tmp_path / "broken_cases_xyz.py").write_text("import gradcheck_lab as gl\ngl.register(undefined_name)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for command in (["verify"], ["list"]):
        assert cli.main([*command, "--cases", "broken_cases_xyz"]) == 2
        err = capsys.readouterr().err
        assert "broken_cases_xyz: importing it failed: NameError" in err and "Traceback" not in err
    assert cli.main(["list", "--cases", "no_such_module_xyz"]) == 2
    assert "no module named 'no_such_module_xyz'" in capsys.readouterr().err

    def fails():
        raise ImportError("No module named 'their_dependency'")

    _entry_points(monkeypatch, SimpleNamespace(name="theirs", value="their_pkg.cases", load=fails))
    for command in (["verify"], ["list"]):
        assert cli.main(command) == 2
        err = capsys.readouterr().err
        assert "entry point 'theirs' (their_pkg.cases) failed to load: ImportError" in err


# --- benchmark reporting ------------------------------------------------------------------------

def _bench_result():
    from gradcheck_lab.bench.run import BenchResult, BenchRow

    rows = [BenchRow("linear", backend, "float32", n, t, spread, 10.0, "GFLOP/s", 20.0, pct, q1_s=t * 0.9, q3_s=t * 1.2)
            for backend, n, t, spread, pct in [("numpy", 16, 1e-5, 0.05, 50.0), ("numpy", 64, 1e-4, 9.67, 50.0),
                                               ("torch-cpu", 16, 2e-5, 0.1, 168.0), ("torch-cpu", 64, 3e-4, 0.1, 40.0)]]
    rows.append(BenchRow("adam", "torch-cpu", "float32", 16, 1e-5, 0.1, 1.0, "GB/s", 2.0, 50.0))
    return BenchResult(rows=rows, machine={"cpu": "Test CPU 9000", "cores": 2, "available_cores": 2,
                                           "torch_threads": 1, "gpus": [], "load_average": [3.5, 2.0, 1.0]})


def test_bench_flags_noisy_rows_and_rates_above_the_ceiling():
    from gradcheck_lab.bench.run import format_table

    result = _bench_result()
    assert [len(r.warnings) for r in result.rows] == [0, 1, 1, 0, 0]
    text = format_table(result)
    assert "! linear numpy n=64: spread 967%" in text
    assert "! linear torch-cpu n=16: 168% of the ceiling" in text
    assert "threads: torch 1 of 2 cores; load average 3.50" in text


def test_bench_plot_marks_every_size_with_spread_on_a_shared_scale(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    from gradcheck_lab.bench import plot as bench_plot

    figures = []
    monkeypatch.setattr(plt, "close", figures.append)  # keep the figure to inspect it
    bench_plot.plot(_bench_result(), str(tmp_path / "bench.png"))
    assert (tmp_path / "bench.png").stat().st_size > 0
    fig = figures[0]
    linear, adam = fig.axes[:2]
    assert [int(t) for t in linear.get_xticks()] == [16, 64]
    assert linear.get_shared_y_axes().joined(linear, adam)
    assert "ms" in linear.get_ylabel()
    title = fig._suptitle.get_text()
    assert "float32" in title and "Test CPU 9000" in title
    assert len(linear.containers) == 2  # one errorbar (median with interquartile range) per backend


def test_bench_uses_a_thread_budget_by_default(monkeypatch, tmp_path, capsys):
    from gradcheck_lab.bench import run as bench
    from gradcheck_lab.core import threads

    seen = []
    real = bench.run_bench
    monkeypatch.setattr(threads, "cores_for_this_process", lambda: 1)
    monkeypatch.setattr(bench, "run_bench", lambda *a, **k: seen.append(torch.get_num_threads()) or real(*a, **k))
    path = tmp_path / "b.json"
    before = torch.get_num_threads()
    assert cli.main(["bench", "--workload", "adam", "--sizes", "8", "--device", "cpu", "--repeats", "2", "-q",
                     "--json", str(path)]) == 0
    assert seen == [1] and torch.get_num_threads() == before
    payload = json.loads(path.read_text())
    assert payload["machine"]["torch_threads"] == 1 and "load_average" in payload["machine"]
    assert all("warnings" in r for r in payload["rows"])


def test_a_terminal_gets_a_progress_line_and_a_pipe_does_not(monkeypatch, capsys):
    import io

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr(runner, "gradient_row", _fake_row)
    argv = ["verify", "--device", "cpu", "--case", "sigmoid", "--dtype", "float64,float32"]
    assert cli.main(argv) == 0
    assert "[1/2]" not in capsys.readouterr().err  # captured stderr is no terminal: plain rows only
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert cli.main(argv) == 0
    assert "[1/2] sigmoid cpu float64" in terminal.getvalue() and "[2/2] sigmoid cpu float32" in terminal.getvalue()
    assert terminal.getvalue().endswith("\r\033[K")  # the progress line is cleared at the end


def test_an_unknown_dtype_is_a_usage_error_before_any_work(monkeypatch, capsys):
    monkeypatch.setattr(runner, "check_results", lambda *a, **k: pytest.fail("work started"))
    assert cli.main(["verify", "--device", "cpu", "--dtype", "float8"]) == 2
    assert "float8" in capsys.readouterr().err
