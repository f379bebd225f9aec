"""verify_update_rule and verify_optimizer: the optimizer checks searched over shapes and gradient seeds, shrunk."""

from __future__ import annotations

import math

import pytest
import torch
from gradcheck_lab.reference import optim

import gradcheck_lab as gl
from gradcheck_lab.optim.search import verify_optimizer, verify_update_rule


def sgd_rule(w, dw, config):
    return w - config["learning_rate"] * dw, config


def sgd_rule_wrong_past_a_side_of_two(w, dw, config):  # a bug that needs a parameter of more than 2 elements
    scale = 1.5 if w.size > 2 else 1.0
    return w - scale * config["learning_rate"] * dw, config


class ScaledSGD(optim.SGD):
    """SGD whose step is off by a factor on parameters of more than one element."""

    def step(self, grads):
        super().step([g if g is None or g.size == 1 else 1.01 * g for g in grads])


def test_verify_update_rule_returns_a_verify_result_carrying_the_last_report():
    result = verify_update_rule(sgd_rule, torch.optim.SGD, hyper={"lr": 0.1}, steps=5, max_examples=4, seed=0)
    assert isinstance(result, gl.VerifyResult) and result.passed
    assert isinstance(result.report, gl.OptimizerReport) and result.report.verdict == "passed"
    assert result.summaries[0].examples == 4 and result.report.steps == 5


def test_verify_update_rule_shrinks_a_failure_to_the_smallest_shapes_and_seed():
    minimal = r"minimal counterexample .*:\n    shapes=\[\(3,\)\], seed=0$"
    with pytest.raises(gl.OptimizerMismatch, match=minimal) as info:
        verify_update_rule(sgd_rule_wrong_past_a_side_of_two, torch.optim.SGD, hyper={"lr": 0.1}, steps=3,
                           max_examples=30, max_params=2, seed=0, shrink_budget=math.inf)  # shrink to the end
    assert info.value.step == 1 and info.value.report.verdict == "mismatch"  # the minimal example's own error


def test_verify_update_rule_keeps_the_old_call_style():
    with pytest.warns(DeprecationWarning, match="passing hyper positionally"):
        result = verify_update_rule(sgd_rule, torch.optim.SGD, {"lr": 0.1}, steps=3, max_examples=2, seed=0)
    assert result.report.passed


def test_verify_update_rule_with_fixed_shapes_searches_the_seed_only():
    result = verify_update_rule(sgd_rule, torch.optim.SGD, hyper={"lr": 0.1}, shapes=[(2, 3)], steps=3,
                                max_examples=3, seed=0)
    assert result.summaries[0].examples == 3


def test_verify_optimizer_passes_a_right_optimizer_and_shrinks_a_wrong_one():
    result = verify_optimizer(optim.SGD, torch.optim.SGD, hyper={"lr": 0.1, "momentum": 0.9}, steps=5,
                              max_examples=3, seed=0)
    assert result.report.passed and result.summaries[0].examples == 3
    with pytest.raises(gl.OptimizerMismatch, match=r"shapes=\[\(2,\)\], seed=0"):
        verify_optimizer(ScaledSGD, torch.optim.SGD, hyper={"lr": 0.1}, steps=3, max_examples=20, max_params=2,
                         seed=0, shrink_budget=math.inf)


def test_a_bad_argument_is_a_typed_error_before_the_search():
    with pytest.raises(gl.InvalidInputError, match="did you mean 'momentum'") as info:
        verify_update_rule(sgd_rule, torch.optim.SGD, hyper={"lr": 0.1, "momentun": 0.9})
    assert "counterexample" not in str(info.value)
    with pytest.raises(gl.InvalidInputError, match=r"torch_optimizer must be a torch\.optim\.Optimizer class"):
        verify_optimizer(optim.SGD, optim.SGD, hyper={"lr": 0.1})
    with pytest.raises(gl.InvalidInputError, match="max_params must be at least 1"):
        verify_update_rule(sgd_rule, torch.optim.SGD, hyper={"lr": 0.1}, max_params=0)
