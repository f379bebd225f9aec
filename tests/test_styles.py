"""Code as it is written: forward/backward pairs (both styles), layer objects, functional update rules."""

from __future__ import annotations

import copy
import math
import warnings
from importlib.metadata import entry_points

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import gradcheck_lab as gl

PLUGIN_INSTALLED = any(ep.value.startswith("gradcheck_lab.pytest_plugin") for ep in entry_points(group="pytest11"))
PLUGIN_ARGS = [] if PLUGIN_INSTALLED else ["-p", "gradcheck_lab.pytest_plugin"]

rng = np.random.default_rng(11)
LOW = ["float16", "bfloat16"]


# --- course style: forward -> (out, cache), backward(dout, cache) ---

def affine_forward(x, w, b):
    out = x.reshape(x.shape[0], -1) @ w + b
    return out, (x, w, b)


def affine_backward(dout, cache):
    x, w, _ = cache
    return (dout @ w.T).reshape(x.shape), x.reshape(x.shape[0], -1).T @ dout, dout.sum(axis=0)


def torch_affine(x, w, b):
    return x.reshape(x.shape[0], -1) @ w + b


AFFINE = (rng.standard_normal((4, 2, 3)), rng.standard_normal((6, 5)), rng.standard_normal(5))


def test_course_style_pair_passes(dtype):
    report = gl.check_vjp(affine_forward, affine_backward, torch_affine, AFFINE, dtype=dtype)
    assert report.passed and list(report.gradients) == ["x", "w", "b"]


@pytest.mark.parametrize("dtype", ["float64", "float32", *LOW])
def test_course_style_planted_bug_is_caught_with_its_diagnosis(dtype):
    def db_averaged(dout, cache):
        dx, dw, db = affine_backward(dout, cache)
        return dx, dw, db / len(dout)

    with pytest.raises(gl.GradientMismatch, match="'b'") as exc:
        gl.check_vjp(affine_forward, db_averaged, torch_affine, AFFINE, dtype=dtype)
    assert "averaged over axis 0 of 'x' (input 0) (4) instead of summed?" in exc.value.report.diagnosis
    assert "diagnosis:" in str(exc.value)


@pytest.mark.parametrize("dtype", LOW)
def test_course_style_pair_passes_in_low_precision(dtype):
    assert gl.check_vjp(affine_forward, affine_backward, torch_affine, AFFINE, dtype=dtype).passed


# --- inputs style: forward -> out, backward(dout, *inputs); any output shape ---

def tanh_backward(dout, x):
    return dout * (1 - np.tanh(x) ** 2)


@pytest.mark.parametrize("shape", [(), (7,), (2, 3, 4)])
def test_inputs_style_any_output_shape(shape, dtype):
    x = rng.standard_normal(shape)
    assert gl.check_vjp(np.tanh, tanh_backward, torch.tanh, x, dtype=dtype).passed

    def wrong(dout, x):  # 1 - x**2 instead of 1 - tanh(x)**2
        return dout * (1 - x**2)

    with pytest.raises(gl.GradientMismatch):
        gl.check_vjp(np.tanh, wrong, torch.tanh, x, dtype=dtype)


def test_grad_output_is_drawn_from_the_seed_and_a_given_one_is_used():
    def half(dout, x):
        return dout * (1 - np.tanh(x) ** 2) / 2

    x = rng.standard_normal((3, 4))
    drawn = []
    for seed in (0, 0, 1):
        with pytest.raises(gl.GradientMismatch) as exc:
            gl.check_vjp(np.tanh, half, torch.tanh, x, seed=seed)
        drawn.append(exc.value.inputs[-1])
    assert np.array_equal(drawn[0], drawn[1]) and not np.array_equal(drawn[0], drawn[2])
    given = np.zeros((3, 4))
    given[1, 2] = 1.0
    with pytest.raises(gl.GradientMismatch) as exc:
        gl.check_vjp(np.tanh, half, torch.tanh, x, grad_output=given)
    assert np.array_equal(exc.value.inputs[-1], given)
    assert exc.value.report.worst_index == (1, 2)


def softmax_loss(x, y):
    shifted = x - x.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return -log_p[np.arange(len(y)), y].mean()


def softmax_loss_backward(dout, x, y):
    p = np.exp(x - x.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    p[np.arange(len(y)), y] -= 1
    return dout * p / len(y)


def test_labels_are_data_in_a_pair(dtype):
    x, y = rng.standard_normal((6, 4)), rng.integers(0, 4, 6)
    assert gl.check_vjp(softmax_loss, softmax_loss_backward, F.cross_entropy, (x, y), constants=(1,),
                        dtype=dtype).passed

    def no_batch_mean(dout, x, y):
        return softmax_loss_backward(dout, x, y) * len(y)

    with pytest.raises(gl.GradientMismatch) as exc:
        gl.check_vjp(softmax_loss, no_batch_mean, F.cross_entropy, (x, y), constants=(1,), dtype=dtype)
    assert "summed over axis 0 of 'x' (input 0) (6) instead of averaged?" in exc.value.report.diagnosis


def test_a_backward_that_mutates_its_inputs_is_reported_and_harmless():
    def relu_backward_in_place(dout, x):
        x[x < 0] = 0  # course code that overwrites its cache
        return dout * (x > 0)

    x = rng.standard_normal((4, 4))
    before = x.copy()
    with pytest.warns(gl.ReferenceMutationWarning, match="'x'"):
        report = gl.check_vjp(lambda x: np.maximum(x, 0), relu_backward_in_place, torch.relu, x)
    assert report.passed and np.array_equal(x, before)


def test_shape_disagreements_are_explained():
    with pytest.raises(gl.TorchFunctionError, match="shape"):
        gl.check_vjp(np.tanh, tanh_backward, lambda x: torch.tanh(x).sum(0), rng.standard_normal((2, 3)))
    with pytest.raises(gl.ReferenceContractError, match="2 gradient"):
        gl.check_vjp(affine_forward, lambda d, c: affine_backward(d, c)[:2], torch_affine, AFFINE)

    def dw_transposed(dout, cache):
        dx, dw, db = affine_backward(dout, cache)
        return dx, dw.T, db

    with pytest.raises(gl.ReferenceContractError, match=r"'w' has shape \(5, 6\), the input \(6, 5\): transposed"):
        gl.check_vjp(affine_forward, dw_transposed, torch_affine, AFFINE)

    def db_not_summed(dout, cache):
        dx, dw, _ = affine_backward(dout, cache)
        return dx, dw, dout

    with pytest.raises(gl.ReferenceContractError, match=r"not summed over the broadcast leading axes \(0,\)"):
        gl.check_vjp(affine_forward, db_not_summed, torch_affine, AFFINE)


# --- settings between the arrays (conv_param, bn_param): passed through, copied for every call ---

def conv_forward(x, w, b, conv_param):
    s, p = conv_param["stride"], conv_param["pad"]
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    kh, kw = w.shape[2:]
    ho, wo = 1 + (xp.shape[2] - kh) // s, 1 + (xp.shape[3] - kw) // s
    out = np.zeros((x.shape[0], w.shape[0], ho, wo))
    for i in range(ho):
        for j in range(wo):
            out[:, :, i, j] = np.tensordot(xp[:, :, i * s:i * s + kh, j * s:j * s + kw], w, ([1, 2, 3], [1, 2, 3])) + b
    return out, (x, w, conv_param)


def conv_backward(dout, cache):
    x, w, conv_param = cache
    s, p = conv_param["stride"], conv_param["pad"]
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    dxp, dw = np.zeros_like(xp), np.zeros_like(w)
    kh, kw = w.shape[2:]
    for i in range(dout.shape[2]):
        for j in range(dout.shape[3]):
            dw += np.tensordot(dout[:, :, i, j], xp[:, :, i * s:i * s + kh, j * s:j * s + kw], ([0], [0]))
            dxp[:, :, i * s:i * s + kh, j * s:j * s + kw] += np.tensordot(dout[:, :, i, j], w, ([1], [0]))
    return dxp[:, :, p:xp.shape[2] - p, p:xp.shape[3] - p], dw, dout.sum(axis=(0, 2, 3))


def torch_conv(x, w, b, conv_param):
    return F.conv2d(x, w, b, stride=conv_param["stride"], padding=conv_param["pad"])


CONV = (rng.standard_normal((2, 2, 5, 5)), rng.standard_normal((3, 2, 3, 3)), rng.standard_normal(3),
        {"stride": 2, "pad": 1})


def test_settings_dict_between_arrays(dtype):
    report = gl.check_vjp(conv_forward, conv_backward, torch_conv, CONV, dtype=dtype)
    assert report.passed and list(report.gradients) == ["x", "w", "b"]

    def kernel_flipped(dout, cache):
        dx, dw, db = conv_backward(dout, cache)
        return dx, dw.transpose(0, 1, 3, 2), db

    with pytest.raises(gl.GradientMismatch) as exc:
        gl.check_vjp(conv_forward, kernel_flipped, torch_conv, CONV, dtype=dtype)
    assert "'w' (input 1): its axes permuted as (0, 1, 3, 2)" in exc.value.report.diagnosis


def test_a_forward_that_writes_into_its_settings_sees_a_fresh_copy_each_call():
    calls = []

    def scaled_forward(x, bn_param):
        calls.append(bn_param.get("seen", 0))
        bn_param["seen"] = 1  # course batch norm stores running statistics in its bn_param
        return np.tanh(x), x

    bn_param = {"mode": "train"}
    assert gl.check_vjp(scaled_forward, lambda d, x: tanh_backward(d, x), lambda x, p: torch.tanh(x),
                        (rng.standard_normal(4), bn_param)).passed
    assert calls and set(calls) == {0} and bn_param == {"mode": "train"}


# --- kinks: the convention at a non-differentiable point is named, and subgradient mode accepts it ---

def _with_zeros(shape):
    x = rng.standard_normal(shape)
    x.flat[::3] = 0.0
    return x


def _max_pool_ties():
    x = np.round(rng.uniform(0, 2, (1, 2, 4, 4)))  # integers 0..2: many tied maxima
    return x


def _pool_forward(x):
    n, c, h, w = x.shape
    return x.reshape(n, c, h // 2, 2, w // 2, 2).max(axis=(3, 5))


def _pool_backward_last_of_ties(dout, x):
    n, c, h, w = x.shape
    windows = x.reshape(n, c, h // 2, 2, w // 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(n, c, h // 2, w // 2, 4)
    last = 3 - np.argmax(windows[..., ::-1], axis=-1)
    grad = np.zeros_like(windows)
    np.put_along_axis(grad, last[..., None], dout[..., None], axis=-1)
    return grad.reshape(n, c, h // 2, w // 2, 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(x.shape)


KINKED = {
    "relu": (lambda x: np.maximum(x, 0), lambda d, x: d * (x >= 0), torch.relu, _with_zeros((3, 4))),
    "leaky_relu": (lambda x: np.where(x > 0, x, 0.1 * x), lambda d, x: d * np.where(x >= 0, 1.0, 0.1),
                   lambda t: F.leaky_relu(t, 0.1), _with_zeros((3, 4))),
    "abs": (np.abs, lambda d, x: d * np.where(x >= 0, 1.0, -1.0), torch.abs, _with_zeros((5,))),
    "max_pool_ties": (_pool_forward, _pool_backward_last_of_ties, lambda t: F.max_pool2d(t, 2), _max_pool_ties()),
}


@pytest.mark.parametrize("name", sorted(KINKED))
def test_a_kink_convention_is_named_and_subgradient_mode_accepts_it(name):
    forward, backward, op, x = KINKED[name]
    with pytest.raises(gl.GradientMismatch) as exc:
        gl.check_vjp(forward, backward, op, x)
    message = str(exc.value)
    assert "sits on a kink: one-sided derivatives" in message and "torch's convention gives" in message
    assert "kinks='subgradient' accepts" in message
    assert gl.check_vjp(forward, backward, op, x, kinks="subgradient").passed


def test_subgradient_mode_still_rejects_a_value_outside_the_one_sided_derivatives():
    forward, _, op, x = KINKED["relu"]
    with pytest.raises(gl.GradientMismatch, match="not between them"):
        gl.check_vjp(forward, lambda d, x: d * np.where(x >= 0, 1.0, 0.0) + d * (x == 0), op, x,
                     kinks="subgradient")


# --- layer objects ---

class Affine:
    """A layer that keeps W as (in, out) in a params dict, gradients in a grads dict."""

    def __init__(self, n_in, n_out):
        self.params = {"W": np.zeros((n_in, n_out)), "b": np.zeros(n_out)}
        self.grads = {}

    def forward(self, x):
        self.x = x
        return x @ self.params["W"] + self.params["b"]

    def backward(self, dout):
        self.grads["W"] = self.x.T @ dout
        self.grads["b"] = dout.sum(axis=0)
        return dout @ self.params["W"].T


LINEAR = torch.nn.Linear(3, 4)
AFFINE_MAP = {"params": {"weight": "params.W", "bias": "params.b"},
              "param_grads": {"weight": "grads.W", "bias": "grads.b"}, "transforms": {"weight": np.transpose}}
X = rng.standard_normal((5, 3))


@pytest.mark.parametrize("dtype", ["float64", "float32", "bfloat16"])
def test_layer_with_mapped_and_transposed_parameters(dtype):
    layer = Affine(3, 4)
    report = gl.check_layer(layer, LINEAR, X, dtype=dtype, **AFFINE_MAP)
    assert report.passed and {"weight", "bias"} <= set(report.gradients)
    assert not layer.params["W"].any() and not layer.grads, "the caller's layer is never modified"


@pytest.mark.parametrize("dtype", ["float64", "float32", "float16"])
def test_layer_planted_bugs_are_caught(dtype):
    class TransposedW(Affine):
        def backward(self, dout):
            dx = super().backward(dout)
            self.grads["W"] = self.grads["W"] * 0.5
            return dx

    with pytest.raises(gl.GradientMismatch, match="'weight'") as exc:
        gl.check_layer(TransposedW(3, 4), LINEAR, X, dtype=dtype, **AFFINE_MAP)
    assert "0.5 times torch's" in exc.value.report.diagnosis

    class ForgotDx(Affine):
        def backward(self, dout):
            super().backward(dout)
            return np.zeros_like(self.x)

    with pytest.raises(gl.GradientMismatch, match="'x'") as exc:
        gl.check_layer(ForgotDx(3, 4), LINEAR, X, dtype=dtype, **AFFINE_MAP)
    assert "all zeros" in exc.value.report.diagnosis


class Dense:
    """Attributes W (out, in) and b; gradients left in dW, db."""

    def __init__(self):
        self.W, self.b = None, None

    def forward(self, x):
        self.x = x
        return x @ self.W.T + self.b

    def backward(self, dout):
        self.dW, self.db = dout.T @ self.x, dout.sum(axis=0)
        return dout @ self.W


def test_a_layer_whose_backward_returns_its_parameter_gradients():
    class Returns(Dense):
        def backward(self, dout):
            dx = super().backward(dout)
            return dx, self.dW, self.db

    assert gl.check_layer(Returns(), LINEAR, X, params={"weight": "W", "bias": "b"}).passed

    class ReturnsBiasDoubled(Returns):
        def backward(self, dout):
            dx, dw, db = super().backward(dout)
            return dx, dw, 2 * db

    with pytest.raises(gl.GradientMismatch, match="'bias'"):
        gl.check_layer(ReturnsBiasDoubled(), LINEAR, X, params={"weight": "W", "bias": "b"})


def test_layer_defaults_guess_parameters_and_gradients_and_a_callable_reads_them():
    renamed = {"weight": "W", "bias": "b"}
    assert gl.check_layer(Dense(), LINEAR, X, params=renamed).passed
    assert gl.check_layer(Dense(), LINEAR, X, params=renamed,
                          param_grads=lambda layer: {"weight": layer.dW, "bias": layer.db}).passed
    assert gl.check_layer(Affine(3, 4), LINEAR, X, params=AFFINE_MAP["params"],  # finds grads.W at the root
                          transforms=AFFINE_MAP["transforms"]).passed

    class Hidden(Dense):
        def backward(self, dout):
            dx = super().backward(dout)
            self.g_weight, self.g_bias = self.__dict__.pop("dW"), self.__dict__.pop("db")
            return dx

    with pytest.raises(gl.InvalidInputError, match="param_grads= is needed: no gradient of 'weight' found at dW"):
        gl.check_layer(Hidden(), LINEAR, X, params=renamed)


def test_a_layer_without_torch_s_parameter_names_is_told_which_params_to_pass():
    """Default params= are torch's names; a layer keeping W and b hears that, and what it has, before anything runs."""
    layer = Dense()
    layer.W, layer.b = np.zeros((4, 3)), np.zeros(4)
    told = r"no attribute \['weight', 'bias'\].*array attributes are \['W', 'b'\]"
    with pytest.raises(gl.InvalidInputError, match=told):
        gl.check_layer(layer, LINEAR, X)


def test_a_lazy_torch_module_is_asked_to_run_once_first():
    with pytest.raises(gl.InvalidInputError, match=r"not initialized yet \(a lazy module\)"):
        gl.check_layer(Dense(), torch.nn.LazyLinear(4), X, params={"weight": "W", "bias": "b"})


class Embedding:
    def __init__(self):
        self.W = None

    def forward(self, idx):
        self.idx = idx
        return self.W[idx]

    def backward(self, dout):
        self.dW = np.zeros_like(self.W)
        np.add.at(self.dW, self.idx, dout)


def test_a_layer_of_integer_data_checks_its_parameter_gradient():
    module, idx = torch.nn.Embedding(5, 3), np.array([[0, 1], [2, 1], [3, 4]])  # row 1 twice: it accumulates
    assert gl.check_layer(Embedding(), module, idx, params={"weight": "W"}, constants=(0,)).passed

    class Overwrites(Embedding):
        def backward(self, dout):
            self.dW = np.zeros_like(self.W)
            self.dW[self.idx] = dout  # the classic: = instead of +=, repeated rows keep one

    with pytest.raises(gl.GradientMismatch) as exc:
        gl.check_layer(Overwrites(), module, idx, params={"weight": "W"}, constants=(0,))
    assert "only 3 of 15 elements (20%) are wrong, at [1, 0], [1, 1], [1, 2]" in exc.value.report.diagnosis


class BatchNorm:
    """Course batch norm: torch's momentum convention and unbiased running variance."""

    def __init__(self, d, momentum=0.1, unbiased=True):
        self.gamma, self.beta = np.ones(d), np.zeros(d)
        self.running_mean, self.running_var = np.zeros(d), np.ones(d)
        self.momentum, self.unbiased = momentum, unbiased

    def forward(self, x):
        n = len(x)
        mu, var = x.mean(axis=0), x.var(axis=0)
        batch_var = var * n / (n - 1) if self.unbiased else var
        self.running_mean = (1 - self.momentum) * self.running_mean + self.momentum * mu
        self.running_var = (1 - self.momentum) * self.running_var + self.momentum * batch_var
        self.std = np.sqrt(var + 1e-5)
        self.xhat = (x - mu) / self.std
        return self.gamma * self.xhat + self.beta

    def backward(self, dout):
        self.dgamma, self.dbeta = (dout * self.xhat).sum(axis=0), dout.sum(axis=0)
        d = dout * self.gamma
        return (d - d.mean(axis=0) - self.xhat * (d * self.xhat).mean(axis=0)) / self.std


BN_PARAMS = {"weight": "gamma", "bias": "beta"}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_batch_norm_gradients_and_running_statistics(dtype):
    module, x = torch.nn.BatchNorm1d(4), rng.standard_normal((8, 4)) * 2 + 1
    assert gl.check_layer(BatchNorm(4), module, x, params=BN_PARAMS, dtype=dtype).passed
    with pytest.raises(gl.GradientMismatch, match="running statistic 'running_var'"):
        gl.check_layer(BatchNorm(4, unbiased=False), module, x, params=BN_PARAMS, dtype=dtype)
    with pytest.raises(gl.GradientMismatch, match="running statistic 'running_mean'"):
        gl.check_layer(BatchNorm(4, momentum=0.9), module, x, params=BN_PARAMS, dtype=dtype)

    class NoMeanTerm(BatchNorm):
        def backward(self, dout):
            super().backward(dout)
            d = dout * self.gamma
            return (d - self.xhat * (d * self.xhat).mean(axis=0)) / self.std

    with pytest.raises(gl.GradientMismatch, match="'x'"):
        gl.check_layer(NoMeanTerm(4), module, x, params=BN_PARAMS, dtype=dtype)


class ListLayer:
    """Parameters and gradients in lists, and a train flag after the input."""

    def __init__(self, scale=1.0):
        self.params, self.grads, self.scale = [None, None], [None, None], scale

    def forward(self, x, train):
        self.x = x
        return x @ self.params[0] + self.params[1]

    def backward(self, dout):
        self.grads = [self.scale * self.x.T @ dout, dout.sum(axis=0)]
        return dout @ self.params[0].T


class LinearWithFlag(torch.nn.Linear):
    def forward(self, x, train):
        return super().forward(x)


def test_list_paths_and_a_flag_between_the_inputs():
    module = LinearWithFlag(3, 4)
    paths = {"params": {"weight": "params.0", "bias": "params.1"},
             "param_grads": {"weight": "grads.0", "bias": "grads.1"}, "transforms": {"weight": np.transpose}}
    report = gl.check_layer(ListLayer(), module, (X, True), **paths)
    assert report.passed and "weight" in report.gradients
    with pytest.raises(gl.GradientMismatch, match="'weight'"):
        gl.check_layer(ListLayer(scale=-1.0), module, (X, True), **paths)


def test_unknown_parameter_names_and_non_layout_transforms_are_explained():
    with pytest.raises(gl.InvalidInputError, match="'W'"):
        gl.check_layer(Dense(), LINEAR, X, params={"W": "W"})
    with pytest.raises(gl.InvalidInputError, match="layout change"):
        gl.check_layer(Affine(3, 4), LINEAR, X, **{**AFFINE_MAP, "transforms": {"weight": lambda w: w.T * 1.0}})


# --- functional update rules ---

def adam(w, dw, config=None):
    config = {} if config is None else config
    for key, value in (("learning_rate", 1e-3), ("beta1", 0.9), ("beta2", 0.999), ("epsilon", 1e-8)):
        config.setdefault(key, value)
    config.setdefault("m", np.zeros_like(w))
    config.setdefault("v", np.zeros_like(w))
    config.setdefault("t", 0)
    config["t"] += 1
    b1, b2 = config["beta1"], config["beta2"]
    config["m"] = b1 * config["m"] + (1 - b1) * dw
    config["v"] = b2 * config["v"] + (1 - b2) * dw**2
    m_hat, v_hat = config["m"] / (1 - b1 ** config["t"]), config["v"] / (1 - b2 ** config["t"])
    return w - config["learning_rate"] * m_hat / (np.sqrt(v_hat) + config["epsilon"]), config


def adam_without_power_of_t(w, dw, config=None):
    config = {} if config is None else config
    _, config = adam(w, dw, config)
    b1, b2 = config["beta1"], config["beta2"]
    m_hat, v_hat = config["m"] / (1 - b1), config["v"] / (1 - b2)
    return w - config["learning_rate"] * m_hat / (np.sqrt(v_hat) + config["epsilon"]), config


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_update_rule_in_low_precision(dtype):
    hyper = {"lr": 0.1, "eps": 1e-3}  # eps=1e-8 underflows float16; the rule reads it as "epsilon"
    assert gl.check_update_rule(adam, torch.optim.Adam, hyper=hyper, dtype=dtype, steps=30).passed
    # bfloat16's 8 bits cannot resolve the missing power of t on unit-size parameters; the float32
    # run on the same bfloat16 values does, at the first step where it matters
    with pytest.raises(gl.OptimizerMismatch, match=r"\(float32 math\)") as exc:
        gl.check_update_rule(adam_without_power_of_t, torch.optim.Adam, hyper=hyper, dtype=dtype, steps=30)
    assert exc.value.step == 2


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_update_rule_right_and_wrong(dtype):
    report = gl.check_update_rule(adam, torch.optim.Adam, hyper={"lr": 1e-2}, dtype=dtype, steps=30)
    assert report.passed and report.state_entries == ["exp_avg", "exp_avg_sq", "step"]
    with pytest.raises(gl.OptimizerMismatch) as exc:
        gl.check_update_rule(adam_without_power_of_t, torch.optim.Adam, hyper={"lr": 1e-2}, dtype=dtype)
    assert exc.value.step == 2 and exc.value.entry == "param"  # at t = 1 the two corrections coincide


def test_update_rule_state_entries_are_compared():
    def m_with_betas_swapped(w, dw, config):
        next_w, config = adam(w, dw, config)
        config["m"] = config["m"] + 0.8 * dw  # 0.9 m + 0.9 dw: the state is wrong, the step uses the right one
        return next_w, config

    with pytest.raises(gl.OptimizerMismatch, match="'exp_avg'") as exc:
        gl.check_update_rule(m_with_betas_swapped, torch.optim.Adam, hyper={"lr": 1e-2}, steps=3)
    assert exc.value.step == 1 and exc.value.entry == "exp_avg"


def test_update_rule_reads_torch_hyperparameters_under_course_names():
    def sgd(w, dw, config):
        config.setdefault("learning_rate", 1e-2)
        return w - config["learning_rate"] * dw, config

    assert gl.check_update_rule(sgd, torch.optim.SGD, hyper={"lr": 0.3}, steps=5).passed
    with pytest.raises(gl.OptimizerMismatch):  # a config entry wins over the alias
        gl.check_update_rule(sgd, torch.optim.SGD, hyper={"lr": 0.3}, config={"learning_rate": 0.2}, steps=5)


def test_sgd_momentum_in_the_course_convention_and_rmsprop_with_its_cache():
    def sgd_momentum(w, dw, config):
        v = config.get("velocity", np.zeros_like(w))
        v = config["momentum"] * v - config["learning_rate"] * dw
        config["velocity"] = v
        return w + v, config

    assert gl.check_update_rule(sgd_momentum, torch.optim.SGD, hyper={"lr": 0.05, "momentum": 0.9}).passed

    def rmsprop(w, dw, config, leak=1.0):
        config.setdefault("cache", np.zeros_like(w))
        decay = config["decay_rate"]
        config["cache"] = decay * config["cache"] + (1 - decay) * leak * dw**2
        return w - config["learning_rate"] * dw / (np.sqrt(config["cache"]) + config["epsilon"]), config

    hyper = {"lr": 1e-2, "alpha": 0.99, "eps": 1e-8}
    report = gl.check_update_rule(rmsprop, torch.optim.RMSprop, hyper=hyper)
    assert report.passed and report.state_entries == ["square_avg"]
    with pytest.raises(gl.OptimizerMismatch, match="square_avg"):
        gl.check_update_rule(lambda w, dw, c: rmsprop(w, dw, c, leak=1.01), torch.optim.RMSprop, hyper=hyper)


def test_update_rule_contract_errors():
    with pytest.raises(gl.ReferenceContractError, match="next_w, config"):
        gl.check_update_rule(lambda w, dw, c: w - dw, torch.optim.SGD, hyper={"lr": 1.0}, steps=1)
    with pytest.raises(gl.ReferenceContractError, match="shape"):
        gl.check_update_rule(lambda w, dw, c: (w.ravel(), c), torch.optim.SGD, hyper={"lr": 1.0}, steps=1)


# --- property-based counterparts: they search, and shrink a failure ---

def test_verify_vjp_passes_and_shrinks_a_failure():
    def softmax(x):
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)

    def softmax_backward(dout, x):
        y = softmax(x)
        return y * (dout - (dout * y).sum(axis=-1, keepdims=True))

    def diagonal_only(dout, x):  # the Jacobian's diagonal only
        y = softmax(x)
        return dout * y * (1 - y)

    op = lambda t: torch.softmax(t, -1)  # noqa: E731
    result = gl.verify_vjp(softmax, softmax_backward, op, shapes=[(2, 3)], max_examples=3, seed=0)
    assert result.summaries[0].examples == 3
    with pytest.raises(gl.GradientMismatch, match="minimal counterexample") as exc:
        gl.verify_vjp(softmax, diagonal_only, op, shapes=[(1, 2)], max_examples=3, seed=0, shrink_budget=math.inf)
    assert not exc.value.inputs[0].any(), "shrunk to all-zero logits"


def test_verify_layer_passes_and_shrinks_a_failure():
    from hypothesis import strategies as st

    from gradcheck_lab.gradients import strategies as gst

    assert gl.verify_layer(Dense(), LINEAR, shapes=[(2, 3)], params={"weight": "W", "bias": "b"},
                           max_examples=3, seed=0).summaries[0].examples == 3

    class RowZero(Dense):
        def backward(self, dout):
            dx = super().backward(dout)
            dx[:, 0] = np.where(np.abs(self.x[:, 0]) > 1, 0.0, dx[:, 0])  # a boundary bug
            return dx

    with pytest.raises(gl.GradientMismatch, match="minimal counterexample") as exc:
        gl.verify_layer(RowZero(), LINEAR, inputs=st.tuples(gst.arrays((1, 3))),
                        params={"weight": "W", "bias": "b"}, max_examples=30, seed=0, shrink_budget=math.inf)
    x = exc.value.inputs[0]
    assert np.count_nonzero(x) == 1 and 1 < abs(x[np.nonzero(x)][0]) <= 2, "shrunk to one element just past 1"



def test_verify_update_rule_shrinks_to_one_scalar_parameter():
    with pytest.raises(gl.OptimizerMismatch, match=r"shapes=\[\(\)\], seed=0"):
        gl.verify_update_rule(adam_without_power_of_t, torch.optim.Adam, hyper={"lr": 1e-2}, steps=2,
                              max_examples=5, max_params=2, seed=0, shrink_budget=math.inf)


def test_labels_strategy_and_one_element_strategy_per_input():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from gradcheck_lab.gradients import strategies as gst

    @settings(max_examples=10, database=None)
    @given(gst.labels((6,), 4))
    def labels_in_range(y):
        assert y.dtype.kind == "i" and y.shape == (6,) and y.min() >= 0 and y.max() < 4

    labels_in_range()
    result = gl.verify_vjp(softmax_loss, softmax_loss_backward, F.cross_entropy, shapes=[(6, 4), (6,)],
                           elements=[st.floats(-2, 2), gst.labels((6,), 4)], constants=(1,), max_examples=5, seed=0)
    assert result.summaries[0].examples == 5
    with pytest.raises(ValueError, match="2 inputs"):
        gl.verify_vjp(softmax_loss, softmax_loss_backward, F.cross_entropy, shapes=[(6, 4), (6,)],
                      elements=[None], constants=(1,))


# --- failure output inside pytest ---

FAILING_TEST = '''
import numpy as np
import torch
import gradcheck_lab as gl


def relu_forward(x):
    return np.maximum(x, 0), x


def relu_backward(dout, cache):
    return dout * 2 * (cache > 0)


def test_relu():
    gl.check_vjp(relu_forward, relu_backward, torch.relu, np.linspace(-1, 1, 8))


def test_layer():
    class Dense:
        def forward(self, x):
            self.x = x
            return x @ self.W.T

        def backward(self, dout):
            self.dW = dout.T @ self.x / len(dout)
            return dout @ self.W

    gl.check_layer(Dense(), torch.nn.Linear(3, 2, bias=False), np.ones((4, 3)), params={"weight": "W"})


def test_rule():
    def sgd(w, dw, config):
        return w - 2 * config["learning_rate"] * dw, config

    gl.check_update_rule(sgd, torch.optim.SGD, hyper={"lr": 0.1}, steps=3)


def test_search():
    def tanh_twice(dout, x):
        return 2 * dout * (1 - np.tanh(x) ** 2)

    gl.verify_vjp(np.tanh, tanh_twice, torch.tanh, shapes=[(3,)], max_examples=2, seed=0)
'''


def test_a_failure_inside_pytest_shows_the_message_not_the_harness(pytester):
    pytester.makepyfile(test_user=FAILING_TEST)
    result = pytester.runpytest_inprocess(*PLUGIN_ARGS, "-p", "no:cacheprovider", "-p", "no:randomly")
    result.assert_outcomes(failed=4)
    text = result.stdout.str()
    headlines = {"test_relu": "GradientMismatch: the gradient of", "test_layer": "GradientMismatch: the gradient of",
                 "test_rule": "OptimizerMismatch: optimizer diverges at step 1",
                 "test_search": "GradientMismatch: the gradient of"}
    for name, headline in headlines.items():
        section = text.split(f"_ {name} _", 1)[1].split("\n_", 1)[0].split("short test summary")[0]
        lines = section.strip().splitlines()
        assert len(lines) < 40, section
        assert "gradcheck_lab" + "/" not in section and "__tracebackhide__" not in section, section
        first_error = next(line for line in lines if line.startswith("E "))
        assert headline in first_error, section


def test_check_vjp_copies_nothing_into_the_callers_arrays():
    x = AFFINE[0].copy()
    gl.check_vjp(affine_forward, affine_backward, torch_affine, (x, *AFFINE[1:]))
    assert np.array_equal(x, AFFINE[0])
    layer = Affine(3, 4)
    snapshot = copy.deepcopy(layer.__dict__)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gl.check_layer(layer, LINEAR, X, **AFFINE_MAP)
    assert layer.__dict__.keys() == snapshot.keys()


def test_the_readme_section_runs_with_at_most_two_lines_of_glue(capsys):
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", readme.split("## Checking code you already have", 1)[1], re.S).group(1)
    exec(compile(code, "README.md", "exec"), {})
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("the gradient of 'b' (input 2): 0.125 times torch's: averaged over axis 0")
    assert out[1].startswith("passed on cpu/float64") and out[2].startswith("passed on cpu/float64 over 50 steps")
    calls = [line for line in code.splitlines() if line.lstrip().startswith(("gl.check_", "print(gl.check_"))]
    glue = [line for line in code.splitlines() if "# glue" in line]
    assert len(calls) == 3 and len(glue) == 3
    assert all(len([n for n in code.splitlines()[code.splitlines().index(g):][:2] if n.strip()]) <= 2 for g in glue)
