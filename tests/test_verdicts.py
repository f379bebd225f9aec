"""Verdicts: every wrong gradient a dtype can resolve is reported; correct gradients never raise.

Sensitivity is pinned at each dtype's promised resolution (``tolerances.RESOLUTION``: float64 1e-6,
float32 1e-5, float16 1e-2, bfloat16 1e-1 of the tensor's largest magnitude) on a
Linear -> sigmoid -> MSE model with W of n x n, n from 8 to 1024, and on every registered case;
false alarms are hunted on wide, mixed-scale and cancelling inputs in every dtype, with and
without the finite-difference oracle.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from gradcheck_lab.reference import linear, losses
from gradcheck_lab.reference.activations import sigmoid, sigmoid_backward
from hypothesis import given, settings
from hypothesis import strategies as st

import gradcheck_lab as gl
from gradcheck_lab.core.comparison import largest_magnitude
from gradcheck_lab.core.tolerances import RESOLUTION

DTYPES = ["float64", "float32", "float16", "bfloat16"]


def linear_sigmoid_mse(weight, bias, x, y):
    r"""Linear -> sigmoid -> MSE with a bias; the bias gradient sums :math:`g_z` over the batch axis."""
    p = sigmoid(linear.linear(x, weight, bias))
    grad_p = losses.mse_backward(p, y)
    grad_z = sigmoid_backward(grad_p, p)
    grad_x, grad_w, grad_b = linear.linear_backward(grad_z, x, weight, has_bias=True)
    return losses.mse(p, y), (grad_w, grad_b, grad_x, -grad_p)


def torch_linear_sigmoid_mse(weight, bias, x, y):
    return F.mse_loss(torch.sigmoid(F.linear(x, weight, bias)), y)


def model_inputs(n: int, seed: int, batch: int | None = None) -> tuple[np.ndarray, ...]:
    """W n x n (scaled like a default init), b, x batch x n, y in (0, 1)."""
    rng = np.random.default_rng(seed)
    batch = batch or min(n, 16)
    return (rng.standard_normal((n, n)) / np.sqrt(n), rng.standard_normal(n) * 0.1,
            rng.standard_normal((batch, n)), rng.uniform(0, 1, (batch, n)))


def _one_element_off(g: np.ndarray, d: float, seed: int, scale: float | None = None) -> np.ndarray:
    """``g`` with one element (drawn by ``seed``) off by ``d * scale``; ``scale`` defaults to max|g|."""
    g = g.copy()
    index = np.random.default_rng(seed).integers(g.size)
    g.flat[index] += d * (largest_magnitude(np.abs(g)) if scale is None else scale)
    return g


# Each bug maps (grads, d, seed) -> wrong grads, and names the gradient it corrupts.
BUGS = {
    "weight zeroed": (lambda g, d, s: (np.zeros_like(g[0]), *g[1:]), "'weight'"),
    "all doubled": (lambda g, d, s: tuple(2 * t for t in g), "disagrees"),
    "all halved": (lambda g, d, s: tuple(t / 2 for t in g), "disagrees"),
    "weight transposed": (lambda g, d, s: (g[0].T, *g[1:]), "'weight'"),
    "x sign flipped": (lambda g, d, s: (g[0], g[1], -g[2], g[3]), "'x'"),
    "bias averaged over the batch": (lambda g, d, s: (g[0], g[1] / 16, g[2], g[3]), "'bias'"),
    "one weight element off by d max|g|": (lambda g, d, s: (_one_element_off(g[0], d, s), *g[1:]), "'weight'"),
    "every x element off by relative d": (lambda g, d, s: (g[0], g[1], g[2] * (1 + d), g[3]), "'x'"),
}


def planted(bug: str, d: float, seed: int):
    corrupt = BUGS[bug][0]

    def wrong(weight, bias, x, y):
        loss, grads = linear_sigmoid_mse(weight, bias, x, y)
        return loss, corrupt(grads, d, seed)

    return wrong


@pytest.mark.parametrize("n", [8, 64, 256, 1024])
@pytest.mark.parametrize("dtype_name", DTYPES)
def test_every_planted_bug_is_reported_at_the_dtype_resolution(dtype_name, n):
    dtype = getattr(torch, dtype_name)
    d = RESOLUTION[dtype]
    seeds = (0, 1) if n <= 64 else (0,)
    for seed in seeds:
        inputs = model_inputs(n, seed)
        report = gl.check_gradients(linear_sigmoid_mse, torch_linear_sigmoid_mse, inputs, dtype=dtype_name)
        assert report.passed, report.summary()
        for bug, (_, culprit) in BUGS.items():
            with pytest.raises(gl.GradientMismatch) as info:
                gl.check_gradients(planted(bug, d, seed), torch_linear_sigmoid_mse, inputs, dtype=dtype_name)
            assert culprit in str(info.value).splitlines()[0], (bug, str(info.value))


@pytest.mark.parametrize("dtype_name", DTYPES)
@settings(max_examples=10)
@given(exponent=st.floats(0, 6), seed=st.integers(0, 2**16), n=st.sampled_from([8, 32, 128]))
def test_any_error_at_or_above_the_resolution_is_reported(dtype_name, exponent, seed, n):
    """The floor per dtype: one element off by d x max|g|, any d from the resolution to 1e6 times it."""
    d = RESOLUTION[getattr(torch, dtype_name)] * 10**exponent
    inputs = model_inputs(n, seed)
    with pytest.raises(gl.GradientMismatch):
        gl.check_gradients(planted("one weight element off by d max|g|", d, seed), torch_linear_sigmoid_mse,
                           inputs, dtype=dtype_name)


def test_float64_sees_far_below_its_promise():
    """The math comparison runs at float64 resolution in every dtype: 1e-8 of max|g| shows even in bfloat16."""
    inputs = model_inputs(64, 3)
    for dtype_name in DTYPES:
        with pytest.raises(gl.GradientMismatch):
            gl.check_gradients(planted("one weight element off by d max|g|", 1e-7, 3), torch_linear_sigmoid_mse,
                               inputs, dtype=dtype_name)


def _corrupt(reference, k: int, bug: str, d: float, seed: int):
    """Wrap a registered reference so that its gradient in slot ``k`` carries ``bug``.

    "one element off" adds d max|g| at the inputs of the first call (the check's own) and the same amount at
    every later call (the moved points of the floor, kinks and oracle): a wrong formula of a fixed size. Scaled
    at each point instead, the error jumps wherever max|g| does (a relu or a max-pool tie crossed by a move of
    2^-10): a discontinuous bug, which the promise leaves inconclusive (see tolerances.WIDE_MOVE).
    """
    scale: list[float] = []  # max|g| at the first call

    def wrong(*inputs):
        value, grads = reference(*inputs)
        grads = list(grads)
        g = np.asarray(grads[k], dtype=np.float64)
        if not scale:
            scale.append(largest_magnitude(np.abs(g)))
        grads[k] = {"zeroed": np.zeros_like(g), "doubled": 2 * g,
                    "one element off": _one_element_off(g, d, seed, scale[0])}[bug]
        return value, tuple(grads)

    return wrong


@pytest.mark.parametrize("name", sorted(gl.CASES))
@pytest.mark.parametrize("dtype_name", DTYPES)
@settings(max_examples=3)
@given(data=st.data())
def test_every_registered_case_reports_planted_bugs(name, dtype_name, data):
    case = gl.CASES[name]
    if dtype_name not in case.dtypes:
        pytest.skip(f"{name} does not support {dtype_name}")
    inputs = data.draw(case.inputs, label="inputs")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", gl.InconclusiveWarning)
        report = gl.check_case(case, inputs, dtype=dtype_name)
    if report.verdict == "inconclusive":
        return  # this input cannot tell right from wrong; nothing to prove here
    _, grads = case.reference(*[np.asarray(a) for a in inputs])
    sizes = {k: largest_magnitude(np.abs(np.asarray(g, dtype=np.float64))) for k, g in enumerate(grads)
             if g is not None and np.asarray(g).size and k not in case.constants}
    k = max(sizes, key=sizes.__getitem__)
    if sizes[k] == 0:
        return  # a zero gradient cannot be zeroed, doubled or scaled
    d = RESOLUTION[getattr(torch, dtype_name)]
    for bug in ("zeroed", "doubled", "one element off"):
        wrong = _corrupt(case.reference, k, bug, d, 0)
        with pytest.raises(gl.GradientMismatch):
            gl.check_gradients(wrong, case.torch_fn, inputs, dtype=dtype_name, **case.check_options(dtype_name))


# --- no false alarms ------------------------------------------------------------------------------

def tanh_mlp(w1, w2, x):
    r"""Loss :math:`\sum \tanh(x W_1^\top) W_2^\top` squared, halved; chain rule through tanh."""
    h = np.tanh(x @ w1.T)
    out = h @ w2.T
    grad_out = out
    grad_h = grad_out @ w2
    grad_z = grad_h * (1 - h**2)
    return 0.5 * np.sum(out**2), (grad_z.T @ x, grad_out.T @ h, grad_z @ w1)


def torch_tanh_mlp(w1, w2, x):
    return 0.5 * ((torch.tanh(x @ w1.T) @ w2.T) ** 2).sum()


def cancelling_products(a, b):
    r""":math:`L = (\sum_i a_i b_i)^2`; :math:`\partial L/\partial a = 2 s b`, with :math:`s` cancelling to ~0."""
    s = np.dot(a, b)
    return s**2, (2 * s * b, 2 * s * a)


def torch_cancelling_products(a, b):
    return (a * b).sum() ** 2


def wide(rng, shape):
    """Magnitudes log-uniform in [1e-4, 1e4], random signs."""
    return rng.choice([-1.0, 1.0], shape) * 10 ** rng.uniform(-4, 4, shape)


def _alarm_inputs(kind: str, seed: int) -> tuple[str, tuple[np.ndarray, ...]]:
    rng = np.random.default_rng(seed)
    if kind == "wide":
        return "model", (wide(rng, (8, 8)), wide(rng, 8), wide(rng, (4, 8)), rng.uniform(0, 1, (4, 8)))
    if kind == "mixed":  # each tensor its own scale
        return "mlp", (1e-3 * rng.standard_normal((6, 5)), 1e3 * rng.standard_normal((3, 6)),
                       1e-2 * rng.standard_normal((4, 5)))
    if kind == "tiny gradient":
        return "mlp", (1e-4 * rng.standard_normal((6, 5)), 1e-4 * rng.standard_normal((3, 6)),
                       rng.standard_normal((4, 5)))
    # cancelling: a . b sums terms of size ~1e2..1e4 to ~1e-7 of them
    a = wide(rng, 32)
    b = wide(rng, 32)
    b[-1] = -(np.dot(a[:-1], b[:-1])) / a[-1] * (1 + 1e-7 * rng.standard_normal())
    return "cancel", (a, b)


_FUNCTIONS = {"model": (linear_sigmoid_mse, torch_linear_sigmoid_mse), "mlp": (tanh_mlp, torch_tanh_mlp),
              "cancel": (cancelling_products, torch_cancelling_products)}


@pytest.mark.parametrize("oracle", [False, True], ids=["plain", "oracle"])
@pytest.mark.parametrize("dtype_name", DTYPES)
@pytest.mark.parametrize("kind", ["wide", "mixed", "tiny gradient", "cancelling"])
def test_correct_gradients_never_raise(kind, dtype_name, oracle):
    for seed in range(6):
        function, inputs = _alarm_inputs(kind, seed)
        reference_fn, torch_fn = _FUNCTIONS[function]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", gl.InconclusiveWarning)
            try:
                report = gl.check_gradients(reference_fn, torch_fn, inputs, dtype=dtype_name,
                                            finite_differences=oracle, seed=seed)
            except gl.NonFiniteError as error:  # float16 overflows past 65504: a typed error, not a verdict
                assert dtype_name == "float16" and ("float16" in str(error) or "torch" in str(error)), str(error)
                continue
        assert report.verdict in ("passed", "inconclusive")
        if report.oracle is not None:
            assert report.oracle.reference_vs_fd is not False and report.oracle.autograd_vs_fd is not False


def reordered_sum(x):
    r""":math:`L = (\sum x)^2`, :math:`\partial L/\partial x_i = 2\sum x`, the sum in an order torch does not use."""
    s = (x[0] + x[2]) + x[1]
    return s**2, (np.full_like(x, 2 * s),)


def test_disagreement_that_float64_rounding_explains_is_inconclusive_never_a_pass_or_mismatch():
    x = np.array([1e8, 1e-3, -1e8])  # torch sums 1e8 + 1e-3 first and rounds away its last digits
    with pytest.warns(gl.InconclusiveWarning, match="float64 rounding"):
        report = gl.check_gradients(reordered_sum, lambda t: t.sum() ** 2, (x,))
    assert report.verdict == "inconclusive" and not report.passed
    assert max(c.terms.get("floor*phi", 0.0) for c in report.math.values()) > 0


def hidden_offset(x):
    r"""An intermediate of 1e10 added and removed: the value's rounding (~2e-6) is invisible in it and its inputs."""
    return (x[0] + 1e10) - 1e10 + np.sum(x[1:] ** 2), (np.concatenate([[1.0], 2 * x[1:]]),)


def test_the_oracle_abstains_where_rounding_hides_inside_the_function():
    reasons = []
    for seed in range(12):
        x = np.random.default_rng(seed).standard_normal(3)
        report = gl.check_gradients(hidden_offset, lambda t: (t[0] + 1e10) - 1e10 + (t[1:] ** 2).sum(), (x,),
                                    finite_differences=True, seed=seed)
        assert report.passed and report.oracle is not None
        assert report.oracle.reference_vs_fd is not False and report.oracle.autograd_vs_fd is not False
        if report.oracle.abstained:
            reasons.append(report.oracle.verdict())
    assert reasons and all(r.startswith("finite differences abstain") for r in reasons)


@pytest.mark.parametrize("seed", range(8))
def test_the_oracle_does_not_take_an_input_swallowed_by_rounding_for_a_shared_mistake(seed):
    """x0 + 1e12 - 1e12 with x0 ~ 1e-4: the value never moves at the differences' steps, whatever
    their size, while both gradients say 1. 36 in 400 such draws raised "shared mistake" before the
    staircase probe; the same probe still lets a real one through (a wrong slope in a flat stretch)."""
    rng = np.random.default_rng(seed)
    offsets = [1e10, 1e11, 1e12, 1e12, 1e12]
    for k, offset in enumerate(offsets):
        x = rng.standard_normal(6) * 10.0 ** rng.uniform(-4.3, -3.5)

        def swallowed(x, offset=offset):
            return (x[0] + offset) - offset + np.sum(x[1:] ** 2), (np.concatenate([[1.0], 2 * x[1:]]),)

        report = gl.check_gradients(swallowed, lambda t, offset=offset: (t[0] + offset) - offset + (t[1:] ** 2).sum(),
                                    (x,), finite_differences=True, seed=seed * 10 + k)
        assert report.passed, report.oracle

    class FlatSlope(torch.autograd.Function):
        """relu(x0 - 0.4) + sum(x[1:]**2) with slope 1 claimed for x0 in the flat stretch, as the reference does."""

        @staticmethod
        def forward(ctx, t):
            ctx.save_for_backward(t)
            return torch.relu(t[0] - 0.4) + (t[1:] ** 2).sum()

        @staticmethod
        def backward(ctx, g):
            (t,) = ctx.saved_tensors
            grad = 2 * t.clone()
            grad[0] = 1.0
            return g * grad

    x = np.concatenate([[rng.uniform(0.1, 0.3)], rng.standard_normal(4) * 1e-2])

    def flat_slope(x):
        grad = 2 * x.copy()
        grad[0] = 1.0
        return max(x[0] - 0.4, 0.0) + np.sum(x[1:] ** 2), (grad,)

    with pytest.raises(gl.GradientMismatch, match="finite differences"):
        gl.check_gradients(flat_slope, FlatSlope.apply, (x,), finite_differences=True, seed=seed)


def test_the_oracle_still_catches_a_mistake_both_sides_share():
    class CubeWrong(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return (x**3).sum()

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return g * 3.03 * x**2

    for seed in range(5):
        x = np.random.default_rng(seed).standard_normal(20)
        with pytest.raises(gl.GradientMismatch, match="share a mistake"):
            gl.check_gradients(lambda x: (np.sum(x**3), (3.03 * x**2,)), CubeWrong.apply, (x,),
                               finite_differences=True, seed=seed)


def test_every_term_of_the_bound_is_in_the_message_and_the_report():
    inputs = model_inputs(16, 0)
    with pytest.raises(gl.GradientMismatch) as info:
        gl.check_gradients(planted("one weight element off by d max|g|", 1e-3, 0), torch_linear_sigmoid_mse,
                           inputs, dtype="float32")
    report, message = info.value.report, str(info.value)
    assert set(report.bound_terms) >= {"atol", "rtol*|e|", "ntol*S"}
    for term, value in report.bound_terms.items():
        assert f"{term} {value:.2e}" in message
    assert "resolution" in message and "rtol=" in message and "ntol=" in message


def softmax_nll(z, y):
    r"""Soft-target NLL of a log-softmax: :math:`(p \sum_j y_j - y) / N` in z, cancelling where p is 1."""
    m = z.max(1, keepdims=True)
    e = np.exp(z - m)
    s = e.sum(1, keepdims=True)
    log_p, p = z - m - np.log(s), e / s
    return -(log_p * y).sum() / z.shape[0], ((p * y.sum(1, keepdims=True) - y) / z.shape[0], -log_p / z.shape[0])


def sin_layer_norm(x, w):
    r""":math:`\sum \sin(\hat x w)` of a layer norm; the matrix-form backward with its two mean terms."""
    mu = x.mean(-1, keepdims=True)
    r = 1 / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + 1e-5)
    x_hat = (x - mu) * r
    g = np.cos(x_hat * w) * w
    grad_x = r * (g - g.mean(-1, keepdims=True) - x_hat * (g * x_hat).mean(-1, keepdims=True))
    return np.sin(x_hat * w).sum(), (grad_x, (np.cos(x_hat * w) * x_hat).sum(0))


@pytest.mark.parametrize("dtype_name", DTYPES)
def test_saturated_softmax_and_rounding_noise_at_fake_kinks_raise_nothing(dtype_name):
    """Shrunk counterexamples of earlier false alarms: a probability within 1e-12 of 1 (the small moves
    cannot re-round it) and a layer norm whose value's rounding looked like a kink."""
    z, y = np.zeros((6, 5)), np.zeros((6, 5))
    z[0, 0], y[0, 0] = 28.0, 16.5
    x, w = np.zeros((4, 7)), np.full(7, 0.0625)
    x[0, 0] = 5.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", gl.InconclusiveWarning)
        for reference, torch_fn, inputs in [
            (softmax_nll, lambda z, y: -(F.log_softmax(z, 1) * y).sum() / z.shape[0], (z, y)),
            (sin_layer_norm, lambda x, w: torch.sin(F.layer_norm(x, (7,), w, eps=1e-5)).sum(), (x, w)),
        ]:
            report = gl.check_gradients(reference, torch_fn, inputs, dtype=dtype_name)
            assert report.verdict in ("passed", "inconclusive")


# Saturated tanh layers (|z| 19 to 88) where NumPy's tanh and torch's differ by an ulp of 1 in 1 - tanh(z)^2:
# right gradients that a float64 comparison cannot tell apart (found among 1,300 random layers).
SATURATED = {
    "re-rounded nearby": (
        [[-14.7034225029, -5.685059037997874, 1.6937137909640776, 4.130736337325992],
         [-4.9618826527320685, 5.341428399527418, 4.201733744119902, 8.819682883924981],
         [3.076257703835324, -0.021352491173518957, -0.4700260760001505, 6.571135653022251]],
        [[2.8929290652365163, -4.279164695628495, -2.1843088292633492, 0.7019439392463305],
         [-2.937042300374687, -0.7466799066966331, -3.4436537891559826, 10.497363277837751]],
        [[-0.9303170065191575, 1.1239884538725868, -0.7141691995421283],
         [-0.7445514873234315, 0.4222665457112018, -0.510882157464535]]),
    "saturated throughout": (
        [[-0.8967932991862589, -14.499959660330079, -1.5158467839431342, -1.9774675322935225],
         [-19.219450277235392, 10.118554350276318, -7.474382524373294, 8.021186070629232],
         [9.676265747765742, 7.182810843695533, -5.009403641389412, -2.288630011157981]],
        [[-1.8443840070492217, 2.87779611350472, -4.798206306737063, -5.194676593807159],
         [-0.5533990495509553, 0.4680136961949829, 6.3980228895688604, 1.6719044265776495]],
        [[1.539865224426805, 0.7072918367225951, -0.23278624228061548],
         [-0.6574631326096287, -1.2440423726680165, -0.2452063746849384]]),
}


def tanh_layer(w, x, g):
    y = np.tanh(x @ w.T)
    d = g * (1 - y**2)
    return float(np.sum(g * y)), (d.T @ x, d @ w)


def torch_tanh_layer(w, x, g):
    return (g * torch.tanh(x @ w.T)).sum()


@pytest.mark.parametrize("case", sorted(SATURATED))
def test_a_right_saturated_layer_is_never_a_mismatch_and_a_wrong_one_always_is(case):
    w, x, g = (np.array(a) for a in SATURATED[case])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", gl.InconclusiveWarning)
        report = gl.check_gradients(tanh_layer, torch_tanh_layer, (w, x, g), constants=(2,))
    assert report.verdict in ("passed", "inconclusive")
    assert report.cause is None, "no float32 diagnosis for a saturated float64 reference"

    def one_minus_y(w, x, g):  # the classic slip: tanh' written as 1 - y (right only where y = 0)
        y = np.tanh(x @ w.T)
        d = g * (1 - y)
        return float(np.sum(g * y)), (d.T @ x, d @ w)

    with pytest.raises(gl.GradientMismatch, match="disagrees"):
        gl.check_gradients(one_minus_y, torch_tanh_layer, (w, x, g), constants=(2,))


def test_the_oracle_marks_fresh_only_the_inputs_it_made(monkeypatch):
    """Every evaluation of the value gets its own copy of each input: the oracle's moved inputs are made for
    the call (torch may wrap them without a copy), its unmoved ones are the check's own and must be copied. The
    swallowed input below sends the oracle to its staircase probe, which evaluates at the unmoved inputs; the
    torch function scribbles on its input there, and the check's own (rounded) inputs must not see it."""
    from gradcheck_lab.gradients import check as check_module

    own: list[list[np.ndarray]] = []
    prepare = check_module.prepare_inputs

    def recording_prepare(*args, **kwargs):
        own.append(prepare(*args, **kwargs))
        return own[-1]

    def scribbling(t):
        value = (t[0] + 1e12) - 1e12 + (t[1:] ** 2).sum()
        if not torch.is_grad_enabled():  # (an evaluation of the value alone)
            t.mul_(3.0)
        return value

    monkeypatch.setattr(check_module, "prepare_inputs", recording_prepare)
    x = np.random.default_rng(0).standard_normal(6) * 1e-4

    def swallowed(x):
        return (x[0] + 1e12) - 1e12 + np.sum(x[1:] ** 2), (np.concatenate([[1.0], 2 * x[1:]]),)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            gl.check_gradients(swallowed, scribbling, (x,), dtype="float32", finite_differences=True)
        except gl.GradientMismatch:
            pass
    np.testing.assert_array_equal(own[-1][0], x.astype(np.float32).astype(np.float64))
