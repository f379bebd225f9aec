"""NumPy SGD/Adam/AdamW against torch.optim: configurations, state dicts and planted mistakes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gradcheck_lab.reference import optim
from hypothesis import given
from hypothesis import strategies as st

import gradcheck_lab as gl
from gradcheck_lab.cases.registry import OPTIMIZER_CASES, check_optimizer_case
from gradcheck_lab.core.comparison import compare
from gradcheck_lab.core.tolerances import trajectory_tolerance
from gradcheck_lab.optim.check import check_torch_implementations
from gradcheck_lab.optim.sides import torch_state_dict


@pytest.mark.parametrize("name", sorted(OPTIMIZER_CASES))
def test_registered_optimizer_cases_match_torch(name, device, dtype, dtype_name):
    case = OPTIMIZER_CASES[name]
    if dtype_name not in case.dtypes:
        pytest.skip(f"{name} is not registered for {dtype_name}")
    report = check_optimizer_case(case, device=device, dtype=dtype)
    assert report.passed and report.steps == case.steps
    if case.hyper.get("momentum") or case.torch_cls is not torch.optim.SGD:
        assert report.state_entries, "state entries were not compared"


@pytest.mark.parametrize("name", ["sgd_momentum_dampening_wd", "adam_amsgrad_wd", "adamw"])
def test_torch_foreach_and_fused_match_its_for_loop(name, device, dtype, dtype_name):
    case = OPTIMIZER_CASES[name]
    if dtype_name not in case.dtypes:  # (e.g. float16, where the default eps=1e-8 rounds to 0: NaN on every side)
        pytest.skip(f"{name} is not registered for {dtype_name}")
    reports = check_torch_implementations(case.torch_cls, hyper=case.hyper, steps=60, device=device, dtype=dtype)
    assert "foreach" in reports
    assert all(r.passed for r in reports.values())


sgd_hyper = st.fixed_dictionaries({
    "lr": st.sampled_from([1e-3, 0.01, 0.1]),
    "momentum": st.sampled_from([0.0, 0.5, 0.9]),
    "dampening": st.sampled_from([0.0, 0.1, 0.5]),
    "weight_decay": st.sampled_from([0.0, 1e-4, 0.1]),
    "maximize": st.booleans(),
}).map(lambda h: {**h, "nesterov": False})
nesterov_hyper = st.fixed_dictionaries({
    "lr": st.sampled_from([1e-3, 0.05]), "momentum": st.sampled_from([0.5, 0.9]),
    "weight_decay": st.sampled_from([0.0, 0.01]), "maximize": st.booleans(), "nesterov": st.just(True)})
adam_hyper = st.fixed_dictionaries({
    "lr": st.sampled_from([1e-4, 1e-3, 1e-2]),
    "betas": st.sampled_from([(0.9, 0.999), (0.5, 0.9), (0.0, 0.99)]),
    "eps": st.sampled_from([1e-8, 1e-6, 1e-12]),
    "weight_decay": st.sampled_from([0.0, 1e-2, 0.5]),
    "amsgrad": st.booleans(),
    "maximize": st.booleans(),
})


@given(hyper=sgd_hyper | nesterov_hyper, seed=st.integers(0, 2**16))
def test_sgd_matches_torch_for_any_configuration(hyper, seed):
    gl.check_optimizer(optim.SGD, torch.optim.SGD, hyper=hyper, shapes=[(3, 2), (4,)], steps=120, seed=seed)


@given(hyper=adam_hyper, decoupled=st.booleans(), seed=st.integers(0, 2**16))
def test_adam_and_adamw_match_torch_for_any_configuration(hyper, decoupled, seed):
    np_cls, torch_cls = (optim.AdamW, torch.optim.AdamW) if decoupled else (optim.Adam, torch.optim.Adam)
    gl.check_optimizer(np_cls, torch_cls, hyper=hyper, shapes=[(3, 2), (4,)], steps=200, seed=seed)


def test_dtype_is_kept_and_gradients_are_not_modified():
    p = np.ones((3,), dtype=np.float32)
    g = np.array([1e-3, -2.0, 0.0], dtype=np.float32)
    g_before = g.copy()
    opt = optim.Adam([p], lr=0.1, weight_decay=0.1, maximize=True)
    opt.step([g])
    assert p.dtype == np.float32 and opt.state[0]["exp_avg"].dtype == np.float32
    np.testing.assert_array_equal(g, g_before)


def test_constructor_validation_mirrors_torch():
    with pytest.raises(ValueError):
        optim.SGD([np.ones(2)], lr=-1)
    with pytest.raises(ValueError, match="Nesterov"):
        optim.SGD([np.ones(2)], lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="beta"):
        optim.Adam([np.ones(2)], betas=(1.0, 0.999))
    with pytest.raises(TypeError):
        optim.Adam([np.ones(2, dtype=np.int64)])
    with pytest.raises(ValueError, match="gradients"):
        optim.Adam([np.ones(2)]).step([np.ones(2), np.ones(2)])


@pytest.mark.parametrize(("np_cls", "torch_cls", "hyper"), [
    (optim.SGD, torch.optim.SGD, {"lr": 0.05, "momentum": 0.9, "dampening": 0.1, "weight_decay": 0.01}),
    (optim.Adam, torch.optim.Adam, {"lr": 1e-2, "amsgrad": True, "weight_decay": 0.1}),
    (optim.AdamW, torch.optim.AdamW, {"lr": 1e-2}),
])
@pytest.mark.parametrize("direction", ["numpy->torch", "torch->numpy"])
def test_state_dict_resumes_on_the_other_side(np_cls, torch_cls, hyper, direction):
    shapes = [(3, 2), (4,)]
    grads = list(gl.gradient_sequence(shapes, 40, seed=3))
    start = [np.linspace(-1, 1, int(np.prod(s))).reshape(s) for s in shapes]

    # Uninterrupted reference run in torch.
    full = [torch.tensor(p.copy()) for p in start]
    full_opt = torch_cls(full, **hyper)
    for g in grads:
        for p, gi in zip(full, g, strict=True):
            p.grad = torch.tensor(gi)
        full_opt.step()

    # Twenty steps on one side, twenty on the other.
    np_params = [p.copy() for p in start]
    np_opt = np_cls(np_params, **hyper)
    t_params = [torch.tensor(p.copy()) for p in start]
    t_opt = torch_cls(t_params, **hyper)
    first, second = grads[:20], grads[20:]
    if direction == "numpy->torch":
        for g in first:
            np_opt.step(g)
        with torch.no_grad():
            for t, p in zip(t_params, np_params, strict=True):
                t.copy_(torch.tensor(p))
        t_opt.load_state_dict(torch_state_dict(np_opt.state_dict()))
        for g in second:
            for p, gi in zip(t_params, g, strict=True):
                p.grad = torch.tensor(gi)
            t_opt.step()
        final = [t.numpy() for t in t_params]
    else:
        for g in first:
            for p, gi in zip(t_params, g, strict=True):
                p.grad = torch.tensor(gi)
            t_opt.step()
        for p, t in zip(np_params, t_params, strict=True):
            p[...] = t.detach().numpy()
        np_opt.load_state_dict(t_opt.state_dict())
        for g in second:
            np_opt.step(g)
        final = np_params
    tol = trajectory_tolerance(torch.float64, 40)
    for got, want in zip(final, full, strict=True):
        assert compare(want.detach().numpy(), got, tol).passed


# --- planted mistakes: a first hand-written Adam or SGD, and where the harness catches each ---

class HandAdam:
    """A straightforward hand-written Adam; each ``bug`` flag plants one mistake people make."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False,
                 bug=None, decoupled=False):
        self.params, self.lr, self.betas, self.eps = params, lr, betas, eps
        self.wd, self.amsgrad = weight_decay, amsgrad
        self.bug, self.decoupled = bug, decoupled
        self.t = 0
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]
        self.vmax = [np.zeros_like(p) for p in params]

    def step(self, grads):
        b1, b2 = self.betas
        if self.bug == "betas swapped":
            b1, b2 = b2, b1
        if self.bug != "step per parameter":
            self.t += 1
        for i, (p, g) in enumerate(zip(self.params, grads, strict=True)):
            if self.bug == "state re-created every call":
                self.m[i], self.v[i], self.t = np.zeros_like(p), np.zeros_like(p), 1
            if self.bug == "step per parameter":
                self.t += 1
            g = np.asarray(g, dtype=p.dtype)
            if self.wd:
                if self.decoupled != (self.bug == "decay coupled wrongly"):
                    p *= 1 - self.lr * self.wd
                else:
                    g = g + self.wd * p
            self.m[i] = b1 * self.m[i] + (1 - b1) * g
            self.v[i] = b2 * self.v[i] + (1 - b2) * (g if self.bug == "first moment as second" else g * g)
            bc1, bc2 = 1 - b1**self.t, 1 - b2**self.t
            if self.bug == "no bias correction":
                bc1 = bc2 = 1.0
            v = self.v[i]
            if self.amsgrad:
                if self.bug == "amsgrad on corrected v":
                    self.vmax[i] = np.maximum(self.vmax[i], v / bc2)
                    v_hat = self.vmax[i]
                else:
                    self.vmax[i] = np.maximum(self.vmax[i], v)
                    v_hat = self.vmax[i] / bc2
            else:
                v_hat = v / bc2
            m_hat = self.m[i] / bc1
            if self.bug == "eps inside sqrt":
                update = m_hat / np.sqrt(v_hat + self.eps)
            elif self.bug == "epsilon hat":
                update = self.m[i] * np.sqrt(bc2) / bc1 / (np.sqrt(v) + self.eps)
            elif self.bug == "forgot sqrt":
                update = m_hat / (v_hat + self.eps)
            else:
                update = m_hat / (np.sqrt(v_hat) + self.eps)
            p -= self.lr * update


class HandSGD:
    """A hand-written SGD with momentum; ``bug`` plants one mistake."""

    def __init__(self, params, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False,
                 maximize=False, bug=None):
        self.params, self.lr, self.mu, self.tau, self.wd = params, lr, momentum, dampening, weight_decay
        self.nesterov, self.maximize, self.bug = nesterov, maximize, bug
        self.buf = [None] * len(params)

    def step(self, grads):
        for i, (p, g) in enumerate(zip(self.params, grads, strict=True)):
            d = -g if self.maximize and self.bug != "maximize after decay" else np.array(g)
            if self.wd and self.bug != "decay after momentum":
                d = d + self.wd * p
            if self.maximize and self.bug == "maximize after decay":
                d = -d
            if self.mu:
                if self.buf[i] is None:
                    self.buf[i] = (1 - self.tau) * d if self.bug == "dampening on first step" else d.copy()
                elif self.bug == "momentum as average":
                    self.buf[i] = self.mu * self.buf[i] + (1 - self.mu) * d
                else:
                    self.buf[i] = self.mu * self.buf[i] + (1 - self.tau) * d
                if self.nesterov and self.bug != "nesterov ignored":
                    d = d + self.mu * self.buf[i]
                else:
                    d = self.buf[i]
            if self.wd and self.bug == "decay after momentum":
                d = d + self.wd * p
            p -= self.lr * d


def _adam(bug, **fixed):
    class Planted(HandAdam):
        def __init__(self, params, **hyper):
            super().__init__(params, bug=bug, **fixed, **hyper)
    Planted.__name__ = f"HandAdam[{bug}]"
    return Planted


def _sgd(bug):
    class Planted(HandSGD):
        def __init__(self, params, **hyper):
            super().__init__(params, bug=bug, **hyper)
    Planted.__name__ = f"HandSGD[{bug}]"
    return Planted


ADAM_BUGS = {  # bug: (torch class, hyper, first diverging step)
    "state re-created every call": (torch.optim.Adam, {"lr": 1e-3}, 2),
    "no bias correction": (torch.optim.Adam, {"lr": 1e-3}, 1),
    "eps inside sqrt": (torch.optim.Adam, {"lr": 1e-3}, 1),
    "epsilon hat": (torch.optim.Adam, {"lr": 1e-3}, 1),
    "forgot sqrt": (torch.optim.Adam, {"lr": 1e-3}, 1),
    "betas swapped": (torch.optim.Adam, {"lr": 1e-3}, 2),  # bias correction hides it on step 1
    "step per parameter": (torch.optim.Adam, {"lr": 1e-3}, 1),
    "first moment as second": (torch.optim.Adam, {"lr": 1e-3}, 1),
    "amsgrad on corrected v": (torch.optim.Adam, {"lr": 1e-3, "amsgrad": True}, 2),
    "decay coupled wrongly": (torch.optim.Adam, {"lr": 1e-2, "weight_decay": 0.1}, 1),
}
SGD_BUGS = {
    "dampening on first step": ({"lr": 0.1, "momentum": 0.9, "dampening": 0.5}, 1),
    "momentum as average": ({"lr": 0.1, "momentum": 0.9}, 2),
    "nesterov ignored": ({"lr": 0.1, "momentum": 0.9, "nesterov": True}, 1),
    "decay after momentum": ({"lr": 0.1, "momentum": 0.9, "weight_decay": 0.1}, 2),
    "maximize after decay": ({"lr": 0.1, "weight_decay": 0.1, "maximize": True}, 1),
}


def test_the_hand_written_optimizers_are_right_without_a_bug():
    gl.check_optimizer(_adam(None), torch.optim.Adam, hyper={"lr": 1e-3, "amsgrad": True}, steps=100)
    gl.check_optimizer(_adam(None, decoupled=True), torch.optim.AdamW, hyper={"lr": 1e-2, "weight_decay": 0.1})
    gl.check_optimizer(_sgd(None), torch.optim.SGD,
                       hyper={"lr": 0.1, "momentum": 0.9, "dampening": 0.5, "weight_decay": 0.1, "maximize": True})


@pytest.mark.parametrize("bug", sorted(ADAM_BUGS))
def test_planted_adam_bug_is_caught_at_its_first_diverging_step(bug, dtype):
    torch_cls, hyper, first_step = ADAM_BUGS[bug]
    with pytest.raises(gl.OptimizerMismatch) as info:
        gl.check_optimizer(_adam(bug), torch_cls, hyper=hyper, steps=50, dtype=dtype)
    assert info.value.step == first_step, str(info.value)
    assert f"step {first_step}" in str(info.value)


@pytest.mark.parametrize("low", ["float16", "bfloat16"])
def test_planted_bugs_are_caught_below_float32_by_the_float32_math_run(low):
    """A parameter rounds to 2^-11 (float16) or 2^-8 (bfloat16) of itself each step, below what a
    bias correction a step late or eps inside the square root change: the float32 run catches them."""
    for bug, (torch_cls, hyper, first_step) in ADAM_BUGS.items():
        with pytest.raises(gl.OptimizerMismatch, match=r"\(float32 math\)") as info:
            gl.check_optimizer(_adam(bug), torch_cls, hyper=hyper, steps=50, dtype=low)
        assert info.value.step == first_step, (bug, str(info.value))
    for bug, (hyper, first_step) in SGD_BUGS.items():
        with pytest.raises(gl.OptimizerMismatch, match=r"\(float32 math\)") as info:
            gl.check_optimizer(_sgd(bug), torch.optim.SGD, hyper=hyper, steps=30, dtype=low)
        assert info.value.step == first_step, (bug, str(info.value))
    report = gl.check_optimizer(_adam(None), torch.optim.Adam, hyper={"lr": 1e-3, "eps": 1e-4, "amsgrad": True},
                                dtype=low)
    assert report.passed and report.dtype == low  # the run in the dtype itself passed too


@pytest.mark.parametrize("steps", [50, 300])
def test_float16_gradients_keep_accumulators_finite(steps):
    """Gradients of 1e2 squared and summed (Adagrad) overflowed float16 within seven steps on both sides."""
    from gradcheck_lab.optim.trajectory import largest_gradient

    assert largest_gradient(torch.float16, steps) < 1e2 and largest_gradient(torch.bfloat16, steps) == 1e2
    report = gl.check_optimizer(optim.Adagrad, torch.optim.Adagrad, hyper={"lr": 1e-2, "eps": 1e-3},
                                dtype="float16", steps=steps)
    assert report.passed


def test_a_configuration_that_is_not_finite_in_float16_says_so():
    """eps = 1e-8 rounds to 0 in float16: both sides divide 0 by 0 where a gradient is zero."""
    with np.errstate(divide="ignore", invalid="ignore"), \
            pytest.raises(gl.OptimizerMismatch, match=r"is not finite there either.*rounds to 0"):
        gl.check_optimizer(_adam(None), torch.optim.Adam, hyper={"lr": 1e-3}, dtype="float16")


def test_adamw_decay_applied_as_l2_is_caught():
    with pytest.raises(gl.OptimizerMismatch) as info:
        gl.check_optimizer(_adam("decay coupled wrongly", decoupled=True), torch.optim.AdamW,
                           hyper={"lr": 1e-2, "weight_decay": 0.1})
    assert info.value.step == 1


@pytest.mark.parametrize("bug", sorted(SGD_BUGS))
def test_planted_sgd_bug_is_caught_at_its_first_diverging_step(bug, dtype):
    hyper, first_step = SGD_BUGS[bug]
    with pytest.raises(gl.OptimizerMismatch) as info:
        gl.check_optimizer(_sgd(bug), torch.optim.SGD, hyper=hyper, steps=30, dtype=dtype)
    assert info.value.step == first_step, str(info.value)


def test_eps_placement_is_invisible_with_unit_gradients_but_caught_with_small_ones():
    """The variants agree to ~1e-6 on unit gradients: only the small-gradient regime exposes them."""
    p = [np.ones(4)]
    q = [torch.ones(4, dtype=torch.float64)]
    right, hat = optim.Adam([p[0].copy()], lr=1e-3), _adam("epsilon hat")([p[0].copy()], lr=1e-3)
    t_opt = torch.optim.Adam(q, lr=1e-3)
    for _ in range(20):
        g = np.array([1.0, -0.5, 2.0, 0.7])
        right.step([g])
        hat.step([g])
    assert np.max(np.abs(right.params[0] - hat.params[0])) < 1e-8
    with pytest.raises(gl.OptimizerMismatch):
        gl.check_optimizer(_adam("epsilon hat"), torch.optim.Adam, hyper={"lr": 1e-3}, shapes=[(8,)])
    del t_opt


def test_mismatch_names_parameter_entry_and_elements():
    with pytest.raises(gl.OptimizerMismatch) as info:
        gl.check_optimizer(_adam("step per parameter"), torch.optim.Adam, hyper={"lr": 1e-3},
                           shapes=[(2, 2), (3,)])
    err = info.value
    assert err.step == 1 and err.param == 1 and err.entry == "param"
    message = str(err)
    assert message.startswith("optimizer diverges at step 1 on cpu/float64: parameter 1 (shape (3,))")
    assert "worst element" in message and "reference " in message and "torch " in message
    assert "expected" not in message  # "reference" is the user's, "torch" torch's: no third word
    assert err.report.verdict == "mismatch" and not err.report.passed and err.report.worst_step == 1


def test_state_entries_of_the_reference_are_compared():
    class ForgetsAmsgradMax(optim.Adam):
        def step(self, grads):
            super().step(grads)
            for s in self.state.values():
                s["max_exp_avg_sq"] = s["exp_avg_sq"].copy() * 0  # state corrupted, params right this step

    with pytest.raises(gl.OptimizerMismatch) as info:
        gl.check_optimizer(ForgetsAmsgradMax, torch.optim.Adam, hyper={"lr": 1e-3, "amsgrad": True})
    assert info.value.step == 1 and info.value.entry == "max_exp_avg_sq"


def test_cache_blocked_adam_matches_torch_on_large_and_non_contiguous_params():
    from gradcheck_lab.reference import optim_blocks

    rng = np.random.default_rng(0)
    base = rng.standard_normal((40_000, 2))
    strided = base[:, 0]  # not contiguous: updated whole, through the view
    size = 2 * optim_blocks.BLOCK + 7
    large = rng.standard_normal(size)  # contiguous: updated block by block, the last one partial
    np_opt = optim.Adam([strided, large], lr=1e-2, amsgrad=True)
    t_params = [torch.tensor(strided.copy()), torch.tensor(large.copy())]
    t_opt = torch.optim.Adam(t_params, lr=1e-2, amsgrad=True)
    for _ in range(5):
        grads = [rng.standard_normal(40_000), rng.standard_normal(size) * 1e-6]
        np_opt.step(grads)
        for p, g in zip(t_params, grads, strict=True):
            p.grad = torch.tensor(g)
        t_opt.step()
    tol = trajectory_tolerance(torch.float64, 5)
    assert compare(t_params[0].numpy(), base[:, 0], tol).passed
    assert compare(t_params[1].numpy(), large, tol).passed


def test_teacher_forcing_keeps_right_optimizers_agreeing_where_feedback_amplifies_rounding():
    """Adam with L2 decay and eps-sized gradients: free-running trajectories of two right
    implementations drift (the decay feeds parameters back through 1/sqrt(v)); per-step checks agree."""
    hyper = {"lr": 0.01, "betas": (0.5, 0.9), "weight_decay": 0.5}
    report = gl.check_optimizer(optim.Adam, torch.optim.Adam, hyper=hyper, shapes=[(3, 2), (4,)], steps=200,
                                seed=702)
    assert report.passed
    with pytest.raises(gl.OptimizerMismatch):
        gl.check_optimizer(optim.Adam, torch.optim.Adam, hyper=hyper, shapes=[(3, 2), (4,)], steps=200, seed=702,
                           free_running=True)


@pytest.mark.parametrize("bug", ["eps inside sqrt", "state re-created every call", "no bias correction"])
def test_free_running_mode_catches_planted_bugs_too(bug):
    torch_cls, hyper, first_step = ADAM_BUGS[bug]
    with pytest.raises(gl.OptimizerMismatch) as info:
        gl.check_optimizer(_adam(bug), torch_cls, hyper=hyper, steps=50, free_running=True)
    assert info.value.step == first_step


class RebindingSGD:
    """A hand-written style that rebinds ``self.params[i]`` instead of updating in place."""

    def __init__(self, params, lr, momentum=0.0, scale=1.0):
        self.params, self.lr, self.mu, self.scale, self.buf = params, lr, momentum, scale, {}

    def step(self, grads):
        for i, g in enumerate(grads):
            self.buf[i] = g.copy() if i not in self.buf else self.mu * self.buf[i] + g
            self.params[i] = self.params[i] - self.lr * self.scale * self.buf[i]


def test_an_optimizer_that_rebinds_its_params_list_is_read_from_it():
    assert gl.check_optimizer(RebindingSGD, torch.optim.SGD, hyper={"lr": 0.1, "momentum": 0.9}).passed
    with pytest.raises(gl.OptimizerMismatch) as info:
        gl.check_optimizer(lambda params, **h: RebindingSGD(params, scale=1.01, **h), torch.optim.SGD,
                           hyper={"lr": 0.1, "momentum": 0.9})
    assert info.value.step == 1
