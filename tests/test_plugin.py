"""The pytest plugin, as a user's own test file sees it (run in a pytester sandbox)."""

from __future__ import annotations

from importlib.metadata import entry_points
from pathlib import Path

import pytest
import torch

PLUGIN_INSTALLED = any(ep.value.startswith("gradcheck_lab.pytest_plugin") for ep in entry_points(group="pytest11"))
PLUGIN_ARGS = [] if PLUGIN_INSTALLED else ["-p", "gradcheck_lab.pytest_plugin"]

USER_TEST = '''
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis.extra.numpy import arrays
from hypothesis import strategies as st
import gradcheck_lab as gl


def square(x):
    return np.sum(x ** 2), (2 * x,)


@settings(max_examples=5, deadline=None)
@given(arrays(np.float64, 3, elements=st.floats(-2, 2)))
def test_square(device, dtype, x):
    gl.check_gradients(square, lambda t: (t ** 2).sum(), (x,), device=device, dtype=dtype)


def test_dtype_is_a_torch_dtype_and_its_name_a_fixture(device, dtype, dtype_name):
    import torch
    assert torch.zeros(2, dtype=dtype, device=device).dtype is dtype
    assert dtype_name == str(dtype).removeprefix("torch.")


@pytest.mark.gradcheck_cuda
def test_needs_cuda():
    assert False, "must not run without CUDA"
'''


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    pytester.makepyfile(test_user=USER_TEST)
    return pytester.runpytest_inprocess(*PLUGIN_ARGS, "-rs", "-v", "-p", "no:cacheprovider", *args)


def test_default_ids_and_cuda_skips(pytester):
    result = run(pytester)
    result.stdout.fnmatch_lines(["*test_square?cpu-float64? PASSED*", "*test_square?cpu-float32? PASSED*"])
    if torch.cuda.is_available():
        result.stdout.fnmatch_lines(["*test_square?cuda-float64? PASSED*"])
        result.assert_outcomes(passed=9)
    else:
        result.stdout.fnmatch_lines(["*test_square?cuda-float64? SKIPPED*", "*CUDA is not available*"])
        result.assert_outcomes(passed=4, skipped=5)
    result.stdout.fnmatch_lines(["*test_dtype_is_a_torch_dtype_and_its_name_a_fixture?cpu-float32? PASSED*"])


def test_device_and_dtype_options(pytester):
    result = run(pytester, "--gradcheck-device", "cpu", "--gradcheck-dtype", "float16,bfloat16")
    result.stdout.fnmatch_lines(["*test_square?cpu-float16? PASSED*", "*test_square?cpu-bfloat16? PASSED*"])
    result.assert_outcomes(passed=4, skipped=0 if torch.cuda.is_available() else 1)


def test_device_all_lists_every_present_device(pytester):
    result = run(pytester, "--gradcheck-device", "all", "--gradcheck-dtype", "float64")
    expected = 2 * (1 + torch.cuda.device_count())
    result.assert_outcomes(passed=expected, skipped=0 if torch.cuda.is_available() else 1)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("spec", ["cuda", "cuda:1", "cpu,cuda"])
def test_asking_for_an_absent_device_is_an_error_not_a_skip(pytester, spec):
    result = run(pytester, "--gradcheck-device", spec)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*gradcheck-lab*CUDA is not available*"])


def test_unknown_dtype_is_an_error(pytester):
    result = run(pytester, "--gradcheck-dtype", "float8")
    assert result.ret == pytest.ExitCode.USAGE_ERROR


def test_a_test_that_parametrizes_device_itself_is_left_alone(pytester):
    pytester.makepyfile(test_own='''
import pytest
@pytest.mark.parametrize("device", ["mine"])
def test_own(device):
    assert device == "mine"
''')
    result = pytester.runpytest_inprocess(*PLUGIN_ARGS, "-p", "no:cacheprovider", "test_own.py")
    result.assert_outcomes(passed=1)


def test_header_only_in_runs_that_use_the_plugin(pytester):
    pytester.makepyfile(test_plain="def test_plain():\n    assert 1 + 1 == 2\n")
    plain = pytester.runpytest_inprocess(*PLUGIN_ARGS, "-p", "no:cacheprovider", "test_plain.py")
    plain.assert_outcomes(passed=1)
    assert "gradcheck-lab:" not in plain.stdout.str()
    used = run(pytester, "test_user.py", "--gradcheck-device", "cpu", "--gradcheck-dtype", "float64")
    used.stdout.fnmatch_lines(["gradcheck-lab: devices cpu; dtypes float64"])


def test_tests_parametrized_with_a_device_other_than_the_cpu_run_without_a_hypothesis_deadline(pytester):
    """First calls on a GPU (context, kernels) blow hypothesis deadlines; the cpu keeps its deadline."""
    pytester.makepyfile(test_slow="""
import time
import pytest
from hypothesis import given, settings, strategies as st

@pytest.mark.parametrize("device", ["meta"])
@settings(deadline=5, max_examples=3, database=None)
@given(st.integers())
def test_on_a_gpu(device, x):
    time.sleep(0.05)

@pytest.mark.parametrize("device", ["cpu"])
@settings(deadline=5, max_examples=3, database=None)
@given(st.integers())
def test_on_the_cpu(device, x):
    time.sleep(0.05)
""")
    result = pytester.runpytest_inprocess(*PLUGIN_ARGS, "-p", "no:cacheprovider", "-v", "test_slow.py")
    result.stdout.fnmatch_lines(["*test_on_a_gpu?meta? PASSED*", "*test_on_the_cpu?cpu? FAILED*"])
    result.stdout.fnmatch_lines(["*DeadlineExceeded*"])


# A project that knows nothing of gradcheck-lab: its own `reference` package, `--device` option,
# `device` fixture, a conftest hook parametrizing `dtype` and its own `cuda` marker.
FOREIGN = {
    "reference/__init__.py": "",
    "reference/losses.py": "def mse(a, b):\n    return (a - b) ** 2\n",
    "conftest.py": '''
import pytest

def pytest_addoption(parser):
    parser.addoption("--device", default="abacus")

def pytest_configure(config):
    config.addinivalue_line("markers", "cuda: our own meaning")

@pytest.fixture
def device(request):
    return request.config.getoption("--device")

def pytest_generate_tests(metafunc):
    if "dtype" in metafunc.fixturenames:
        metafunc.parametrize("dtype", ["int8"])
''',
    "tests/test_foreign.py": '''
import sys
import pytest
from reference import losses

def test_own_reference():
    assert losses.mse(3, 1) == 4

def test_own_device_and_dtype(device, dtype):
    assert (device, dtype) == ("slide-rule", "int8")

@pytest.mark.cuda
def test_own_cuda_marker_is_not_ours_to_skip():
    assert True

def test_torch_was_not_imported():
    assert "torch" not in sys.modules
''',
}


def run_downstream(tmp_path: Path, files: dict[str, str], *args: str) -> str:
    """pytest in a fresh project folder (no conftest of ours), as a user's own project runs it."""
    import os
    import subprocess
    import sys

    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTEST_ADDOPTS", "PYTEST_XDIST_WORKER", "HYPOTHESIS_PROFILE")}
    # Installed, the entry point loads the plugin; from a bare checkout, load it by name.
    if not PLUGIN_INSTALLED:
        env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", *PLUGIN_ARGS, "-p", "no:cacheprovider", "-p", "no:xdist",
         "-p", "no:benchmark", "-rA", *args],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    return out


def test_a_foreign_project_runs_its_own_tests_with_the_plugin_installed(tmp_path):
    out = run_downstream(tmp_path, FOREIGN, "-p", "no:hypothesispytest", "--device", "slide-rule", "tests")
    assert "4 passed" in out, out
    assert "gradcheck-lab:" not in out


PROFILE_TEST = {"test_profile.py": '''
from hypothesis import settings

def test_the_profile_asked_for_is_loaded():
    print("PROFILE", settings.get_current_profile_name(), settings().max_examples, settings().derandomize)
'''}


@pytest.mark.parametrize(("profile", "examples", "derandomize"), [
    ("gradcheck-thorough", 1000, False), ("gradcheck-ci", 20, True), ("gradcheck-dev", 50, False)])
def test_the_plugins_hypothesis_profiles_work_in_a_project_without_a_conftest(tmp_path, profile, examples, derandomize):
    out = run_downstream(tmp_path, PROFILE_TEST, "-s", "--hypothesis-profile", profile)
    assert f"PROFILE {profile} {examples} {derandomize}" in out, out
