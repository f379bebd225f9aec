"""Bad inputs and bad functions get typed errors; inputs and torch's global state are left as found."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given

import gradcheck_lab as gl
from gradcheck_lab.gradients.strategies import same_shape


def square(x):
    return np.sum(x**2), (2 * x,)


def torch_square(x):
    return (x**2).sum()


X = np.array([[1.0, -2.0, 0.5], [3.0, 0.25, -1.0]])


@pytest.mark.parametrize("bad", [np.array([1, 2, 3]), np.array([True, False])])  # complex: tests/test_complex.py
def test_non_real_floating_inputs_are_rejected(bad):
    with pytest.raises(gl.InvalidInputError, match="input 0"):
        gl.check_gradients(square, torch_square, (bad,))


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_inputs_are_rejected(value):
    x = X.copy()
    x[1, 2] = value
    with pytest.raises(gl.NonFiniteError, match=r"index \(1, 2\)"):
        gl.check_gradients(square, torch_square, (x,))


def test_an_input_that_overflows_the_dtype_is_rejected():
    with pytest.raises(gl.NonFiniteError, match="overflows float16"):
        gl.check_gradients(square, torch_square, (np.array([1e6]),), dtype="float16")


@pytest.mark.parametrize("inputs", [(), [], (np.zeros((0, 3)),)])
def test_empty_inputs_are_rejected(inputs):
    with pytest.raises(gl.InvalidInputError, match="empty"):
        gl.check_gradients(square, torch_square, inputs)


def test_non_finite_outputs_fail_unless_allowed_and_matching():
    x = np.array([-1.0, 4.0])

    def ref(x):
        return np.sum(np.sqrt(x)), (0.5 / np.sqrt(x),)

    with np.errstate(invalid="ignore"):
        with pytest.raises(gl.NonFiniteError, match="nan"):
            gl.check_gradients(ref, lambda t: t.sqrt().sum(), (x,))
        report = gl.check_gradients(ref, lambda t: t.sqrt().sum(), (x,), allow_nonfinite=True)
        assert report.passed
        with pytest.raises(gl.GradientMismatch, match="non-finite"):
            gl.check_gradients(lambda x: (np.sum(np.sqrt(x)), (np.ones_like(x),)), lambda t: t.sqrt().sum(), (x,),
                               allow_nonfinite=True)


def test_non_scalar_torch_output_is_rejected():
    with pytest.raises(gl.TorchFunctionError, match="scalar"):
        gl.check_gradients(square, lambda t: t**2, (X,))


def test_an_input_the_torch_function_ignores_is_named():
    def ref(a, b):
        return np.sum(a**2), (2 * a, np.zeros_like(b))

    with pytest.raises(gl.TorchFunctionError, match="does not depend on 'b'"):
        gl.check_gradients(ref, lambda a, b: (a**2).sum(), (X, X))


def test_a_detached_torch_output_is_rejected():
    with pytest.raises(gl.TorchFunctionError, match="does not depend on any input"):
        gl.check_gradients(square, lambda t: (t.detach() ** 2).sum(), (X,))


@pytest.mark.parametrize(
    "ref, match",
    [
        (lambda x: (np.sum(x**2), ()), "0 gradient"),
        (lambda x: (np.sum(x**2), (2 * x, 2 * x)), "2 gradient"),
        (lambda x: (np.sum(x**2), (2 * x.T,)), "shape"),
        (lambda x: (np.sum(x**2), (None,)), "None"),
        (lambda x: (x**2, (2 * x,)), "scalar"),
        (lambda x: np.sum(x**2), "value, grads"),
    ],
)
def test_reference_contract_violations_are_reported(ref, match):
    with pytest.raises(gl.ReferenceContractError, match=match):
        gl.check_gradients(ref, torch_square, (X,))


@pytest.mark.parametrize("dtype", ["float8", "int32", torch.int64, "complex64", object])
def test_unknown_dtypes_are_rejected(dtype):
    with pytest.raises(gl.UnknownDtypeError):
        gl.check_gradients(square, torch_square, (X,), dtype=dtype)


@pytest.mark.parametrize("dtype", ["float32", torch.float32, np.float32, "fp32", "torch.float32"])
def test_dtype_spellings_are_accepted(dtype):
    assert gl.check_gradients(square, torch_square, (X,), dtype=dtype).dtype == "float32"


@pytest.mark.parametrize("device", ["tpu", "cuda:x", "gpu0", "cpu:1"])
def test_malformed_devices_are_rejected(device):
    with pytest.raises(gl.DeviceError):
        gl.check_gradients(square, torch_square, (X,), device=device)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:0", "cuda:1"])
def test_cuda_on_a_machine_without_it_is_an_error(device):
    with pytest.raises(gl.DeviceError, match="not available"):
        gl.check_gradients(square, torch_square, (X,), device=device)


def test_caller_arrays_are_never_modified_even_by_a_reference_that_writes_its_inputs():
    x = X.copy()

    def clobbering(x):
        g = 2 * x
        x *= 100
        return np.sum((x / 100) ** 2), (g,)

    with pytest.warns(gl.ReferenceMutationWarning, match="modified its input"):
        gl.check_gradients(clobbering, torch_square, (x,))
    np.testing.assert_array_equal(x, X)
    assert x.flags.writeable  # the check reads a float64 input through a read-only view: the caller's stays writable


@given(same_shape(2))
def test_inputs_are_left_unchanged_for_any_input(arrays):
    copies = [a.copy() for a in arrays]
    gl.check_case("sum_of_two_squares", arrays, dtype="float32")
    for a, c in zip(arrays, copies, strict=True):
        np.testing.assert_array_equal(a, c)


def test_fortran_order_strided_and_read_only_arrays_give_the_same_report():
    base = np.arange(24, dtype=np.float64).reshape(4, 6) / 7 - 1.5
    fortran = np.asfortranarray(base)
    strided = np.repeat(base, 2, axis=1)[:, ::2]
    read_only = base.copy()
    read_only.flags.writeable = False
    reports = [gl.check_gradients(square, torch_square, (a,)) for a in (base, fortran, strided, read_only)]
    assert len({(r.max_abs_error, r.worst_index) for r in reports}) == 1
    assert all(r.passed for r in reports)


def test_torch_global_state_is_left_as_found():
    before_dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        torch.manual_seed(123)
        expected_next = torch.rand(3)
        torch.manual_seed(123)

        def noisy(t):
            return (t**2).sum() + 0 * torch.rand(5).sum()

        with torch.no_grad():
            assert gl.check_gradients(square, noisy, (X,), dtype="float32").passed
            assert not torch.is_grad_enabled()
        assert torch.get_default_dtype() == torch.float64
        assert torch.equal(torch.rand(3), expected_next)
    finally:
        torch.set_default_dtype(before_dtype)


def test_works_inside_inference_mode():
    with torch.inference_mode():
        assert gl.check_gradients(square, torch_square, (X,)).passed
        assert torch.is_inference_mode_enabled()


def test_tensor_inputs_and_a_bare_array_are_accepted():
    assert gl.check_gradients(square, torch_square, torch.tensor(X)).passed
    assert gl.check_gradients(square, torch_square, X).passed


def test_a_report_serializes_to_json():
    import json

    report = gl.check_gradients(square, torch_square, (X,), dtype="float32", finite_differences=True)
    data = json.loads(json.dumps(report.to_dict()))
    assert data["passed"] is True and data["dtype"] == "float32"
    assert set(data["gradients"]) == {"x"}
    assert data["oracle"]["disagreeing"] == [] and data["tolerance"]["rtol"] == report.tolerance.rtol


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_nan_only_torch_produces_is_named_as_torch_s(dtype):
    def torch_fn(t):  # 0 * sqrt(t - 10): NaN for t < 10, in the value and the gradient
        return (t**2).sum() + 0 * torch.sqrt(t - 10).sum()

    with np.errstate(invalid="ignore"), pytest.raises(gl.NonFiniteError, match="the torch value holds nan"):
        gl.check_gradients(square, torch_fn, (X,), dtype=dtype)


@pytest.mark.filterwarnings("error")
def test_finite_sides_whose_difference_overflows_fail_with_an_infinite_ratio():
    from gradcheck_lab.core.comparison import compare
    from gradcheck_lab.core.tolerances import math_tolerance

    result = compare(np.array([1.7e308, 1.0]), np.array([-1.7e308, 1.0]), math_tolerance(torch.float64))
    assert not result.passed and result.nonfinite is None
    assert result.ratio == np.inf and result.index == (0,) and result.failing == 1
