"""Checks that need a CUDA device: cross-device agreement and TF32. They skip, with the reason, elsewhere."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import gradcheck_lab as gl
from gradcheck_lab.core.comparison import compare
from gradcheck_lab.core.tolerances import gradient_tolerance
from gradcheck_lab.gradients.check import run_torch
from gradcheck_lab.gradients.inputs import input_names, prepare_inputs

pytestmark = pytest.mark.gradcheck_cuda


@pytest.mark.parametrize("name", sorted(gl.CASES))
@given(data=st.data())
def test_the_same_inputs_give_the_same_gradients_on_cpu_and_cuda(name, dtype, data):
    case = gl.CASES[name]
    inputs = data.draw(case.inputs)
    # Both devices agree with the float64 reference under the dtype's tolerance...
    for device in ("cpu", "cuda"):
        gl.check_case(case, inputs, device=device, dtype=dtype)
    torch_dtype = gl.resolve_dtype(dtype)
    if torch_dtype not in (torch.float64, torch.float32):
        return
    # ...and, where rounding is small, directly with each other.
    names = input_names(case.reference, len(inputs))
    rounded = prepare_inputs(inputs, torch_dtype, names)
    on_cpu = run_torch(case.torch_fn, rounded, names, torch.device("cpu"), torch_dtype)
    on_cuda = run_torch(case.torch_fn, rounded, names, torch.device("cuda"), torch_dtype)
    # Two implementations of the same dtype: each may be off by the dtype's bound, so allow both.
    tol = gradient_tolerance(torch_dtype, numel=max(x.size for x in rounded))
    tol = type(tol)(rtol=2 * tol.rtol, atol=2 * tol.atol, ntol=2 * tol.ntol, gtol=2 * tol.gtol)
    for k, (a, b) in enumerate(zip(on_cpu.grads, on_cuda.grads, strict=True)):
        assert compare(a, b, tol).passed, f"{name}: gradient {k} differs between cpu and cuda"


def test_tf32_switch_uses_its_own_tolerance_and_restores_the_flags():
    rng = np.random.default_rng(0)
    case = gl.CASES["linear_bias_2d"]
    x, w, b, g = rng.standard_normal((64, 256)), rng.standard_normal((128, 256)), rng.standard_normal(128), \
        rng.standard_normal((64, 128))
    before = torch.backends.cuda.matmul.allow_tf32
    strict = gl.check_case(case, (x, w, b, g), device="cuda", dtype="float32")
    loose = gl.check_case(case, (x, w, b, g), device="cuda", dtype="float32", tf32=True)
    assert torch.backends.cuda.matmul.allow_tf32 == before
    assert strict.passed and loose.passed
    assert loose.tolerance.rtol > strict.tolerance.rtol
