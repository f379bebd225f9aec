"""Forward mode and second order: every right hand derivation passes, every planted wrong twin is reported.

Each reference of ``reference/second_order.py`` is checked in float64 and float32, with the tangents or
vectors given and drawn by the harness; each wrong twin below is a mistake people make deriving it by hand.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from gradcheck_lab.reference import second_order as so

import gradcheck_lab as gl
from gradcheck_lab.gradients.hvp import check_hessian, check_hvp
from gradcheck_lab.gradients.jvp import check_jvp

DTYPES = ["float64", "float32"]
rng = np.random.default_rng(2026)

# --- a tanh MLP: forward mode -------------------------------------------------------------------------
MLP = (rng.standard_normal((5, 3)), rng.standard_normal((3, 4)), rng.standard_normal(4),
       rng.standard_normal((4, 2)), rng.standard_normal(2))
MLP_TANGENTS = tuple(rng.standard_normal(x.shape) for x in MLP)


def torch_mlp(x, W1, b1, W2, b2):
    return torch.tanh(x @ W1 + b1) @ W2 + b2


def jvp_derivative_at_preactivation(tangents, x, W1, b1, W2, b2):
    dx, dW1, db1, dW2, db2 = tangents
    a = x @ W1 + b1
    h = np.tanh(a)
    return ((1 - a * a) * (dx @ W1 + x @ dW1 + db1)) @ W2 + h @ dW2 + db2  # tanh' taken at a, not at h


def jvp_missing_weight_term(tangents, x, W1, b1, W2, b2):
    dx, dW1, db1, _, db2 = tangents
    h = np.tanh(x @ W1 + b1)
    return ((1 - h * h) * (dx @ W1 + x @ dW1 + db1)) @ W2 + db2  # the product rule's h dW2 forgotten


def jvp_missing_input_term(tangents, x, W1, b1, W2, b2):
    _, dW1, db1, dW2, db2 = tangents
    h = np.tanh(x @ W1 + b1)
    return ((1 - h * h) * (x @ dW1 + db1)) @ W2 + h @ dW2 + db2  # dx W1 forgotten


def jvp_halved(tangents, x, W1, b1, W2, b2):
    return so.mlp_jvp(tangents, x, W1, b1, W2, b2) / 2


def forward_without_bias(x, W1, b1, W2, b2):
    return np.tanh(x @ W1 + b1) @ W2


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("given", [True, False])
def test_mlp_jvp_right(dtype, given):
    report = check_jvp(so.mlp_forward, so.mlp_jvp, torch_mlp, MLP, tangents=MLP_TANGENTS if given else None,
                       dtype=dtype, finite_differences=True)
    assert report.passed and report.dtype == dtype
    assert report.oracle is not None and not report.oracle.disagreeing


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("given", [True, False])
@pytest.mark.parametrize("wrong, named", [
    (jvp_derivative_at_preactivation, None),
    (jvp_missing_weight_term, "without the term of 'W2'"),
    (jvp_missing_input_term, "without the term of 'x'"),
    (jvp_halved, "0.5 times torch's"),
])
def test_mlp_jvp_wrong_twins_reported(dtype, given, wrong, named):
    with pytest.raises(gl.GradientMismatch) as info:
        check_jvp(so.mlp_forward, wrong, torch_mlp, MLP, tangents=MLP_TANGENTS if given else None, dtype=dtype)
    assert "the JVP" in str(info.value)
    if named:
        assert named in info.value.report.diagnosis


@pytest.mark.parametrize("dtype", DTYPES)
def test_wrong_forward_reported(dtype):
    with pytest.raises(gl.GradientMismatch, match=r"the value \(forward\)"):
        check_jvp(forward_without_bias, so.mlp_jvp, torch_mlp, MLP, dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_transposed_jacobian_named(dtype):
    A = rng.standard_normal((4, 4))
    with pytest.raises(gl.GradientMismatch) as info:
        check_jvp(lambda x: np.tanh(A @ x), lambda t, x: (1 - np.tanh(A @ x) ** 2) * (A.T @ t[0]),
                  lambda x: torch.tanh(torch.tensor(A, dtype=x.dtype) @ x), (rng.standard_normal(4),), dtype=dtype)
    assert info.value.report.diagnosis is None or "the JVP" in info.value.report.diagnosis
    B = rng.standard_normal((4, 4))
    with pytest.raises(gl.GradientMismatch) as info:
        check_jvp(lambda x: B @ x, lambda t, x: B.T @ t[0], lambda x: torch.tensor(B, dtype=x.dtype) @ x,
                  (rng.standard_normal(4),), dtype=dtype)
    assert "transposed Jacobian" in info.value.report.diagnosis


def test_jvp_constants_and_data():
    x = MLP[0]

    def jvp_params(tangents, x, W1, b1, W2, b2):
        return so.mlp_jvp((np.zeros_like(x), *tangents), x, W1, b1, W2, b2)

    report = check_jvp(so.mlp_forward, jvp_params, torch_mlp, (x, *MLP[1:]), constants=(0,))
    assert report.passed
    with pytest.raises(gl.GradientMismatch):
        check_jvp(so.mlp_forward, lambda t, *a: jvp_params(t, *a) * 1.001, torch_mlp, MLP, constants=(0,))


def test_jvp_typed_errors():
    with pytest.raises(gl.InvalidInputError, match="tangents must be a tuple of 5"):
        check_jvp(so.mlp_forward, so.mlp_jvp, torch_mlp, MLP, tangents=MLP_TANGENTS[:4])
    with pytest.raises(gl.InvalidInputError, match=r"tangents\[1\] has shape \(4, 3\)"):
        check_jvp(so.mlp_forward, so.mlp_jvp, torch_mlp, MLP,
                  tangents=(MLP_TANGENTS[0], MLP_TANGENTS[1].T, *MLP_TANGENTS[2:]))
    with pytest.raises(gl.ReferenceContractError, match="transposed"):
        check_jvp(so.mlp_forward, lambda t, *a: so.mlp_jvp(t, *a).T, torch_mlp, MLP)
    with pytest.raises(gl.InvalidInputError, match="rtol"):
        check_jvp(so.mlp_forward, so.mlp_jvp, torch_mlp, MLP, rtol="small")
    with pytest.raises(TypeError):
        check_jvp(so.mlp_forward, so.mlp_jvp, torch_mlp, MLP, MLP_TANGENTS)  # keyword-only after the inputs


def test_inputs_not_modified():
    before = [x.copy() for x in MLP]
    check_jvp(so.mlp_forward, so.mlp_jvp, torch_mlp, MLP, dtype="float32")
    assert all(np.array_equal(a, b) for a, b in zip(before, MLP, strict=True))


# --- logistic regression with L2: Hessian and Hessian-vector product ------------------------------------
N, D, L2 = 24, 4, 0.1
X = rng.standard_normal((N, D))
Y = (rng.random(N) < 0.5).astype(np.float64)
W = rng.standard_normal(D) * 0.5
V = (rng.standard_normal(D),)


def torch_logistic(w, X, y):
    z = X @ w
    softplus = torch.relu(z) + torch.log1p(torch.exp(-z.abs()))  # F.softplus is linear past 20
    return (softplus - y * z).mean() + 0.5 * L2 * (w * w).sum()


def hessian(w, X, y):
    return so.logistic_hessian(w, X, y, L2)


def hessian_without_mean(w, X, y):
    p = 1 / (1 + np.exp(-X @ w))
    return (X.T * (p * (1 - p))) @ X + L2 * np.eye(D)  # 1/n forgotten on the data term


def hessian_without_regularizer(w, X, y):
    return so.logistic_hessian(w, X, y, 0.0)


def hessian_without_variance(w, X, y):
    p = 1 / (1 + np.exp(-X @ w))
    return (X.T * p) @ X / N + L2 * np.eye(D)  # sigma'(z) taken as sigma(z)


def hessian_asymmetric(w, X, y):
    return hessian(w, X, y) + np.triu(np.full((D, D), 1e-3), 1)


def hvp(vectors, w, X, y):
    return so.logistic_hvp(vectors, w, X, y, L2)


def hvp_without_regularizer(vectors, w, X, y):
    return so.logistic_hvp(vectors, w, X, y, 0.0)


def hvp_without_mean(vectors, w, X, y):
    (v,) = vectors
    p = 1 / (1 + np.exp(-X @ w))
    return (X.T @ (p * (1 - p) * (X @ v)) + L2 * v,)


@pytest.mark.parametrize("dtype", DTYPES)
def test_logistic_hessian(dtype):
    assert check_hessian(hessian, torch_logistic, (W, X, Y), constants=(1, 2), dtype=dtype).passed
    w_next = so.newton_step(W, X, Y, L2)  # a Newton step lowers the loss
    assert torch_logistic(*map(torch.tensor, (w_next, X, Y))) < torch_logistic(*map(torch.tensor, (W, X, Y)))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("wrong, named", [
    (hessian_without_mean, "summed over axis 0 of 'X'"),
    (hessian_without_regularizer, "regularizer's term lambda*v"),
    (hessian_without_variance, None),
    (hessian_asymmetric, "not symmetric"),
])
def test_logistic_hessian_wrong_twins_reported(dtype, wrong, named):
    with pytest.raises(gl.GradientMismatch, match="the Hessian of 'w'") as info:
        check_hessian(wrong, torch_logistic, (W, X, Y), constants=(1, 2), dtype=dtype)
    if named:
        assert named in info.value.report.diagnosis


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("given", [True, False])
def test_logistic_hvp(dtype, given):
    report = check_hvp(hvp, torch_logistic, (W, X, Y), vectors=V if given else None, constants=(1, 2), dtype=dtype,
                       finite_differences=True)
    assert report.passed and not report.oracle.disagreeing


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("given", [True, False])
@pytest.mark.parametrize("wrong, named", [
    (hvp_without_regularizer, "lambda = 0.1"),
    (hvp_without_mean, "20 times" if N == 20 else f"{N} times torch's"),
])
def test_logistic_hvp_wrong_twins_reported(dtype, given, wrong, named):
    with pytest.raises(gl.GradientMismatch, match="Hessian-vector product for 'w'") as info:
        check_hvp(wrong, torch_logistic, (W, X, Y), vectors=V if given else None, constants=(1, 2), dtype=dtype)
    assert named in info.value.report.diagnosis


def test_hessian_typed_errors():
    with pytest.raises(gl.InvalidInputError, match="one non-constant input"):
        check_hessian(hessian, torch_logistic, (W, X, Y), constants=(2,))
    with pytest.raises(gl.ReferenceContractError, match="flattened"):
        check_hessian(lambda *a: hessian(*a).ravel(), torch_logistic, (W, X, Y), constants=(1, 2))
    with pytest.raises(gl.InvalidInputError, match=r"vectors\[0\] has shape \(3,\)"):
        check_hvp(hvp, torch_logistic, (W, X, Y), vectors=(np.ones(3),), constants=(1, 2))
    with pytest.raises(gl.ReferenceContractError, match="hvp returned shape"):
        check_hvp(lambda v, *a: (hvp(v, *a)[0][:2],), torch_logistic, (W, X, Y), constants=(1, 2))


# --- softmax regression: a Hessian-vector product ----------------------------------------------------------
SX = rng.standard_normal((10, 3))
SY = rng.integers(0, 4, size=10)
SW = rng.standard_normal((3, 4))


def torch_softmax(W, X, y):
    return F.cross_entropy(X @ W, y)


def softmax_hvp_diagonal_only(vectors, W, X, y):
    (V,) = vectors
    P = np.exp(X @ W)
    P /= P.sum(1, keepdims=True)
    return (X.T @ (P * (X @ V)) / X.shape[0],)  # diag(p) kept, -p p^T forgotten


def softmax_hvp_summed(vectors, W, X, y):
    return (so.softmax_hvp(vectors, W, X, y)[0] * X.shape[0],)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("given", [True, False])
def test_softmax_hvp(dtype, given):
    vectors = (rng.standard_normal(SW.shape),) if given else None
    assert check_hvp(so.softmax_hvp, torch_softmax, (SW, SX, SY), vectors=vectors, constants=(1, 2),
                     dtype=dtype).passed
    assert so.softmax_loss(SW, SX, SY)[0] == pytest.approx(float(torch_softmax(*map(torch.tensor, (SW, SX, SY)))))
    for wrong in (softmax_hvp_diagonal_only, softmax_hvp_summed):
        with pytest.raises(gl.GradientMismatch):
            check_hvp(wrong, torch_softmax, (SW, SX, SY), vectors=vectors, constants=(1, 2), dtype=dtype)


# --- the tanh MLP's R-operator ------------------------------------------------------------------------------
RX, RY = rng.standard_normal((6, 3)), 3 * rng.standard_normal((6, 2))
PARAMS = MLP[1:]


def torch_mlp_loss(W1, b1, W2, b2, x, y):
    return 0.5 * ((torch.tanh(x @ W1 + b1) @ W2 + b2 - y) ** 2).sum() / x.shape[0]


def r_op_gauss_newton(vectors, W1, b1, W2, b2, x, y):
    V1, c1, V2, c2 = vectors
    n, h = x.shape[0], np.tanh(x @ W1 + b1)
    Rh = (1 - h * h) * (x @ V1 + c1)
    Rgo = (Rh @ W2 + h @ V2 + c2) / n
    Rga = (Rgo @ W2.T) * (1 - h * h)
    return x.T @ Rga, Rga.sum(0), h.T @ Rgo, Rgo.sum(0)


def r_op_missing_curvature_of_tanh(vectors, W1, b1, W2, b2, x, y):
    V1, c1, V2, c2 = vectors
    n, h = x.shape[0], np.tanh(x @ W1 + b1)
    go = (h @ W2 + b2 - y) / n
    Rh = (1 - h * h) * (x @ V1 + c1)
    Rgo = (Rh @ W2 + h @ V2 + c2) / n
    Rga = (Rgo @ W2.T + go @ V2.T) * (1 - h * h)  # - 2 g_h h R{h} forgotten
    return x.T @ Rga, Rga.sum(0), Rh.T @ go + h.T @ Rgo, Rgo.sum(0)


def r_op_missing_cross_term(vectors, W1, b1, W2, b2, x, y):
    V1, c1, V2, c2 = vectors
    n, h = x.shape[0], np.tanh(x @ W1 + b1)
    go = (h @ W2 + b2 - y) / n
    Rh = (1 - h * h) * (x @ V1 + c1)
    Rgo = (Rh @ W2 + h @ V2 + c2) / n
    Rga = Rgo @ W2.T * (1 - h * h) - 2 * (go @ W2.T) * h * Rh
    return x.T @ Rga, Rga.sum(0), Rh.T @ go + h.T @ Rgo, Rgo.sum(0)  # g_o V2^T forgotten in R{g_h}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("given", [True, False])
def test_mlp_r_operator(dtype, given):
    vectors = tuple(rng.standard_normal(p.shape) for p in PARAMS) if given else None
    report = check_hvp(so.mlp_hvp, torch_mlp_loss, (*PARAMS, RX, RY), vectors=vectors, constants=(4, 5),
                       dtype=dtype)
    assert report.passed
    assert so.mlp_loss(*PARAMS, RX, RY)[0] == pytest.approx(float(torch_mlp_loss(*map(torch.tensor,
                                                                                       (*PARAMS, RX, RY)))))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("given", [True, False])
@pytest.mark.parametrize("wrong, named", [
    (r_op_gauss_newton, "Gauss-Newton"),
    (r_op_missing_curvature_of_tanh, None),
    (r_op_missing_cross_term, None),
])
def test_mlp_r_operator_wrong_twins_reported(dtype, given, wrong, named):
    vectors = tuple(np.random.default_rng(5).standard_normal(p.shape) for p in PARAMS) if given else None
    with pytest.raises(gl.GradientMismatch, match="Hessian-vector product for") as info:
        check_hvp(wrong, torch_mlp_loss, (*PARAMS, RX, RY), vectors=vectors, constants=(4, 5), dtype=dtype)
    if named:
        assert named in info.value.report.diagnosis


def test_hvp_missing_cross_block_named():
    def torch_f(a, b):
        return (a * a * b).sum()

    def hvp_no_cross(vectors, a, b):  # H = [[2 diag(b), 2 diag(a)], [2 diag(a), 0]]
        va, _ = vectors
        return 2 * b * va, np.zeros_like(b)

    a, b = rng.standard_normal(3), rng.standard_normal(3)
    with pytest.raises(gl.GradientMismatch) as info:
        check_hvp(hvp_no_cross, torch_f, (a, b))
    assert "cross term" in info.value.report.diagnosis or "diagonal block" in info.value.report.diagnosis


def test_linear_function_has_zero_hessian():
    c = rng.standard_normal(3)
    assert check_hvp(lambda v, x: (np.zeros(3),), lambda x: (x * torch.tensor(c)).sum(), (c,)).passed
    with pytest.raises(gl.GradientMismatch, match=r"all zeros|disagrees"):
        check_hvp(lambda v, x: (np.zeros(3),), lambda x: (x**3).sum(), (c,))


# --- every scale, cancellation ----------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scale", [1e-8, 1.0, 1e4])
def test_scales(dtype, scale):
    x = scale * rng.standard_normal((3, 2))
    c = rng.standard_normal((3, 2))

    def cubic_hvp(vectors, x, c):  # f = sum(c x^3): H = diag(6 c x)
        return (6 * c * x * vectors[0],)

    def cubic_jvp(tangents, x, c):
        return 3 * c * x**2 * tangents[0]

    assert check_hvp(cubic_hvp, lambda x, c: (c * x**3).sum(), (x, c), constants=(1,), dtype=dtype).passed
    assert check_jvp(lambda x, c: c * x**3, cubic_jvp, lambda x, c: c * x**3, (x, c), constants=(1,),
                     dtype=dtype).passed
    with pytest.raises(gl.GradientMismatch):
        check_hvp(lambda v, x, c: (cubic_hvp(v, x, c)[0] * (1 + 1e-4),), lambda x, c: (c * x**3).sum(), (x, c),
                  constants=(1,), dtype=dtype)
    with pytest.raises(gl.GradientMismatch):
        check_jvp(lambda x, c: c * x**3, lambda t, x, c: cubic_jvp(t, x, c) * (1 + 1e-4), lambda x, c: c * x**3,
                  (x, c), constants=(1,), dtype=dtype)


def test_cancellation_in_torch_is_not_a_mismatch():
    x = np.array([1e-9, -3e-9, 2e-8])  # exp(x) - 1 - x cancels in torch's forward mode, not in expm1

    def jvp(tangents, x):
        return np.expm1(x) * tangents[0]

    with pytest.warns(gl.InconclusiveWarning, match="float64 rounding at these inputs"):
        report = check_jvp(lambda x: np.expm1(x) - x, jvp, lambda x: torch.exp(x) - 1 - x, (x,))
    assert report.verdict == "inconclusive" and not report.passed


def test_jvp_kinks():
    x, t = np.array([0.0, 1.0, -2.0, 0.0]), (np.array([1.0, 1.0, 1.0, -1.0]),)

    def relu(x):
        return np.maximum(x, 0)

    def heaviside_at_zero(tangents, x):  # relu'(0) = 1, where torch takes 0
        return (x >= 0) * tangents[0]

    assert check_jvp(relu, lambda tangents, x: (x > 0) * tangents[0], torch.relu, (x,), tangents=t).passed
    with pytest.raises(gl.GradientMismatch, match="kink along the tangents") as info:
        check_jvp(relu, heaviside_at_zero, torch.relu, (x,), tangents=t)
    assert "kinks='subgradient' accepts" in info.value.report.diagnosis
    report = check_jvp(relu, heaviside_at_zero, torch.relu, (x,), tangents=t, kinks="subgradient")
    assert report.passed and "accepted" in report.notes[-1]
    with pytest.raises(gl.GradientMismatch, match="outside them"):  # 2 is not between 0 and 1
        check_jvp(relu, lambda tangents, x: np.where(x == 0, 2.0, x > 0) * tangents[0], torch.relu, (x,),
                  tangents=t, kinks="subgradient")


def test_torch_internal_deprecations_on_the_first_jvp_are_not_shown(tmp_path):
    """torch scripts its forward-mode decompositions on first use (18 DeprecationWarnings): torch's, not the user's."""
    import subprocess
    import sys

    script = tmp_path / "first_jvp.py"
    script.write_text(
        "import warnings\n"
        "import numpy as np\n"
        "from gradcheck_lab.gradients.jvp import check_jvp\n"
        "x = np.array([0.3, -0.2, 0.5])\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    check_jvp(lambda x: x**3, lambda t, x: 3 * x**2 * t[0], lambda x: x**3, (x,))\n"
        "print('jit warnings:', sum('jit' in str(w.message) for w in caught))\n")
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "jit warnings: 0" in run.stdout, run.stdout
