"""The torch.optim matrix: every rule, parameter groups, None gradients, schedulers, state dicts, planted mistakes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.optim.lr_scheduler as tls
from gradcheck_lab.reference import lr_scheduler as ls
from gradcheck_lab.reference import optim
from hypothesis import given
from hypothesis import strategies as st

import gradcheck_lab as gl
from gradcheck_lab.optim.check import Schedule


@pytest.fixture
def float64_default():
    """torch keeps NAdam's mu_product in the default dtype: float64 here, as for the reference's float64 arrays."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(before)


NAMES = ["SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "Adadelta", "Adamax", "NAdam", "RAdam"]
LRS = {"SGD": 0.05, "Adam": 1e-2, "AdamW": 1e-2, "RMSprop": 1e-2, "Adagrad": 0.1, "Adadelta": 1.0, "Adamax": 1e-2,
       "NAdam": 1e-2, "RAdam": 1e-2}

# --- the references against torch on option sets drawn at random ---

betas = st.sampled_from([(0.9, 0.999), (0.5, 0.9), (0.0, 0.99), (0.95, 0.95)])
common = {"weight_decay": st.sampled_from([0.0, 1e-3, 0.3]), "maximize": st.booleans()}
OPTIONS = {
    "RMSprop": {"lr": st.sampled_from([1e-3, 1e-2]), "alpha": st.sampled_from([0.99, 0.9, 0.5]),
                "eps": st.sampled_from([1e-8, 1e-6]), "momentum": st.sampled_from([0.0, 0.5, 0.9]),
                "centered": st.booleans(), **common},
    "Adagrad": {"lr": st.sampled_from([1e-2, 0.1]), "lr_decay": st.sampled_from([0.0, 0.01, 0.5]),
                "initial_accumulator_value": st.sampled_from([0.0, 0.1]), "eps": st.sampled_from([1e-10, 1e-6]),
                **common},
    "Adadelta": {"lr": st.sampled_from([1.0, 0.1]), "rho": st.sampled_from([0.9, 0.5, 0.99]),
                 "eps": st.sampled_from([1e-6, 1e-8]), **common},
    "Adamax": {"lr": st.sampled_from([2e-3, 1e-2]), "betas": betas, "eps": st.sampled_from([1e-8, 1e-6]), **common},
    "NAdam": {"lr": st.sampled_from([2e-3, 1e-2]), "betas": betas, "eps": st.sampled_from([1e-8, 1e-6]),
              "momentum_decay": st.sampled_from([4e-3, 0.05]), "decoupled_weight_decay": st.booleans(), **common},
    "RAdam": {"lr": st.sampled_from([1e-3, 1e-2]), "betas": betas, "eps": st.sampled_from([1e-8, 1e-6]),
              "decoupled_weight_decay": st.booleans(), **common},
    "Adam": {"lr": st.sampled_from([1e-3, 1e-2]), "betas": betas, "amsgrad": st.booleans(),
             "decoupled_weight_decay": st.booleans(), **common},
}


@given(data=st.data(), name=st.sampled_from(sorted(OPTIONS)), seed=st.integers(0, 2**16),
       grouped=st.booleans(), none_grads=st.booleans())
def test_every_rule_matches_torch_for_drawn_options_groups_and_none_gradients(data, name, seed, grouped, none_grads):
    hyper = data.draw(st.fixed_dictionaries(OPTIONS[name]), label="hyper")
    groups = None
    if grouped:
        own = data.draw(st.fixed_dictionaries(OPTIONS[name]), label="first group's options")
        groups = [{"params": [0], **own}, {"params": [1, 2]}]
    report = gl.check_optimizer(getattr(optim, name), getattr(torch.optim, name), hyper=hyper,
                                shapes=[(3, 2), (4,), (2,)], steps=80, seed=seed, param_groups=groups,
                                none_grads=none_grads)
    assert report.passed and report.state_entries


# --- bookkeeping: groups, None gradients, zero-size parameters, state dicts ---

@pytest.mark.parametrize("name", NAMES)
def test_none_gradient_skips_the_parameter_and_its_state(name):
    a, b = np.ones(3), np.ones(2)
    opt = getattr(optim, name)([a, b], lr=LRS[name])
    opt.step([np.full(3, 0.5), None])
    assert not np.array_equal(a, np.ones(3)) and np.array_equal(b, np.ones(2))
    skipped = opt.state.get(1, {})
    assert name == "Adagrad" or not skipped  # Adagrad's state exists from construction, as in torch
    assert skipped.get("step", 0.0) == 0.0


@pytest.mark.parametrize("name", NAMES)
def test_zero_size_parameters_are_carried_along_like_torch(name, float64_default):
    params = [np.zeros((0, 3)), np.linspace(-1, 1, 4)]
    tensors = [torch.tensor(p, requires_grad=True) for p in params]
    ours, theirs = getattr(optim, name)(params, lr=LRS[name]), getattr(torch.optim, name)(tensors, lr=LRS[name])
    for k in range(3):
        grads = [np.zeros((0, 3)), np.array([0.3, -1.0, 2.0, 1e-6]) * (k + 1)]
        ours.step(grads)
        for t, g in zip(tensors, grads, strict=True):
            t.grad = torch.tensor(g)
        theirs.step()
    np.testing.assert_allclose(params[1], tensors[1].detach().numpy(), rtol=1e-12, atol=0)
    assert params[0].shape == (0, 3)
    mine, torchs = ours.state_dict()["state"], theirs.state_dict()["state"]
    assert mine.keys() == torchs.keys()
    assert all(sorted(mine[k]) == sorted(torchs[k]) for k in torchs)
    assert all(v.shape == (0, 3) for v in mine.get(0, {}).values() if isinstance(v, np.ndarray) and v.ndim)


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_layout_is_torchs_groups_included(name):
    groups = lambda ps: [{"params": [ps[0]], "lr": 0.5 * LRS[name]}, {"params": ps[1:]}]  # noqa: E731
    params = [np.linspace(-1, 1, 6).reshape(2, 3), np.ones(2), np.arange(3.0)]
    tensors = [torch.tensor(p, requires_grad=True) for p in params]
    ours, theirs = getattr(optim, name)(groups(params), lr=LRS[name]), getattr(torch.optim, name)(groups(tensors),
                                                                                                lr=LRS[name])
    grads = [np.full(p.shape, 0.1) for p in params]
    ours.step(grads)
    for t, g in zip(tensors, grads, strict=True):
        t.grad = torch.tensor(g)
    theirs.step()
    mine, torchs = ours.state_dict(), theirs.state_dict()
    assert [g["params"] for g in mine["param_groups"]] == [g["params"] for g in torchs["param_groups"]]
    for g_mine, g_torch in zip(mine["param_groups"], torchs["param_groups"], strict=True):
        shared = (set(g_mine) & set(g_torch)) - {"params"}
        assert set(g_mine) <= set(g_torch), set(g_mine) - set(g_torch)
        assert {k: g_mine[k] for k in shared} == {k: tuple(v) if isinstance(v, list) else v
                                                  for k, v in g_torch.items() if k in shared}
    assert mine["state"].keys() == torchs["state"].keys()
    for key in torchs["state"]:
        assert sorted(mine["state"][key]) == sorted(torchs["state"][key])


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_swapped_mid_run_with_groups_and_a_schedule(name):
    hyper = {"lr": LRS[name]}
    groups = [{"params": [0], "lr": 0.3 * LRS[name]}, {"params": [1, 2]}]
    schedule = Schedule(ls.StepLR, tls.StepLR, {"step_size": 5, "gamma": 0.7})
    report = gl.check_optimizer(getattr(optim, name), getattr(torch.optim, name), hyper=hyper,
                                shapes=[(3, 2), (4,), (2,)], steps=30, param_groups=groups, scheduler=schedule,
                                none_grads=True, swap_state_at=12, dtype="float32")
    assert report.passed and "lr" in report.state_entries


def test_param_groups_that_skip_or_reorder_parameters_are_refused():
    with pytest.raises(gl.InvalidInputError, match="param_groups"):
        gl.check_optimizer(optim.SGD, torch.optim.SGD, hyper={"lr": 0.1}, shapes=[(2,), (3,)],
                           param_groups=[{"params": [1]}, {"params": [0]}])


def test_group_options_are_validated_like_torch():
    with pytest.raises(ValueError, match="beta"):
        optim.NAdam([{"params": [np.ones(2)], "betas": (0.9, 1.0)}])
    with pytest.raises(ValueError, match="rho"):
        optim.Adadelta([{"params": [np.ones(2)]}, {"params": [np.ones(2)], "rho": 1.5}])
    with pytest.raises(TypeError, match="unknown option"):
        optim.RMSprop([{"params": [np.ones(2)], "betas": (0.9, 0.9)}])


# --- schedulers, value for value ---

SCHEDULES = [
    ("StepLR", {"step_size": 7, "gamma": 0.5}),
    ("MultiStepLR", {"milestones": [3, 50, 50, 200], "gamma": 0.3}),
    ("ExponentialLR", {"gamma": 0.99}),
    ("CosineAnnealingLR", {"T_max": 37, "eta_min": 1e-4}),
    ("CosineAnnealingLR", {"T_max": 100}),
    ("LinearLR", {"start_factor": 0.1, "end_factor": 0.9, "total_iters": 40}),
    ("LinearLR", {}),
    ("OneCycleLR", {"max_lr": 0.5, "total_steps": 400}),
    ("OneCycleLR", {"max_lr": [0.5, 0.1], "total_steps": 400, "pct_start": 0.25, "anneal_strategy": "linear",
                    "three_phase": True}),
    ("LambdaLR", {"lr_lambda": lambda e: 0.95**e / (1 + e)}),
]


@pytest.mark.parametrize(("name", "kwargs"), SCHEDULES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(SCHEDULES)])
def test_schedulers_match_torch_bit_for_bit_over_hundreds_of_steps(name, kwargs):
    ours_opt = optim.SGD([{"params": [np.zeros(2)], "lr": 0.1}, {"params": [np.zeros(3)], "lr": 0.03}])
    t_params = [torch.zeros(2, requires_grad=True), torch.zeros(3, requires_grad=True)]
    theirs_opt = torch.optim.SGD([{"params": [t_params[0]], "lr": 0.1}, {"params": [t_params[1]], "lr": 0.03}])
    extra = {"cycle_momentum": False} if name == "OneCycleLR" else {}
    ours, theirs = getattr(ls, name)(ours_opt, **kwargs), getattr(tls, name)(theirs_opt, **kwargs, **extra)
    rates = []
    for _ in range(400):
        assert ours.get_last_lr() == theirs.get_last_lr(), f"at step {ours.last_epoch}"
        rates.append(ours.get_last_lr()[0])
        theirs_opt.step()
        ours_opt.step([None, None])
        ours.step()
        theirs.step()
    assert [g["lr"] for g in ours_opt.param_groups] == [g["lr"] for g in theirs_opt.param_groups]
    assert len(set(rates)) > 2, "the schedule never moved"


def test_cosine_schedule_is_the_recursive_form_not_the_closed_one():
    """The closed form drifts from torch's recursion by rounding: the reference must follow the recursion."""
    opt = optim.SGD([np.zeros(1)], lr=0.1)
    sched = ls.CosineAnnealingLR(opt, T_max=37, eta_min=1e-4)
    differs = 0
    for t in range(1, 300):
        opt.step([None])
        sched.step()
        closed = 1e-4 + (0.1 - 1e-4) * (1 + np.cos(np.pi * t / 37)) / 2
        differs += sched.get_last_lr()[0] != closed
    assert differs > 0


# --- planted mistakes, each caught at its first wrong step ---

def _rmsprop(s, p, g, h, bug):
    if not s:
        s.update(step=0.0, square_avg=np.zeros_like(p), grad_avg=np.zeros_like(p))
    s["step"] += 1
    g = g + h["weight_decay"] * p
    s["square_avg"] = h["alpha"] * s["square_avg"] + (1 - h["alpha"]) * g * g
    s["grad_avg"] = h["alpha"] * s["grad_avg"] + (1 - h["alpha"]) * g
    v = s["square_avg"] - (0 if bug == "centered without the mean" else s["grad_avg"] ** 2)
    denom = np.sqrt(v + h["eps"]) if bug == "eps inside sqrt" else np.sqrt(v) + h["eps"]
    p -= h["lr"] * g / denom


def _adagrad(s, p, g, h, bug):
    s["step"] += 1
    t = s["step"]
    if bug == "lr_decay on the accumulator":
        s["sum"] = s["sum"] + g * g / (1 + (t - 1) * h["lr_decay"])
        clr = h["lr"]
    else:
        s["sum"] = s["sum"] + g * g
        clr = h["lr"] / (1 + (t - 1) * h["lr_decay"])
    denom = np.sqrt(s["sum"] + h["eps"]) if bug == "eps inside sqrt" else np.sqrt(s["sum"]) + h["eps"]
    p -= clr * g / denom


def _adadelta(s, p, g, h, bug):
    if not s:
        s.update(step=0.0, square_avg=np.zeros_like(p), acc_delta=np.zeros_like(p))
    s["step"] += 1
    rho, eps = h["rho"], h["eps"]
    s["square_avg"] = rho * s["square_avg"] + (1 - rho) * g * g
    rms_update, rms_grad = np.sqrt(s["acc_delta"] + eps), np.sqrt(s["square_avg"] + eps)
    if bug == "update and accumulator swapped":
        rms_update, rms_grad = rms_grad, rms_update
    delta = rms_update / rms_grad * g
    s["acc_delta"] = rho * s["acc_delta"] + (1 - rho) * delta * delta
    p -= h["lr"] * delta


def _adamax(s, p, g, h, bug):
    if not s:
        s.update(step=0.0, exp_avg=np.zeros_like(p), exp_inf=np.zeros_like(p))
    s["step"] += 1
    b1, b2 = h["betas"]
    t = s["step"]
    s["exp_avg"] = b1 * s["exp_avg"] + (1 - b1) * g
    s["exp_inf"] = np.maximum(b2 * s["exp_inf"], np.abs(g) + h["eps"])
    u = s["exp_inf"] / (1 - b2**t) if bug == "bias correction on the infinity norm" else s["exp_inf"]
    p -= h["lr"] / (1 - b1**t) * s["exp_avg"] / u


def _nadam(s, p, g, h, bug):
    if not s:
        s.update(step=0.0, mu_product=1.0, exp_avg=np.zeros_like(p), exp_avg_sq=np.zeros_like(p))
    s["step"] += 1
    b1, b2 = h["betas"]
    t = s["step"]
    if bug == "constant momentum schedule":
        mu = mu_next = b1
    else:
        mu = b1 * (1 - 0.5 * 0.96 ** (t * h["momentum_decay"]))
        mu_next = b1 * (1 - 0.5 * 0.96 ** ((t + 1) * h["momentum_decay"]))
    s["mu_product"] *= mu
    s["exp_avg"] = b1 * s["exp_avg"] + (1 - b1) * g
    s["exp_avg_sq"] = b2 * s["exp_avg_sq"] + (1 - b2) * g * g
    denom = np.sqrt(s["exp_avg_sq"] / (1 - b2**t)) + h["eps"]
    p -= h["lr"] * (1 - mu) / (1 - s["mu_product"]) * g / denom
    p -= h["lr"] * mu_next / (1 - s["mu_product"] * mu_next) * s["exp_avg"] / denom


def _radam(s, p, g, h, bug):
    if not s:
        s.update(step=0.0, exp_avg=np.zeros_like(p), exp_avg_sq=np.zeros_like(p))
    s["step"] += 1
    b1, b2 = h["betas"]
    t = s["step"]
    s["exp_avg"] = b1 * s["exp_avg"] + (1 - b1) * g
    s["exp_avg_sq"] = b2 * s["exp_avg_sq"] + (1 - b2) * g * g
    m_hat = s["exp_avg"] / (1 - b1**t)
    rho_inf = 2 / (1 - b2) - 1
    rho_t = rho_inf - 2 * t * b2**t / (1 - b2**t)
    if rho_t > (4.0 if bug == "rectification threshold off by one" else 5.0):
        rect = np.sqrt((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t))
        p -= h["lr"] * m_hat * rect * np.sqrt(1 - b2**t) / (np.sqrt(s["exp_avg_sq"]) + h["eps"])
    else:
        p -= h["lr"] * m_hat


def _adam(s, p, g, h, bug):
    if not s:
        s.update(step=1.0 if bug == "step counter starts at 1" else 0.0, exp_avg=np.zeros_like(p),
                 exp_avg_sq=np.zeros_like(p))
    s["step"] += 1
    b1, b2 = h["betas"]
    t = s["step"]
    s["exp_avg"] = b1 * s["exp_avg"] + (1 - b1) * g
    s["exp_avg_sq"] = b2 * s["exp_avg_sq"] + (1 - b2) * g * g
    bc1, bc2 = (1 - b1, 1 - b2) if bug == "bias correction without the power of t" else (1 - b1**t, 1 - b2**t)
    lr = h["lr"]
    p -= lr * (s["exp_avg"] / bc1) / (np.sqrt(s["exp_avg_sq"] / bc2) + h["eps"])


def _hand(name, rule, bug=None):
    """The reference's bookkeeping (groups, state names) around a hand-written ``rule`` with ``bug`` planted."""
    class Hand(getattr(optim, name)):
        def _update(self, i, param, grad, group):
            if bug == "per-group option ignored":
                group = {**group, "lr": self.defaults["lr"]}
            rule(self.state.setdefault(i, {}), param, grad, group, bug)
    Hand.__name__ = f"Hand{name}[{bug}]"
    return Hand


class SteppedBeforeTheOptimizer(ls.ExponentialLR):
    """A loop that calls ``scheduler.step()`` before its first ``optimizer.step()``."""

    def __init__(self, optimizer, **kwargs):
        super().__init__(optimizer, **kwargs)
        self.step()


RULES = {"RMSprop": _rmsprop, "Adagrad": _adagrad, "Adadelta": _adadelta, "Adamax": _adamax, "NAdam": _nadam,
         "RAdam": _radam, "Adam": _adam}
HYPER = {"RMSprop": {"lr": 1e-2, "centered": True}, "Adagrad": {"lr": 0.1, "lr_decay": 0.1},
         "Adadelta": {"lr": 1.0}, "Adamax": {"lr": 2e-3}, "NAdam": {"lr": 2e-3}, "RAdam": {"lr": 1e-3},
         "Adam": {"lr": 1e-3}}
PLANTED = {  # bug: (optimizer, first wrong step)
    "eps inside sqrt/RMSprop": ("RMSprop", 1),
    "eps inside sqrt/Adagrad": ("Adagrad", 1),
    "centered without the mean": ("RMSprop", 1),
    "lr_decay on the accumulator": ("Adagrad", 2),  # t - 1 = 0 at step 1: the decay is 1 either way
    "update and accumulator swapped": ("Adadelta", 1),
    "bias correction on the infinity norm": ("Adamax", 1),
    "constant momentum schedule": ("NAdam", 1),
    "rectification threshold off by one": ("RAdam", 5),  # rho_5 = 4.996 with beta2 = 0.999
    "step counter starts at 1": ("Adam", 1),
    "bias correction without the power of t": ("Adam", 2),  # beta**1 = beta: right at step 1
    "per-group option ignored": ("NAdam", 1),
    "scheduler stepped before the first optimizer step": ("Adam", 1),
}


def test_the_hand_written_rules_are_right_without_a_bug():
    for name, rule in RULES.items():
        gl.check_optimizer(_hand(name, rule), getattr(torch.optim, name), hyper=HYPER[name], steps=40,
                           param_groups=[{"params": [0], "lr": 0.5 * HYPER[name]["lr"]}, {"params": [1]}],
                           scheduler=Schedule(ls.ExponentialLR, tls.ExponentialLR, {"gamma": 0.9}))


@pytest.mark.parametrize("bug", sorted(PLANTED))
def test_planted_optimizer_bug_is_caught_at_its_first_wrong_step(bug, dtype):
    name, first = PLANTED[bug]
    sched_cls = SteppedBeforeTheOptimizer if bug.startswith("scheduler") else ls.ExponentialLR
    with pytest.raises(gl.OptimizerMismatch) as info:
        gl.check_optimizer(_hand(name, RULES[name], bug.split("/")[0]), getattr(torch.optim, name),
                           hyper=HYPER[name], steps=30, dtype=dtype,
                           param_groups=[{"params": [0], "lr": 0.5 * HYPER[name]["lr"]}, {"params": [1]}],
                           scheduler=Schedule(sched_cls, tls.ExponentialLR, {"gamma": 0.9}))
    assert info.value.step == first, str(info.value)
    assert f"at step {first} " in str(info.value)


def test_a_lossy_state_dict_is_caught_right_after_the_swap():
    class ForgetsOnLoad(optim.RMSprop):
        def load_state_dict(self, state_dict):
            super().load_state_dict(state_dict)
            self.state = {}

    kwargs = {"hyper": {"lr": 1e-2, "momentum": 0.9}, "steps": 20}
    gl.check_optimizer(ForgetsOnLoad, torch.optim.RMSprop, **kwargs)
    with pytest.raises(gl.OptimizerMismatch) as info:
        gl.check_optimizer(ForgetsOnLoad, torch.optim.RMSprop, swap_state_at=7, **kwargs)
    assert info.value.step == 8


def test_a_none_gradient_that_still_updates_state_is_caught():
    class DecaysWithoutGradient(optim.Adam):
        def step(self, grads):
            super().step([np.zeros_like(p) if g is None else g for p, g in zip(self.params, grads, strict=True)])

    gl.check_optimizer(DecaysWithoutGradient, torch.optim.Adam, hyper={"lr": 1e-3}, steps=20)
    with pytest.raises(gl.OptimizerMismatch) as info:
        gl.check_optimizer(DecaysWithoutGradient, torch.optim.Adam, hyper={"lr": 1e-3}, steps=20, none_grads=True,
                           shapes=[(3,), (2,)])
    assert info.value.step == 3  # parameter 1 has no gradient at step 3 ((3 + 1) % 4 == 0)


def test_centered_rmsprop_moments_are_bit_identical_to_torch_in_float32_where_the_variance_cancels():
    """A steady gradient (weight decay over tiny gradients) makes v - mean^2 a rounding residual:
    only moments rounded exactly as torch's fused kernels keep the variance, and so the step, torch's."""
    rng = np.random.default_rng(0)
    p = rng.standard_normal(4096).astype(np.float32)
    t = torch.tensor(p.copy(), requires_grad=True)
    hyper = {"lr": 1e-3, "alpha": 0.9, "centered": True, "weight_decay": 1e-2, "eps": 1e-3}
    ours, theirs = optim.RMSprop([p], **hyper), torch.optim.RMSprop([t], **hyper)
    for _ in range(20):
        g = (rng.standard_normal(4096) * 1e-9).astype(np.float32)
        with torch.no_grad():
            t.copy_(torch.tensor(p))
        ours.step([g])
        t.grad = torch.tensor(g)
        theirs.step()
        for name in ("square_avg", "grad_avg"):
            np.testing.assert_array_equal(ours.state[0][name], theirs.state[t][name].numpy())
