"""The entry-point template (#18) and real code as written (#19) for check_vjp, check_layer and their verify_*."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from hypothesis import strategies as st

import gradcheck_lab as gl

rng = np.random.default_rng(5)
X = rng.standard_normal((6, 3))


def affine(x, w, b):
    return x @ w + b


def affine_backward(dout, x, w, b):
    return dout @ w.T, x.T @ dout, dout.sum(axis=0)


def affine_backward_bias_mean(dout, x, w, b):  # planted bug: the bias gradient averaged over the batch
    return dout @ w.T, x.T @ dout, dout.mean(axis=0)


def affine_backward_bias_unsummed(dout, x, w, b):  # planted bug: the bias gradient not summed over the batch
    return dout @ w.T, x.T @ dout, dout


def torch_affine(x, w, b):
    return x @ w + b


AFFINE = (X, rng.standard_normal((3, 4)), rng.standard_normal(4))


# --- check_vjp: torch_fn=, keyword-only settings, old call styles for one release --------------------------------

def test_check_vjp_takes_torch_fn_and_catches_a_planted_bug():
    assert gl.check_vjp(affine, affine_backward, torch_affine, AFFINE, dtype="float32").passed
    with pytest.raises(gl.GradientMismatch, match="'b'"):
        gl.check_vjp(affine, affine_backward_bias_mean, torch_fn=torch_affine, inputs=AFFINE)


def test_check_vjp_old_keyword_and_positional_settings_warn_and_work():
    with pytest.warns(DeprecationWarning, match="torch_op= is deprecated"):
        assert gl.check_vjp(affine, affine_backward, torch_op=torch_affine, inputs=AFFINE).passed
    grad_output = rng.standard_normal((6, 4))
    with pytest.warns(DeprecationWarning, match="positionally"):
        report = gl.check_vjp(affine, affine_backward, torch_affine, AFFINE, grad_output, (), "cpu", "float32")
    assert report.dtype == "float32"
    with pytest.warns(DeprecationWarning, match="positionally"), pytest.raises(gl.GradientMismatch):
        gl.check_vjp(affine, affine_backward_bias_mean, torch_affine, AFFINE, grad_output)


def test_a_bare_nested_list_is_refused_naming_the_fix():
    with pytest.raises(gl.InvalidInputError, match=r"bare list of numbers.*np\.array"):
        gl.check_vjp(np.tanh, lambda g, x: g * (1 - np.tanh(x) ** 2), torch.tanh, [[0.1, 0.2], [0.3, 0.4]])


def test_a_non_callable_torch_fn_is_refused_naming_it():
    with pytest.raises(gl.InvalidInputError, match="torch_fn"):
        gl.check_vjp(affine, affine_backward, "x @ w + b", AFFINE)


def test_a_wrong_gradient_shape_fails_with_the_users_problem_first(pytester):
    pytester.makepyfile(test_user="""
import numpy as np
import gradcheck_lab as gl

def test_bias():
    rng = np.random.default_rng(0)
    x, w, b = rng.standard_normal((6, 3)), rng.standard_normal((3, 4)), rng.standard_normal(4)
    gl.check_vjp(lambda x, w, b: x @ w + b, lambda g, x, w, b: (g @ w.T, x.T @ g, g),
                 lambda x, w, b: x @ w + b, (x, w, b))
""")
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-p", "no:randomly")
    result.assert_outcomes(failed=1)
    text = result.stdout.str()
    section = text.split("_ test_bias _", 1)[1].split("short test summary")[0]
    # check_vjp's own frames (vjp.py: the pair, shape_hint) are hidden; gradients/check.py's runner is core's
    assert "gradients/vjp.py" not in section and "def shape_hint" not in section, section
    assert "not summed over the broadcast leading axes" in section, section


# --- verify / verify_vjp / verify_layer: every check keyword, validated search settings ---------------------------

def test_verify_vjp_accepts_the_settings_check_vjp_accepts():
    shapes = [(5, 3), (3, 4), (4,)]
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        result = gl.verify_vjp(affine, affine_backward, torch_affine, shapes=shapes, dtype="float32", rtol=None,
                               atol=None, kinks="strict", max_examples=3, seed=0)
    assert isinstance(result, gl.VerifyResult) and result.summaries[0].dtype == "float32"
    assert result.report is not None and result.report.passed
    with pytest.raises(gl.GradientMismatch, match="minimal counterexample"):
        gl.verify_vjp(affine, affine_backward_bias_mean, torch_affine, shapes=shapes, dtype="float32",
                      max_examples=3, seed=0)


def test_verify_vjp_takes_a_fixed_grad_output():
    shapes = [(5, 3), (3, 4), (4,)]
    ones = np.ones((5, 4))
    assert gl.verify_vjp(affine, affine_backward, torch_affine, shapes=shapes, grad_output=ones, max_examples=2,
                         seed=0).examples == 2
    with pytest.raises(gl.GradientMismatch):
        gl.verify_vjp(affine, affine_backward_bias_mean, torch_fn=torch_affine, shapes=shapes, grad_output=ones,
                      max_examples=2, seed=0)


@pytest.mark.parametrize("bad, match", [
    ({"shapes": [3]}, r"shapes.*\[\(3,\)\]"),
    ({"shapes": [(3, -1)]}, "shapes"),
    ({"shapes": [(3, 0)]}, "empty"),
    ({"shapes": [(3,)], "max_examples": 0}, "max_examples"),
    ({"shapes": [(3,)], "rtol": "1e-3"}, "rtol"),
    ({"shapes": [(3,)], "elements": [None, None]}, "elements="),
    ({"inputs": (np.ones(3),)}, "hypothesis strategy"),
    ({}, "shapes="),
    ({"shapes": [(3,), (3,)]}, "2 shapes but the reference takes 1 inputs"),
])
def test_bad_search_arguments_are_typed_errors_naming_them(bad, match):
    def square(x):
        return np.sum(x**2), (2 * x,)

    with pytest.raises(gl.InvalidInputError, match=match):
        gl.verify(square, lambda x: (x**2).sum(), **bad)


def test_elements_accepts_any_strategy_of_numbers():
    def masked_sum(x):  # a strategy of bools draws 0/1 masks
        return np.sum(3 * x), (np.full_like(x, 3.0),)

    result = gl.verify(masked_sum, lambda x: (3 * x).sum(), shapes=[(4,)], elements=st.booleans(), max_examples=5)
    assert result.examples >= 1
    with pytest.raises(gl.GradientMismatch):
        gl.verify(lambda x: (np.sum(3 * x), (np.full_like(x, 2.0),)), lambda x: (3 * x).sum(), shapes=[(4,)],
                  elements=st.booleans(), max_examples=5)


# --- check_layer / verify_layer: layers that keep results on attributes, typed errors naming the fix -------------

class BookDense:
    """A popular book's style: forward stores self.output, backward stores self.dinputs and returns nothing."""

    def __init__(self, bias_scale=1.0):
        self.weights = 0.1 * rng.standard_normal((3, 4))
        self.biases = np.zeros((1, 4))
        self.bias_scale = bias_scale

    def forward(self, inputs):
        self.inputs = inputs
        self.output = inputs @ self.weights + self.biases

    def backward(self, dvalues):
        self.dweights = self.inputs.T @ dvalues
        self.dbiases = self.bias_scale * np.sum(dvalues, axis=0, keepdims=True)
        self.dinputs = dvalues @ self.weights.T


BOOK_MAP = {"params": {"weight": "weights", "bias": "biases"},
            "param_grads": {"weight": "dweights", "bias": "dbiases"},
            "transforms": {"weight": np.transpose, "bias": lambda b: b.reshape(1, -1)},
            "outputs": "output", "input_grads": "dinputs"}


def test_check_layer_reads_outputs_and_input_grads_from_attributes():
    module = torch.nn.Linear(3, 4)
    assert gl.check_layer(BookDense(), module, X, **BOOK_MAP).passed
    with pytest.raises(gl.GradientMismatch, match="bias"):
        gl.check_layer(BookDense(bias_scale=0.5), module, X, **BOOK_MAP)
    assert gl.verify_layer(BookDense(), module, shapes=[(5, 3)], max_examples=2, seed=0, **BOOK_MAP).examples == 2
    with pytest.raises(gl.GradientMismatch):
        gl.verify_layer(BookDense(bias_scale=0.5), module, shapes=[(5, 3)], max_examples=2, seed=0, **BOOK_MAP)


def test_a_layer_storing_results_without_naming_them_is_told_how():
    with pytest.raises(gl.ReferenceContractError, match="outputs='output'"):
        gl.check_layer(BookDense(), torch.nn.Linear(3, 4), X,
                       **{k: v for k, v in BOOK_MAP.items() if k not in ("outputs", "input_grads")})
    with pytest.raises(gl.ReferenceContractError, match="input_grads='dinputs'"):
        gl.check_layer(BookDense(), torch.nn.Linear(3, 4), X,
                       **{k: v for k, v in BOOK_MAP.items() if k != "input_grads"})


def test_a_layer_without_forward_is_a_typed_error_naming_the_fix():
    class CallOnly:
        def __call__(self, x):
            return x

        def backward(self, g):
            return g

    with pytest.raises(gl.InvalidInputError, match=r"no forward method.*rename yours"):
        gl.check_layer(CallOnly(), torch.nn.Identity(), X)


def test_a_wrong_params_path_names_the_path_and_the_layers_attributes():
    with pytest.raises(gl.InvalidInputError, match=r"'grads\.W'.*no 'grads'.*attributes are \[.*'biases'"):
        gl.check_layer(BookDense(), torch.nn.Linear(3, 4), X, **{**BOOK_MAP, "params": {"weight": "grads.W",
                                                                                         "bias": "biases"}})
    with pytest.raises(gl.InvalidInputError, match=r"maps 'weight' to 'W', which the layer did not have.*'weights'"):
        gl.check_layer(BookDense(), torch.nn.Linear(3, 4), X, params={"weight": "W", "bias": "biases"},
                       transforms=BOOK_MAP["transforms"], outputs="output", input_grads="dinputs")


def test_check_layer_old_positional_params_warn_and_work():
    module = torch.nn.Linear(3, 4)
    rest = {k: v for k, v in BOOK_MAP.items() if k not in ("params", "param_grads", "transforms")}
    with pytest.warns(DeprecationWarning, match="positionally"):
        assert gl.check_layer(BookDense(), module, X, BOOK_MAP["params"], BOOK_MAP["param_grads"],
                              BOOK_MAP["transforms"], **rest).passed


# --- multi-output forwards in check_vjp (an LSTM step returning (h, c)) ---------------------------------------------

def step(x, h):
    return np.tanh(x) * h, x + h


def step_backward(dh, dc, x, h):
    return dh * (1 - np.tanh(x) ** 2) * h + dc, dh * np.tanh(x) + dc


def step_backward_ignores_dc(dh, dc, x, h):  # planted bug: the second output's gradient dropped
    return dh * (1 - np.tanh(x) ** 2) * h, dh * np.tanh(x)


def torch_step(x, h):
    return torch.tanh(x) * h, x + h


STEP = (rng.standard_normal((3, 4)), rng.standard_normal((3, 4)))


def test_check_vjp_multi_output_plain_style():
    assert gl.check_vjp(step, step_backward, torch_step, STEP).passed
    with pytest.raises(gl.GradientMismatch):
        gl.check_vjp(step, step_backward_ignores_dc, torch_step, STEP)


def test_check_vjp_multi_output_course_style_and_given_grad_outputs():
    def forward(x, h):
        return step(x, h), (x, h)

    def backward(dh, dc, cache):
        return step_backward(dh, dc, *cache)

    def backward_wrong(dh, dc, cache):
        return step_backward_ignores_dc(dh, dc, *cache)

    grads = (np.ones((3, 4)), np.full((3, 4), 2.0))
    assert gl.check_vjp(forward, backward, torch_step, STEP, grad_output=grads, dtype="float32").passed
    with pytest.raises(gl.GradientMismatch):
        gl.check_vjp(forward, backward_wrong, torch_step, STEP, grad_output=grads)
    with pytest.raises(gl.InvalidInputError, match="tuple of 2 arrays"):
        gl.check_vjp(forward, backward, torch_step, STEP, grad_output=np.ones((3, 4)))


def test_a_forward_with_fewer_outputs_than_torch_fn_is_told_what_is_expected():
    with pytest.raises(gl.ReferenceContractError, match="torch_fn returns 2 outputs"):
        gl.check_vjp(lambda x, h: np.tanh(x) * h, step_backward, torch_step, STEP)


def test_verify_vjp_multi_output():
    result = gl.verify_vjp(step, step_backward, torch_step, shapes=[(2, 3), (2, 3)], max_examples=3, seed=0)
    assert result.examples == 3
    with pytest.raises(gl.GradientMismatch, match="minimal counterexample"):
        gl.verify_vjp(step, step_backward_ignores_dc, torch_step, shapes=[(2, 3), (2, 3)], max_examples=3, seed=0)
