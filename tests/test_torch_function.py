"""check_torch_function: right custom Functions pass in every dtype, planted twins are reported with their ratio,
and each contract violation raises its typed error."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import strategies as st
from torch.autograd.function import once_differentiable

import gradcheck_lab as gl
from gradcheck_lab.cases.torch_function_cases import (
    TORCH_FUNCTION_CASES,
    LayerNorm,
    SoftmaxCrossEntropy,
    cross_entropy_inputs,
    cross_entropy_reference,
    layer_norm_inputs,
    layer_norm_reference,
)
from gradcheck_lab.errors import CandidateContractError, DtypeOverflowError
from gradcheck_lab.gradients.torch_function import check_torch_function

DTYPES = ("bfloat16", "float16", "float32", "float64")
RIGHT = [name for name, case in TORCH_FUNCTION_CASES.items() if case.bug is None]
TWINS = [(name, dtype) for name, case in TORCH_FUNCTION_CASES.items() for dtype in case.wrong_in]


def _check(case_name: str, dtype: str, seed: int, device: str = "cpu", **kwargs: object) -> gl.Report:
    case = TORCH_FUNCTION_CASES[case_name]
    return check_torch_function(case.candidate, case.reference, case.inputs(seed), device=device, dtype=dtype,
                                constants=case.constants, seed=seed, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", RIGHT)
@pytest.mark.parametrize("dtype", DTYPES)
def test_right_kernels_pass_over_seeds(name: str, dtype: str, device: str) -> None:
    ratios = []
    for seed in range(8 if dtype != "float64" else 2):
        report = _check(name, dtype, seed, device)
        assert report.passed and report.verdict == "passed"
        assert report.ratio <= 1.0
        ratios.append(report.error_ratio)
    # float32 accumulation inside: about torch's own error (the measured medians are 0.4 to 1.4)
    assert max(ratios) < 4.0 or dtype == "float64"


@pytest.mark.parametrize("name", ["layer_norm", "softmax_cross_entropy"])
@pytest.mark.parametrize("dtype", ["bfloat16", "float32", "float64"])
def test_right_kernels_pass_order_two(name: str, dtype: str) -> None:
    report = _check(name, dtype, 0, order=2)
    assert report.passed
    assert any("double backward" in label for label in report.tensors)


@pytest.mark.parametrize(("name", "dtype"), TWINS)
def test_every_twin_is_reported_with_its_ratio(name: str, dtype: str) -> None:
    case = TORCH_FUNCTION_CASES[name]
    for seed in range(3):
        with pytest.raises(gl.GradientMismatch) as caught:
            _check(name, dtype, seed, order=case.order)
        report = caught.value.report
        assert not report.passed and report.verdict == "mismatch"
        assert report.error_ratio > 2.0 and report.ratio > 1.0
        message = str(caught.value)
        worst = report.tensors[report.worst_tensor]
        assert worst.name.removeprefix("the ") in message
        assert f"{worst.error_ratio:.3g}x" in message and "worst element" in message
        assert f"{worst.candidate_error:.3e}" in message and f"{worst.reference_error:.3e}" in message


@pytest.mark.parametrize("name", [n for n, c in TORCH_FUNCTION_CASES.items() if c.bug and "bfloat16" not in n])
def test_twins_are_reported_in_float64(name: str) -> None:
    with pytest.raises(gl.GradientMismatch, match="float64"):
        _check(name, "float64", 0, order=TORCH_FUNCTION_CASES[name].order)


def test_the_wrong_scale_is_diagnosed_in_low_precision() -> None:
    with pytest.raises(gl.GradientMismatch) as caught:
        _check("layer_norm/weight_grad_averaged", "bfloat16", 0)
    report = caught.value.report
    assert report.worst_tensor == "the gradient of 'w' (input 1)"
    assert report.tensors["the gradient of 'x' (input 0)"].passed
    assert "0.03125 times torch's" in str(report.diagnosis) and "averaged over axis 0" in str(report.diagnosis)


def test_mask_forward_only_names_the_ignored_row() -> None:
    with pytest.raises(gl.GradientMismatch) as caught:
        _check("softmax_cross_entropy/mask_forward_only", "float32", 0)
    report = caught.value.report
    worst = report.tensors[report.worst_tensor]
    assert worst.index[0] == 3  # the last row is the ignored one
    assert worst.truth == 0.0


def test_bfloat16_accumulation_is_several_times_worse() -> None:
    with pytest.raises(gl.GradientMismatch) as caught:
        _check("layer_norm/bfloat16_sums", "bfloat16", 0)
    assert caught.value.report.error_ratio > 10  # measured 27 to 35 over 100 seeds


def test_summing_one_element_at_a_time_in_float32_passes_in_float32() -> None:
    # the bfloat16_sums twin accumulates in its inputs' dtype: in a float32 check, a float32 accumulator in
    # another order than torch's (measured: up to 7.5x torch's error, 4.9 ulps of the floor of 8)
    for seed in range(2):
        assert _check("layer_norm/bfloat16_sums", "float32", seed).passed


def test_inputs_and_torch_state_are_left_as_found() -> None:
    inputs = layer_norm_inputs(0, rows=2, features=16)
    copies = [x.copy() for x in inputs]
    torch.manual_seed(5)
    state, default = torch.get_rng_state(), torch.get_default_dtype()
    check_torch_function(LayerNorm.apply, layer_norm_reference, inputs, dtype="float16")
    assert all(np.array_equal(a, b) for a, b in zip(inputs, copies, strict=True))
    assert torch.equal(torch.get_rng_state(), state) and torch.get_default_dtype() == default


def test_tensor_inputs_and_a_given_grad_output() -> None:
    x = torch.randn(3, 32, dtype=torch.bfloat16)
    w, b = torch.ones(32, dtype=torch.bfloat16), torch.zeros(32, dtype=torch.bfloat16)
    g = np.random.default_rng(1).standard_normal((3, 32))
    report = check_torch_function(LayerNorm.apply, layer_norm_reference, (x, w, b), grad_output=g)
    assert report.passed and report.dtype == "bfloat16"
    with pytest.raises(gl.InvalidInputError, match="grad_output has shape"):
        check_torch_function(LayerNorm.apply, layer_norm_reference, (x, w, b), grad_output=g[:2])


def test_report_reads_as_text_and_json() -> None:
    logits, target = cross_entropy_inputs(0, rows=3, vocabulary=64)
    report = check_torch_function(SoftmaxCrossEntropy.apply, cross_entropy_reference, (logits, target),
                                  constants=(1,))
    assert report.summary().startswith("passed on cpu/bfloat16")
    data = json.loads(json.dumps(report.to_dict()))
    assert set(data["tensors"]) == {"the output", "the gradient of 'logits' (input 0)"}
    assert data["error_ratio"] == report.error_ratio


# --- contract violations: typed errors, before or instead of a verdict ------------------------------------------

def _function(backward_result: object, forward: object = None) -> type[torch.autograd.Function]:
    class Planted(torch.autograd.Function):
        @staticmethod
        def forward(ctx: object, x: torch.Tensor) -> torch.Tensor:
            return x * 2 if forward is None else forward(x)  # type: ignore[operator]

        @staticmethod
        def backward(ctx: object, g: torch.Tensor) -> torch.Tensor:
            return backward_result(g)  # type: ignore[operator, no-any-return]

    return Planted


X = (np.linspace(-1, 1, 12).reshape(3, 4),)


@pytest.mark.parametrize(("backward", "what"), [
    (lambda g: (g * 2).float(), "dtype float32 where the input has bfloat16"),
    (lambda g: (g * 2).reshape(-1), "shape (12,) where the input has (3, 4)"),
    (lambda g: (g * 2)[:1], "shape (1, 4) where the input has (3, 4)"),  # torch would sum it silently
    (lambda g: (g * 2).to("meta"), "device meta where the input has cpu"),
])
def test_a_gradient_of_the_wrong_dtype_shape_or_device(backward: object, what: str) -> None:
    with pytest.raises(CandidateContractError, match=what.replace("(", r"\(").replace(")", r"\)")):
        check_torch_function(_function(backward).apply, lambda x: x * 2, X)


@pytest.mark.parametrize("candidate", [lambda x: (x * 2).detach(), lambda x: torch.tensor(x.tolist()) * 2])
def test_a_candidate_that_is_not_differentiable(candidate: object) -> None:
    with pytest.raises(CandidateContractError, match="not differentiable"):
        check_torch_function(candidate, lambda x: x * 2, X)  # type: ignore[arg-type]


def test_an_output_of_another_shape() -> None:
    with pytest.raises(CandidateContractError, match=r"output has shape \(3, 4\), the reference's \(\)"):
        check_torch_function(lambda x: x * 2, lambda x: (x * 2).sum(), X)


def test_nan_where_the_reference_is_finite() -> None:
    planted = _function(lambda g: g * torch.where(torch.arange(4) == 2, torch.nan, 2.0).to(g.dtype))
    with pytest.raises(gl.NonFiniteError, match=r"gradient of 'x' \(input 0\) holds nan at \[0, 2\]"):
        check_torch_function(planted.apply, lambda x: x * 2, X)


def test_an_overflow_in_the_dtype() -> None:
    big = (np.full((2, 2), 300.0),)
    with pytest.raises(DtypeOverflowError, match="overflows float16"):  # 300**2 = 9e4 > 65504
        check_torch_function(lambda x: x * x, lambda x: x * x, big, dtype="float16")
    with pytest.raises(DtypeOverflowError, match="torch reference in float16 overflows"):  # exp(20) / exp(20)
        check_torch_function(lambda x: torch.softmax(x, -1), lambda x: x.exp() / x.exp().sum(-1, keepdim=True),
                             (np.full((2, 3), 12.0),), dtype="float16")


def test_a_truth_outside_the_domain() -> None:
    with pytest.raises(gl.NonFiniteError, match="outside the function's domain"):
        check_torch_function(torch.sqrt, torch.sqrt, (np.array([-1.0, 4.0]),))


def test_order_two_needs_a_differentiable_backward() -> None:
    class Once(torch.autograd.Function):
        @staticmethod
        def forward(ctx: object, x: torch.Tensor) -> torch.Tensor:
            ctx.save_for_backward(x)  # type: ignore[attr-defined]
            return x * x

        @staticmethod
        @once_differentiable
        def backward(ctx: object, g: torch.Tensor) -> torch.Tensor:
            (x,) = ctx.saved_tensors  # type: ignore[attr-defined]
            return 2 * x * g

    class Detached(Once):
        @staticmethod
        def backward(ctx: object, g: torch.Tensor) -> torch.Tensor:
            (x,) = ctx.saved_tensors  # type: ignore[attr-defined]
            with torch.no_grad():
                return 2 * x * g

    assert check_torch_function(Once.apply, lambda x: x * x, X, dtype="float32").passed
    for planted in (Once, Detached):
        with pytest.raises(CandidateContractError, match="backward"):
            check_torch_function(planted.apply, lambda x: x * x, X, dtype="float32", order=2)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"factor": 0}, "factor must be a finite number > 0"),
    ({"factor": "2"}, "factor must be"),
    ({"order": 3}, "order must be 1 or 2"),
    ({"rtol": -1.0}, "rtol must be"),
    ({"seed": 1.5}, "seed must be an integer"),
    ({"constants": (4,)}, "constants= holds index 4"),
    ({"dtype": "float8"}, "unknown dtype"),
])
def test_arguments_are_checked_before_any_work(kwargs: dict[str, object], match: str) -> None:
    calls = []

    def candidate(x: torch.Tensor) -> torch.Tensor:
        calls.append(x)
        return x * 2

    with pytest.raises(gl.GradcheckError, match=match):
        check_torch_function(candidate, lambda x: x * 2, X, **kwargs)  # type: ignore[arg-type]
    assert not calls
    with pytest.raises(gl.InvalidInputError, match="candidate must be"):
        check_torch_function("not a function", lambda x: x * 2, X)  # type: ignore[arg-type]


def test_verify_torch_function_searches_and_shrinks() -> None:
    from gradcheck_lab.cases.torch_function_cases import LayerNormMissingTerm
    from gradcheck_lab.gradients.torch_function_search import verify_torch_function

    shapes = [(2, 8), (8,), (8,)]
    result = verify_torch_function(LayerNorm.apply, layer_norm_reference, shapes=shapes, max_examples=4)
    assert result.passed and result.examples == 4 and result.report.dtype == "bfloat16"
    drawn = st.integers(0, 2**16).map(lambda seed: layer_norm_inputs(seed, rows=2, features=8))
    with pytest.raises(gl.GradientMismatch, match="minimal counterexample"):
        verify_torch_function(LayerNormMissingTerm.apply, layer_norm_reference, inputs=drawn, max_examples=3,
                              dtype="float32")


def test_device_and_dtype_positionally_work_with_a_deprecation_warning() -> None:
    with pytest.warns(DeprecationWarning, match="by keyword"):
        report = check_torch_function(lambda x: x * 2, lambda x: x * 2, X, "cpu", "float16")  # type: ignore[misc]
    assert report.dtype == "float16"
    with pytest.raises(gl.InvalidInputError, match="pass the others by keyword"):
        check_torch_function(lambda x: x * 2, lambda x: x * 2, X, "cpu", "float16", ())  # type: ignore[misc]


def test_a_reference_without_a_kernel_for_the_dtype() -> None:
    def reference(x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.float16:
            raise RuntimeError('"addmm" not implemented for \'Half\'')
        return x * 2

    with pytest.raises(gl.TorchFunctionError, match="the reference cannot run in float16 on cpu"):
        check_torch_function(lambda x: x * 2, reference, X, dtype="float16")


@pytest.mark.parametrize(("dtype", "passing", "failing"), [("bfloat16", 1, 4), ("float16", 1, 4), ("float32", 4, 16)])
def test_the_floor_is_a_few_ulps_where_torch_is_exact(dtype: str, passing: int, failing: int) -> None:
    # the sum is exact in every dtype: torch's own error is 0, so only the floor (2 ulps; 8 in float32) is left
    x = (np.array([1.0, 2.0, 0.5, 0.25]),)
    eps = torch.finfo(getattr(torch, dtype)).eps

    def off_by(ulps: int) -> object:
        return lambda t: t.sum() * (1 + ulps * eps)

    assert check_torch_function(off_by(passing), torch.sum, x, dtype=dtype, grad_output=np.array(1.0)).passed
    with pytest.raises(gl.GradientMismatch) as caught:
        check_torch_function(off_by(failing), torch.sum, x, dtype=dtype, grad_output=np.array(1.0))
    assert caught.value.report.tensors["the output"].reference_error == 0.0
