"""The catalogue of optimizer cases: every torch.optim rule against the NumPy references, with parameter groups,
learning-rate schedulers, ``None`` gradients and state-dict swaps; registered when the registry is imported."""

from __future__ import annotations

from typing import Any

import torch

from gradcheck_lab.cases.registry import OptimizerCase, register_optimizer
from gradcheck_lab.optim.sides import Schedule
from gradcheck_lab.reference import lr_scheduler as ref_sched
from gradcheck_lab.reference import optim as ref_optim


def _optimizer_cases() -> list[OptimizerCase]:
    sgd = [
        ("sgd", {"lr": 0.1}),
        ("sgd_momentum", {"lr": 0.05, "momentum": 0.9}),
        ("sgd_momentum_dampening_wd", {"lr": 0.05, "momentum": 0.9, "dampening": 0.3, "weight_decay": 0.01}),
        ("sgd_nesterov_maximize", {"lr": 0.05, "momentum": 0.8, "nesterov": True, "maximize": True}),
    ]
    adam: list[tuple[str, type, type, dict[str, Any]]] = [
        ("adam", ref_optim.Adam, torch.optim.Adam, {"lr": 1e-3}),
        ("adam_amsgrad_wd", ref_optim.Adam, torch.optim.Adam, {"lr": 1e-2, "amsgrad": True, "weight_decay": 0.1}),
        ("adam_maximize_betas", ref_optim.Adam, torch.optim.Adam,
         {"lr": 3e-3, "betas": (0.5, 0.9), "eps": 1e-6, "maximize": True}),
        ("adamw", ref_optim.AdamW, torch.optim.AdamW, {"lr": 1e-3}),
        ("adamw_amsgrad", ref_optim.AdamW, torch.optim.AdamW, {"lr": 1e-2, "amsgrad": True, "weight_decay": 0.1}),
    ]
    return ([OptimizerCase(name, ref_optim.SGD, torch.optim.SGD, hyper, description=f"SGD {hyper}")
             for name, hyper in sgd]
            + [OptimizerCase(name, np_cls, t_cls, hyper, description=f"{t_cls.__name__} {hyper}")
               for name, np_cls, t_cls, hyper in adam])


for _opt_case in _optimizer_cases():
    register_optimizer(_opt_case)


# --- optimizer matrix cases (issue 10): every torch.optim rule, groups, schedulers ---

_HALF = ("float64", "float32", "float16", "bfloat16")


def _schedule(name: str, **kwargs: Any) -> Schedule:
    torch_kwargs = {"cycle_momentum": False} if name == "OneCycleLR" else {}
    return Schedule(getattr(ref_sched, name), getattr(torch.optim.lr_scheduler, name), kwargs, torch_kwargs)


def _half_life(step: int) -> float:
    return float(0.5 ** (step / 20))


def _matrix_cases() -> list[OptimizerCase]:
    o, t = ref_optim, torch.optim
    plain: list[tuple[str, type, type, dict[str, Any], tuple[str, ...]]] = [  # name, classes, hyper, dtypes
        ("rmsprop", o.RMSprop, t.RMSprop, {"lr": 1e-2}, ("float64", "float32")),
        ("rmsprop_centered_momentum_wd", o.RMSprop, t.RMSprop,
         {"lr": 1e-3, "alpha": 0.9, "centered": True, "momentum": 0.9, "weight_decay": 0.1, "maximize": True},
         ("float64", "float32")),
        ("adagrad", o.Adagrad, t.Adagrad, {"lr": 1e-2}, ("float64", "float32")),
        ("adagrad_lr_decay_init_acc_wd", o.Adagrad, t.Adagrad,
         {"lr": 0.1, "lr_decay": 0.05, "initial_accumulator_value": 0.1, "weight_decay": 0.1, "eps": 1e-6},
         ("float64", "float32")),
        ("adadelta", o.Adadelta, t.Adadelta, {}, ("float64", "float32")),
        ("adadelta_rho_wd_maximize", o.Adadelta, t.Adadelta,
         {"lr": 0.5, "rho": 0.8, "eps": 1e-4, "weight_decay": 0.1, "maximize": True}, _HALF),
        ("adamax", o.Adamax, t.Adamax, {}, ("float64", "float32")),
        ("adamax_betas_wd", o.Adamax, t.Adamax, {"lr": 1e-2, "betas": (0.5, 0.9), "weight_decay": 0.1},
         ("float64", "float32")),
        ("nadam", o.NAdam, t.NAdam, {}, ("float64", "float32")),
        ("nadam_decoupled_momentum_decay", o.NAdam, t.NAdam,
         {"lr": 1e-2, "momentum_decay": 0.02, "weight_decay": 0.1, "decoupled_weight_decay": True},
         ("float64", "float32")),
        ("nadam_l2_maximize", o.NAdam, t.NAdam, {"lr": 1e-2, "weight_decay": 0.1, "maximize": True},
         ("float64", "float32")),
        ("radam", o.RAdam, t.RAdam, {}, ("float64", "float32")),
        ("radam_decoupled_short_horizon", o.RAdam, t.RAdam,  # beta2 0.9: rectification starts at step 6
         {"lr": 1e-2, "betas": (0.8, 0.9), "weight_decay": 0.1, "decoupled_weight_decay": True},
         ("float64", "float32")),
        ("adam_decoupled_flag", o.Adam, t.Adam, {"lr": 1e-2, "weight_decay": 0.1, "decoupled_weight_decay": True},
         ("float64", "float32")),
    ]
    cases = [OptimizerCase(name, np_cls, t_cls, hyper, dtypes=dtypes, steps=60, description=f"{t_cls.__name__} {hyper}")
             for name, np_cls, t_cls, hyper, dtypes in plain]
    groups = ({"params": [0], "lr": 3e-2, "weight_decay": 0.1}, {"params": [1, 2]})
    # (name, numpy class, torch class, hyper, first group's own options, schedule, dtypes)
    matrix: list[tuple[str, type, type, dict[str, Any], dict[str, Any], Schedule, tuple[str, ...]]] = [
        ("sgd_groups_steplr", o.SGD, t.SGD, {"lr": 0.05, "momentum": 0.9},
         {"nesterov": True}, _schedule("StepLR", step_size=7, gamma=0.5), _HALF),
        ("adam_groups_cosine", o.Adam, t.Adam, {"lr": 1e-3, "eps": 1e-3},
         {"amsgrad": True}, _schedule("CosineAnnealingLR", T_max=25, eta_min=1e-4), _HALF),
        ("adamw_groups_onecycle", o.AdamW, t.AdamW, {"lr": 1e-3},
         {}, _schedule("OneCycleLR", max_lr=[5e-2, 1e-2], total_steps=70), ("float64", "float32")),
        ("rmsprop_groups_exponential", o.RMSprop, t.RMSprop, {"lr": 1e-3, "eps": 1e-3},
         {"centered": True, "momentum": 0.5}, _schedule("ExponentialLR", gamma=0.97), _HALF),
        ("adagrad_groups_multistep", o.Adagrad, t.Adagrad, {"lr": 1e-2},
         {"lr_decay": 0.01}, _schedule("MultiStepLR", milestones=[5, 20, 20], gamma=0.5), ("float64", "float32")),
        ("adadelta_groups_lambda", o.Adadelta, t.Adadelta, {"lr": 1.0},
         {"rho": 0.5}, _schedule("LambdaLR", lr_lambda=_half_life), ("float64", "float32")),
        ("adamax_groups_linear", o.Adamax, t.Adamax, {"lr": 2e-3, "eps": 1e-3},
         {"betas": (0.5, 0.99)}, _schedule("LinearLR", start_factor=0.25, total_iters=30), _HALF),
        ("nadam_groups_cosine", o.NAdam, t.NAdam, {"lr": 2e-3, "eps": 1e-3},
         {"momentum_decay": 0.02}, _schedule("CosineAnnealingLR", T_max=15), _HALF),
        ("radam_groups_linear", o.RAdam, t.RAdam, {"lr": 1e-3, "eps": 1e-3},
         {"betas": (0.8, 0.9), "decoupled_weight_decay": True}, _schedule("LinearLR", total_iters=10), _HALF),
    ]
    for name, np_cls, t_cls, hyper, own, schedule, dtypes in matrix:
        case_groups = ({**groups[0], **own}, groups[1])
        cases.append(OptimizerCase(
            name, np_cls, t_cls, hyper, dtypes=dtypes, steps=60, param_groups=case_groups, scheduler=schedule,
            none_grads=True, swap_state_at=25,
            description=f"{t_cls.__name__} {hyper}, groups {own}, {schedule.torch_cls.__name__}, None grads, "
                        "state swapped after step 25"))
    return cases


for _opt_case in _matrix_cases():
    register_optimizer(_opt_case)
