"""Course-style update rules: the pairing of config entries with torch's state is explicit and named (#19).

Two conventions for Adam's state: CS231n's (``m`` first moment, ``v`` second) and deeplearning.ai's (``v`` first
moment, ``s`` second), with arrays or with a dict of arrays per entry. Each has a right and a planted wrong rule.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import gradcheck_lab as gl

HYPER = {"lr": 1e-2}
COURSE_NAMES = {"v": "exp_avg", "s": "exp_avg_sq", "t": "step"}


def _moments(config, w, dw, first, second, square=True, wrap=None):
    """Adam's two moments under the given config keys (a dict {wrap: array} per key when ``wrap``)."""
    b1, b2 = config.get("beta1", 0.9), config.get("beta2", 0.999)
    get = (lambda k: config[k][wrap]) if wrap else (lambda k: config[k])
    for key in (first, second):
        config.setdefault(key, {wrap: np.zeros_like(w)} if wrap else np.zeros_like(w))
    m = b1 * get(first) + (1 - b1) * dw
    v = b2 * get(second) + (1 - b2) * (dw * dw if square else dw)
    if wrap:
        config[first], config[second] = {wrap: m}, {wrap: v}
    else:
        config[first], config[second] = m, v
    config["t"] = config.get("t", 0) + 1
    t = config["t"]
    m_hat, v_hat = m / (1 - b1**t), v / (1 - b2**t)
    step = config["learning_rate"] * m_hat / (np.sqrt(np.abs(v_hat)) + config.get("epsilon", 1e-8))
    return w - step, config


def cs231n_adam(w, dw, config):
    return _moments(config, w, dw, "m", "v")


def cs231n_adam_wrong(w, dw, config):  # the second moment of dw, not dw**2
    return _moments(config, w, dw, "m", "v", square=False)


def course_adam(w, dw, config):  # deeplearning.ai: v is the first moment, s the second
    return _moments(config, w, dw, "v", "s")


def course_adam_wrong(w, dw, config):
    return _moments(config, w, dw, "v", "s", square=False)


def course_adam_dicts(w, dw, config):  # one array per parameter name, as the course keeps them
    return _moments(config, w, dw, "v", "s", wrap="dW")


def course_adam_dicts_wrong(w, dw, config):
    return _moments(config, w, dw, "v", "s", square=False, wrap="dW")


def test_cs231n_naming_is_the_default_and_named_in_every_mismatch():
    report = gl.check_update_rule(cs231n_adam, torch.optim.Adam, hyper=HYPER)
    assert report.passed and report.state_names == {"exp_avg": "m", "exp_avg_sq": "v", "step": "t"}
    with pytest.raises(gl.OptimizerMismatch) as info:
        gl.check_update_rule(cs231n_adam_wrong, torch.optim.Adam, hyper=HYPER)
    message = str(info.value)
    assert info.value.step == 1 and info.value.entry == "param"  # the parameters show it; the state explains
    assert "also diverging at this step: parameter 0 state entry 'exp_avg_sq' (config['v'])" in message
    assert "state compared: config['m'] with torch's exp_avg, config['v'] with exp_avg_sq, config['t'] with step " \
        "(by the CS231n naming; pass state_names= to change it)" in message
    assert "named differently" not in message  # a wrong v matches no torch entry: a real mistake

    def only_the_state_wrong(w, dw, config):
        next_w, config = cs231n_adam(w, dw, config)
        config["v"] = np.sqrt(config["v"])
        return next_w, config

    with pytest.raises(gl.OptimizerMismatch) as info:
        gl.check_update_rule(only_the_state_wrong, torch.optim.Adam, hyper=HYPER)
    assert info.value.step == 1 and info.value.entry == "exp_avg_sq"
    assert "config['v'] compared with torch's exp_avg_sq (by the CS231n naming; pass state_names= to change it)" \
        in str(info.value).splitlines()[0]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_right_course_adam_whose_v_is_the_first_moment_is_told_the_state_names_to_pass(dtype):
    with pytest.raises(gl.OptimizerMismatch) as info:
        gl.check_update_rule(course_adam, torch.optim.Adam, hyper=HYPER, dtype=dtype)
    message = str(info.value)
    assert "config['v'] compared with torch's exp_avg_sq (by the CS231n naming" in message.splitlines()[0]
    assert "named differently, not computed wrongly" in message.splitlines()[1]
    assert "state_names={'s': 'exp_avg_sq', 't': 'step', 'v': 'exp_avg'}" in message
    report = gl.check_update_rule(course_adam, torch.optim.Adam, hyper=HYPER, state_names=COURSE_NAMES, dtype=dtype)
    assert report.passed and report.state_entries == ["exp_avg", "exp_avg_sq", "step"]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_wrong_course_adam_is_reported_under_its_own_names(dtype):
    with pytest.raises(gl.OptimizerMismatch) as info:
        gl.check_update_rule(course_adam_wrong, torch.optim.Adam, hyper=HYPER, state_names=COURSE_NAMES, dtype=dtype)
    message = str(info.value)
    assert info.value.step == 1 and info.value.entry == "param"
    assert "also diverging at this step: parameter 0 state entry 'exp_avg_sq' (config['s'])" in message
    assert "state compared: config['v'] with torch's exp_avg, config['s'] with exp_avg_sq, config['t'] with step " \
        "(by state_names=)" in message
    assert "named differently" not in message


def test_dicts_of_arrays_are_read_through_and_named():
    report = gl.check_update_rule(course_adam_dicts, torch.optim.Adam, hyper=HYPER, state_names=COURSE_NAMES)
    assert report.passed and report.state_entries == ["exp_avg", "exp_avg_sq", "step"]
    with pytest.raises(gl.OptimizerMismatch) as info:
        gl.check_update_rule(course_adam_dicts_wrong, torch.optim.Adam, hyper=HYPER, state_names=COURSE_NAMES)
    assert "parameter 0 state entry 'exp_avg_sq' (config['s']['dW'])" in str(info.value)
    assert "state compared: config['v']['dW'] with torch's exp_avg, config['s']['dW'] with exp_avg_sq" \
        in str(info.value)
    with pytest.raises(gl.OptimizerMismatch, match=r"state_names=\{'s': 'exp_avg_sq', 't': 'step', 'v': 'exp_avg'\}"):
        gl.check_update_rule(course_adam_dicts, torch.optim.Adam, hyper=HYPER)  # the default naming: the hint


def test_a_config_entry_that_cannot_be_compared_is_a_typed_error_naming_the_key():
    def two_arrays(w, dw, config):
        next_w, config = course_adam(w, dw, config)
        config["v"] = {"dW": config["v"], "db": config["v"].copy()}  # two arrays of the parameter's shape
        return next_w, config

    with pytest.raises(gl.ReferenceContractError, match=r"config\['v'\] is a dict \(keys 'dW', 'db'\)"):
        gl.check_update_rule(two_arrays, torch.optim.Adam, hyper=HYPER, state_names=COURSE_NAMES)

    def text_state(w, dw, config):
        next_w, config = course_adam(w, dw, config)
        config["s"] = "second moment"
        return next_w, config

    with pytest.raises(gl.ReferenceContractError, match=r"config\['s'\] is a str"):
        gl.check_update_rule(text_state, torch.optim.Adam, hyper=HYPER, state_names=COURSE_NAMES)

    def flat_state(w, dw, config):
        next_w, config = course_adam(w, dw, config)
        config["s"] = config["s"].ravel()
        return next_w, config

    with pytest.raises(gl.ReferenceContractError, match=r"config\['s'\] of parameter 0 has shape \(12,\)"):
        gl.check_update_rule(flat_state, torch.optim.Adam, hyper=HYPER, state_names=COURSE_NAMES)


def test_empty_state_names_compare_the_parameters_only():
    report = gl.check_update_rule(course_adam, torch.optim.Adam, hyper=HYPER, state_names={})
    assert report.passed and report.state_entries == [] and report.state_names == {}
    with pytest.raises(gl.OptimizerMismatch):  # a wrong rule still shows in the parameters
        gl.check_update_rule(course_adam_wrong, torch.optim.Adam, hyper=HYPER, state_names={})


def test_state_keys_is_the_old_name_of_state_names():
    with pytest.warns(DeprecationWarning, match="state_keys= is deprecated, use state_names="):
        report = gl.check_update_rule(course_adam, torch.optim.Adam, hyper=HYPER, state_keys=COURSE_NAMES)
    assert report.passed and report.state_entries == ["exp_avg", "exp_avg_sq", "step"]
