"""Complex inputs in check_gradients and check_vjp: torch's convention passes, the conjugation mistakes are named."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gradcheck_lab.reference import second_order as so

import gradcheck_lab as gl
from gradcheck_lab.gradients.complex import as_pairs, complex_pattern, from_pairs

DTYPES = ["float64", "float32"]
rng = np.random.default_rng(11)
A = rng.standard_normal((6, 3)) + 1j * rng.standard_normal((6, 3))
B = rng.standard_normal(6) + 1j * rng.standard_normal(6)
Z = rng.standard_normal(3) + 1j * rng.standard_normal(3)


def torch_least_squares(A, b, z):
    return ((A @ z - b).abs() ** 2).sum()


def conjugated(A, b, z):
    value, (_, _, g) = so.complex_least_squares(A, b, z)
    return value, (None, None, np.conj(g))


def wirtinger_dz_bar(A, b, z):
    value, (_, _, g) = so.complex_least_squares(A, b, z)
    return value, (None, None, g / 2)  # dL/d conj(z) = A^H r: half of torch's z.grad


def transpose_not_adjoint(A, b, z):
    value, _ = so.complex_least_squares(A, b, z)
    return value, (None, None, 2 * A.T @ (A @ z - b))


@pytest.mark.parametrize("dtype", DTYPES)
def test_complex_least_squares_right(dtype):
    report = gl.check_gradients(so.complex_least_squares, torch_least_squares, (A, B, Z), constants=(0, 1),
                                dtype=dtype, finite_differences=True)
    assert report.passed and report.dtype == dtype
    assert not report.oracle.disagreeing


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("wrong, named", [
    (conjugated, "complex conjugate of torch's"),
    (wirtinger_dz_bar, "Wirtinger derivative dL/d conj(z)"),
    (transpose_not_adjoint, None),
])
def test_complex_least_squares_wrong_twins_reported(dtype, wrong, named):
    with pytest.raises(gl.GradientMismatch) as info:
        gl.check_gradients(wrong, torch_least_squares, (A, B, Z), constants=(0, 1), dtype=dtype)
    assert "(real, imaginary) pairs" in str(info.value)
    if named:
        assert named in info.value.report.diagnosis
        assert named in str(info.value)


def test_dtype_names_the_precision():
    assert gl.check_gradients(so.complex_least_squares, torch_least_squares, (A, B, Z), constants=(0, 1),
                              dtype="complex64").dtype == "float32"
    assert gl.check_gradients(so.complex_least_squares, torch_least_squares, (A, B, Z), constants=(0, 1),
                              dtype=torch.complex128).dtype == "float64"
    with pytest.raises(gl.UnknownDtypeError, match="complex"):
        gl.check_gradients(so.complex_least_squares, torch_least_squares, (A, B, Z), constants=(0, 1),
                           dtype="float16")


def test_mixed_real_and_complex_inputs():
    s = rng.standard_normal(3)

    def reference(z, s):  # L = sum |z|^2 * s: z.grad = 2 s z, s.grad = |z|^2
        return np.sum(np.abs(z) ** 2 * s), (2 * s * z, np.abs(z) ** 2)

    assert gl.check_gradients(reference, lambda z, s: (z.abs() ** 2 * s).sum(), (Z, s)).passed
    with pytest.raises(gl.GradientMismatch, match="conjugate"):
        gl.check_gradients(lambda z, s: (reference(z, s)[0], (2 * s * np.conj(z), np.abs(z) ** 2)),
                           lambda z, s: (z.abs() ** 2 * s).sum(), (Z, s))


def test_complex_contract_errors():
    with pytest.raises(gl.TorchFunctionError, match="complex tensor"):
        gl.check_gradients(so.complex_least_squares, lambda A, b, z: (A @ z - b).sum(), (A, B, Z), constants=(0, 1))
    with pytest.raises(gl.ReferenceContractError, match="complex"):
        gl.check_gradients(lambda A, b, z: (np.sum(A @ z), (None, None, z)), torch_least_squares, (A, B, Z),
                           constants=(0, 1))
    with pytest.raises(gl.ReferenceContractError, match="shape"):
        gl.check_gradients(lambda A, b, z: (so.complex_least_squares(A, b, z)[0], (None, None, z[:2])),
                           torch_least_squares, (A, B, Z), constants=(0, 1))


W = rng.standard_normal((4, 3)) + 1j * rng.standard_normal((4, 3))


def torch_matvec(z):
    return torch.tensor(W, dtype=z.dtype) @ z


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("given", [True, False])
def test_complex_vjp(dtype, given):
    g = rng.standard_normal(4) + 1j * rng.standard_normal(4) if given else None
    report = gl.check_vjp(lambda z: W @ z, lambda g, z: W.conj().T @ g, torch_matvec, (Z,), grad_output=g,
                          dtype=dtype)
    assert report.passed
    with pytest.raises(gl.GradientMismatch) as info:
        gl.check_vjp(lambda z: W @ z, lambda g, z: W.T @ g, torch_matvec, (Z,), grad_output=g, dtype=dtype)
    assert "W^T g (the transpose) where torch computes W^H g" in info.value.report.diagnosis


def test_complex_vjp_real_weights_complex_output():
    x = rng.standard_normal(3)  # a real input, a complex output: x -> W x

    def backward(g, x):
        return np.real(W.conj().T @ g)

    for g in (rng.standard_normal(4) + 1j * rng.standard_normal(4), None):  # given, or drawn complex
        assert gl.check_vjp(lambda x: W @ x, backward, lambda x: torch.tensor(W) @ x.to(torch.complex128), (x,),
                            grad_output=g).passed
    with pytest.raises(gl.GradientMismatch):
        gl.check_vjp(lambda x: W @ x, lambda g, x: np.real(W.T @ g), lambda x: torch.tensor(W) @ x.to(torch.complex128),
                     (x,))


def test_pairs_round_trip_and_patterns():
    assert np.array_equal(from_pairs(as_pairs(Z)), Z)
    assert as_pairs(Z.astype(np.complex64)).dtype == np.float32
    t = rng.standard_normal(5) + 1j * rng.standard_normal(5)
    assert "conjugate" in complex_pattern(np.conj(t), t)
    assert "dL/dz" in complex_pattern(np.conj(t) / 2, t)
    assert complex_pattern(t.real, t.real) is None
    assert complex_pattern(t * 1.5, t) is None
