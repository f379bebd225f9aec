"""The optimizer entry points' template (#18): report, old call styles, arguments checked before any work,
and one default-dtype policy for both run loops."""

from __future__ import annotations

import dataclasses
import json
from typing import ClassVar

import pytest
import torch
from gradcheck_lab.reference import optim

import gradcheck_lab as gl
from gradcheck_lab.optim.check import check_torch_implementations


def sgd_rule(w, dw, config):
    return w - config["learning_rate"] * dw, config


def sgd_rule_doubled(w, dw, config):
    return w - 2 * config["learning_rate"] * dw, config


class Recording(optim.SGD):
    """A right SGD that records torch's default dtype whenever it is built or stepped."""

    seen: ClassVar[list[torch.dtype]] = []

    def __init__(self, params, **hyper):
        Recording.seen.append(torch.get_default_dtype())
        super().__init__(params, **hyper)

    def step(self, grads):
        Recording.seen.append(torch.get_default_dtype())
        super().step(grads)


# --- the report ---

def test_optimizer_report_is_frozen_with_a_verdict_summary_and_dict():
    report = gl.check_optimizer(optim.Adam, torch.optim.Adam, hyper={"lr": 1e-3}, steps=5)
    assert report.verdict == "passed" and report.passed
    assert report.reference == "numpy Adam" and report.torch == "torch Adam"
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.passed = False  # type: ignore[misc]
    assert report.summary().startswith("passed on cpu/float64 over 5 steps, numpy Adam against torch Adam")
    data = json.loads(json.dumps(report.to_dict()))
    assert data["verdict"] == "passed" and data["state_entries"] == report.state_entries
    assert {"reference_value", "torch_value", "worst_index"} <= set(data)
    assert not {"expected", "actual"} & set(data)


def test_a_mismatch_carries_a_mismatch_report():
    with pytest.raises(gl.OptimizerMismatch) as info:
        gl.check_update_rule(sgd_rule_doubled, torch.optim.SGD, hyper={"lr": 0.1}, steps=3)
    report = info.value.report
    assert report.verdict == "mismatch" and not report.passed and report.summary().startswith("FAILED")
    assert report.worst_step == 1 and report.ratio > 1
    assert report.reference_value != report.torch_value


# --- old call styles keep working for a release ---

def test_old_keyword_names_and_positional_arguments_warn_and_work():
    with pytest.warns(DeprecationWarning, match="numpy_cls= is deprecated, use optimizer_cls="):
        assert gl.check_optimizer(numpy_cls=optim.SGD, torch_optimizer=torch.optim.SGD, hyper={"lr": 0.1},
                                  steps=3).passed
    with pytest.warns(DeprecationWarning, match="torch_cls= is deprecated, use torch_optimizer="):
        assert gl.check_optimizer(optim.SGD, torch_cls=torch.optim.SGD, hyper={"lr": 0.1}, steps=3).passed
    with pytest.warns(DeprecationWarning, match="torch_optimizer_cls= is deprecated"):
        assert gl.check_update_rule(sgd_rule, torch_optimizer_cls=torch.optim.SGD, hyper={"lr": 0.1}, steps=3).passed
    with pytest.warns(DeprecationWarning, match="passing hyper, config, shapes positionally is deprecated"):
        report = gl.check_update_rule(sgd_rule, torch.optim.SGD, {"lr": 0.1}, {}, [(2,)], steps=3)
    assert report.passed and report.steps == 3
    with pytest.warns(DeprecationWarning), pytest.raises(gl.OptimizerMismatch):  # the old style still checks
        gl.check_update_rule(sgd_rule_doubled, torch.optim.SGD, {"lr": 0.1}, steps=3)


def test_defaults_are_the_template_s():
    assert gl.check_update_rule(sgd_rule, torch.optim.SGD, hyper={"lr": 0.1}).steps == 50
    assert gl.check_optimizer(optim.SGD, torch.optim.SGD, hyper={"lr": 0.1}).steps == 50


# --- arguments checked before any work ---

class NeverBuilt:
    def __init__(self, params, **hyper):
        raise AssertionError("built before the arguments were checked")


@pytest.mark.parametrize(("call", "match"), [
    (lambda: gl.check_optimizer(NeverBuilt, optim.Adam), r"torch_optimizer must be a torch.optim.Optimizer class"),
    (lambda: gl.check_optimizer(NeverBuilt, torch.optim.Adam([torch.zeros(1, requires_grad=True)])),
     r"pass the class itself, torch_optimizer=torch.optim.Adam"),
    (lambda: gl.check_optimizer(torch.optim.Adam, NeverBuilt), r"optimizer_cls is torch's Adam: the first argument"),
    (lambda: gl.check_optimizer(NeverBuilt, torch.optim.Adam, hyper={"betas1": (0.9, 0.99)}),
     r"hyper has 'betas1', which torch.optim.Adam does not take: did you mean 'betas'\?"),
    (lambda: gl.check_optimizer(NeverBuilt, torch.optim.SGD, hyper={"lr": 0.1, "momentun": 0.9}),
     r"did you mean 'momentum'\?"),
    (lambda: gl.check_optimizer(NeverBuilt, torch.optim.SGD, hyper={"lr": 0.1}, torch_hyper={"forech": False}),
     r"torch_hyper has 'forech'.*did you mean 'foreach'\?"),
    (lambda: gl.check_optimizer(NeverBuilt, torch.optim.SGD, hyper={"lr": 0.1}, shapes=(4, 3)),
     r"shapes must be a list of shapes.*write \[\(4, 3\)\]"),
    (lambda: gl.check_optimizer(NeverBuilt, torch.optim.SGD, hyper={"lr": 0.1}, shapes=[(4, -3)]),
     r"shapes\[0\] must hold integers >= 0"),
    (lambda: gl.check_optimizer(NeverBuilt, torch.optim.SGD, hyper={"lr": 0.1}, shapes=[(4, 0)]),
     r"parameter shape \(4, 0\) is empty"),
    (lambda: gl.check_optimizer(NeverBuilt, torch.optim.SGD, hyper={"lr": 0.1}, steps=0), r"steps must be at least 1"),
    (lambda: gl.check_optimizer(NeverBuilt, torch.optim.SGD, hyper={"lr": 0.1}, rtol="1e-3"), r"rtol must be a number"),
    (lambda: gl.check_optimizer(NeverBuilt, torch.optim.SGD, hyper={"lr": 0.1},
                                param_groups=[{"params": [1]}, {"params": [0]}]), r"in order"),
    (lambda: gl.check_optimizer(NeverBuilt, torch.optim.SGD, hyper={"lr": 0.1},
                                param_groups=[{"params": [0], "lrr": 1.0}, {"params": [1]}]),
     r"param_groups\[0\] has 'lrr'.*did you mean 'lr'\?"),
    (lambda: gl.check_update_rule(3, torch.optim.SGD), r"update must be an update rule"),
    (lambda: gl.check_update_rule(sgd_rule, optim.SGD), r"torch_optimizer must be a torch.optim.Optimizer class"),
    (lambda: gl.check_update_rule(sgd_rule, torch.optim.SGD, hyper={"learning_rate": 0.1}),
     r"hyper has 'learning_rate', which torch.optim.SGD does not take: .*it takes lr, momentum"),
    (lambda: gl.check_update_rule(sgd_rule, torch.optim.SGD, hyper={"lr": 0.1}, config=[1]),
     r"config must be a dict"),
    (lambda: gl.check_update_rule(sgd_rule, torch.optim.Adam, hyper={"lr": 0.1}, state_names={"m": 1}),
     r"state_names maps a config key to the name of torch's state entry"),
    (lambda: gl.check_update_rule(sgd_rule, torch.optim.SGD, hyper={"lr": 0.1}, dtype="float8"), r"unknown dtype"),
    (lambda: gl.check_update_rule(sgd_rule, torch.optim.SGD, hyper={"lr": -1.0}),
     r"hyper: torch.optim.SGD rejects \{'lr': -1.0\}: Invalid learning rate"),
    (lambda: gl.check_optimizer(NeverBuilt, torch.optim.Adam, hyper={"betas": (1.0, 0.9)}),
     r"torch.optim.Adam rejects .*beta"),
])
def test_a_bad_argument_is_a_typed_error_naming_it_before_any_work(call, match):
    with pytest.raises(gl.GradcheckError, match=match):
        call()


def test_torch_implementations_check_their_arguments_too():
    with pytest.raises(gl.InvalidInputError, match="did you mean 'amsgrad'"):
        check_torch_implementations(torch.optim.Adam, hyper={"amsgard": True})
    with pytest.warns(DeprecationWarning, match="torch_cls= is deprecated"):
        assert "foreach" in check_torch_implementations(torch_cls=torch.optim.SGD, hyper={"lr": 0.1}, steps=3)


# --- one default-dtype policy for both run loops ---

@pytest.mark.parametrize("caller_default", [torch.float32, torch.float64])
@pytest.mark.parametrize(("dtype", "policy"), [("float64", torch.float64), ("float32", torch.float32),
                                               ("bfloat16", torch.float32)])
def test_both_run_loops_run_torch_under_one_default_dtype_policy_and_restore_the_callers(caller_default, dtype,
                                                                                          policy):
    seen_by_rule: list[torch.dtype] = []

    def recording_rule(w, dw, config):
        seen_by_rule.append(torch.get_default_dtype())
        return sgd_rule(w, dw, config)

    before = torch.get_default_dtype()
    torch.set_default_dtype(caller_default)
    try:
        Recording.seen = []
        gl.check_optimizer(Recording, torch.optim.SGD, hyper={"lr": 0.1}, steps=3, dtype=dtype)
        assert torch.get_default_dtype() == caller_default
        gl.check_update_rule(recording_rule, torch.optim.SGD, hyper={"lr": 0.1}, steps=3, dtype=dtype)
        assert torch.get_default_dtype() == caller_default
        assert set(Recording.seen) == set(seen_by_rule) == {policy}
        with pytest.raises(gl.OptimizerMismatch):
            gl.check_update_rule(sgd_rule_doubled, torch.optim.SGD, hyper={"lr": 0.1}, steps=3, dtype=dtype)
        assert torch.get_default_dtype() == caller_default  # restored after a failure too
    finally:
        torch.set_default_dtype(before)


def test_inputs_are_not_modified():
    hyper, config = {"lr": 0.1, "momentum": 0.9}, {"learning_rate": 0.1}
    shapes = [(2, 3)]
    gl.check_update_rule(sgd_rule, torch.optim.SGD, hyper={"lr": 0.1}, config=config, shapes=shapes, steps=3)
    gl.check_optimizer(optim.SGD, torch.optim.SGD, hyper=hyper, shapes=shapes, steps=3)
    assert hyper == {"lr": 0.1, "momentum": 0.9} and config == {"learning_rate": 0.1} and shapes == [(2, 3)]


# --- inside pytest, a failure starts with the user's problem ---

FAILING_OPTIMIZER_TESTS = '''
import numpy as np
import torch
import gradcheck_lab as gl


def course_adam(w, dw, config):
    for key in ("v", "s"):
        config.setdefault(key, np.zeros_like(w))
    config["t"] = config.get("t", 0) + 1
    config["v"] = 0.9 * config["v"] + 0.1 * dw
    config["s"] = 0.999 * config["s"] + 0.001 * dw**2
    v_hat, s_hat = config["v"] / (1 - 0.9 ** config["t"]), config["s"] / (1 - 0.999 ** config["t"])
    return w - config["learning_rate"] * v_hat / (np.sqrt(s_hat) + 1e-8), config


class DoubledSGD:
    def __init__(self, params, lr):
        self.params, self.lr = params, lr

    def step(self, grads):
        for p, g in zip(self.params, grads):
            p -= 2 * self.lr * g


def test_course_names():
    gl.check_update_rule(course_adam, torch.optim.Adam, hyper={"lr": 1e-2})


def test_optimizer():
    gl.check_optimizer(DoubledSGD, torch.optim.SGD, hyper={"lr": 0.1})


def test_typo():
    gl.check_optimizer(DoubledSGD, torch.optim.SGD, hyper={"lrr": 0.1})
'''


def test_a_failure_inside_pytest_shows_the_message_not_the_harness(pytester):
    from importlib.metadata import entry_points

    installed = any(ep.value.startswith("gradcheck_lab.pytest_plugin") for ep in entry_points(group="pytest11"))
    pytester.makepyfile(test_user=FAILING_OPTIMIZER_TESTS)
    result = pytester.runpytest_inprocess(*([] if installed else ["-p", "gradcheck_lab.pytest_plugin"]),
                                          "-p", "no:cacheprovider", "-p", "no:randomly")
    result.assert_outcomes(failed=3)
    text = result.stdout.str()
    headlines = {
        "test_course_names": "OptimizerMismatch: optimizer diverges at step 1 on cpu/float64: parameter 0 (shape "
                             "(4, 3)), state entry 'exp_avg_sq': config['v'] compared with torch's exp_avg_sq",
        "test_optimizer": "OptimizerMismatch: optimizer diverges at step 1 on cpu/float64: parameter",
        "test_typo": "InvalidInputError: hyper has 'lrr', which torch.optim.SGD does not take: did you mean 'lr'?",
    }
    for name, headline in headlines.items():
        section = text.split(f"_ {name} _", 1)[1].split("\n_", 1)[0].split("short test summary")[0]
        assert "gradcheck_lab" + "/" not in section and "__tracebackhide__" not in section, section
        first_error = next(line for line in section.strip().splitlines() if line.startswith("E "))
        assert headline in first_error, section


class _FusedOffByAStep(torch.optim.SGD):
    """torch's SGD whose fused path adds a small extra step after the fifth: a planted variant bug."""

    def step(self, closure=None):  # type: ignore[no-untyped-def]
        loss = super().step(closure)
        self.steps = getattr(self, "steps", 0) + 1
        if self.defaults.get("fused") and self.steps > 5:
            with torch.no_grad():
                for group in self.param_groups:
                    for p in group["params"]:
                        p.add_(p.grad, alpha=-1e-4)
        return loss


def test_the_for_loop_played_back_to_the_second_variant_still_catches_its_bug(monkeypatch):
    from gradcheck_lab.optim.sides import Recorded

    replays = []
    replay = Recorded.replay
    monkeypatch.setattr(Recorded, "replay", lambda self: replays.append(self) or replay(self))
    reports = check_torch_implementations(torch.optim.Adam, hyper={"lr": 0.01}, steps=8)
    assert set(reports) == {"foreach", "fused"} and all(r.passed for r in reports.values())
    assert len(replays) == 1, "the fused run reads the for-loop the foreach run recorded"
    with pytest.raises(gl.OptimizerMismatch, match="fused") as info:
        check_torch_implementations(_FusedOffByAStep, hyper={"lr": 0.1, "momentum": 0.9}, steps=8)
    assert "step 6" in str(info.value)


def test_a_played_back_for_loop_gives_the_report_a_fresh_one_gives(monkeypatch):
    from gradcheck_lab.optim import sides

    replayed = check_torch_implementations(torch.optim.NAdam, hyper={"lr": 0.01}, steps=6, dtype="float32")
    monkeypatch.setattr(sides, "RECORD_LIMIT", -1)  # nothing is kept: every variant steps a fresh for-loop
    fresh = check_torch_implementations(torch.optim.NAdam, hyper={"lr": 0.01}, steps=6, dtype="float32")
    assert replayed == fresh
