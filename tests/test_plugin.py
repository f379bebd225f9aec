"""The pytest plugin, as a user's own test file sees it (run in a pytester sandbox)."""

from __future__ import annotations

from importlib.metadata import entry_points

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


@pytest.mark.cuda
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
        result.assert_outcomes(passed=5)
    else:
        result.stdout.fnmatch_lines(["*test_square?cuda-float64? SKIPPED*", "*CUDA is not available*"])
        result.assert_outcomes(passed=2, skipped=3)


def test_device_and_dtype_options(pytester):
    result = run(pytester, "--device", "cpu", "--dtype", "float16,bfloat16")
    result.stdout.fnmatch_lines(["*test_square?cpu-float16? PASSED*", "*test_square?cpu-bfloat16? PASSED*"])
    result.assert_outcomes(passed=2, skipped=0 if torch.cuda.is_available() else 1)


def test_device_all_lists_every_present_device(pytester):
    result = run(pytester, "--device", "all", "--dtype", "float64")
    expected = 1 + torch.cuda.device_count()
    result.assert_outcomes(passed=expected, skipped=0 if torch.cuda.is_available() else 1)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("spec", ["cuda", "cuda:1", "cpu,cuda"])
def test_asking_for_an_absent_device_is_an_error_not_a_skip(pytester, spec):
    result = run(pytester, "--device", spec)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*gradcheck-lab*CUDA is not available*"])


def test_unknown_dtype_is_an_error(pytester):
    result = run(pytester, "--dtype", "float8")
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
