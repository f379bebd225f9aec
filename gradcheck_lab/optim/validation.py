"""The optimizer checks' own argument checks: a torch optimizer class, the user's side, hyperparameter names.

Each raises :class:`~gradcheck_lab.errors.InvalidInputError` naming the argument and the fix, before any work
(the generic checks, shapes, steps, tolerances, are :mod:`gradcheck_lab.core.arguments`').
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Mapping
from typing import Any

import torch

from gradcheck_lab.core import arguments
from gradcheck_lab.errors import InvalidInputError


def _is_torch_optimizer(value: Any) -> bool:
    return isinstance(value, type) and issubclass(value, torch.optim.Optimizer)


def torch_optimizer_class(name: str, value: Any) -> type[torch.optim.Optimizer]:
    """A ``torch.optim.Optimizer`` subclass (``torch.optim.Adam``), not an instance or the user's class."""
    __tracebackhide__ = True
    if _is_torch_optimizer(value):
        return value  # type: ignore[no-any-return]
    if isinstance(value, torch.optim.Optimizer):
        raise InvalidInputError(f"{name} must be a torch.optim class, got an instance of {type(value).__name__}: "
                                f"pass the class itself, {name}=torch.optim.{type(value).__name__}")
    what = value.__name__ if isinstance(value, type) else f"{type(value).__name__} {value!r:.60}"
    raise InvalidInputError(f"{name} must be a torch.optim.Optimizer class such as torch.optim.Adam, got {what}: "
                            "the arguments are (your implementation, the torch.optim class it implements)")


def reference_optimizer(name: str, value: Any, what: str) -> Callable[..., Any]:
    """The user's side: a callable (a class or a factory) that is not itself a torch optimizer."""
    __tracebackhide__ = True
    if _is_torch_optimizer(value):
        raise InvalidInputError(f"{name} is torch's {value.__name__}: the first argument is your implementation "
                                f"({what}), the second the torch.optim class it implements")
    return arguments.callable_argument(name, value, what)


def _accepted(torch_optimizer: type) -> list[str] | None:
    """The keyword arguments ``torch_optimizer(params, ...)`` accepts; None when it takes ``**kwargs``."""
    try:
        signature = inspect.signature(torch_optimizer)
    except (TypeError, ValueError):
        return None
    names = []
    for parameter in list(signature.parameters.values())[1:]:  # params
        if parameter.kind is inspect.Parameter.VAR_KEYWORD:
            return None
        if parameter.kind is not inspect.Parameter.VAR_POSITIONAL:
            names.append(parameter.name)
    return names


def hyperparameters(name: str, value: Any, torch_optimizer: type, *, extra: tuple[str, ...] = ()) -> dict[str, Any]:
    """A dict of hyperparameters ``torch_optimizer`` takes (``extra``: names allowed besides); a name it does not
    take is a typo, told with the close match and the names it takes."""
    __tracebackhide__ = True
    hyper = arguments.mapping(name, value)
    accepted = _accepted(torch_optimizer)
    if accepted is None:
        return hyper
    for key in hyper:
        if key in accepted or key in extra:
            continue
        close = difflib.get_close_matches(key, [*accepted, *extra], n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise InvalidInputError(f"{name} has {key!r}, which torch.optim.{torch_optimizer.__name__} does not take: "
                                f"{hint}it takes {', '.join(accepted)}")
    return hyper


def accepted_by_torch(name: str, hyper: Mapping[str, Any], torch_optimizer: type) -> None:
    """torch's own validation of the values (``lr=-1``, ``betas=(1.0, 0.9)``), on one float64 CPU tensor."""
    __tracebackhide__ = True
    try:
        torch_optimizer([torch.zeros(1, dtype=torch.float64, requires_grad=True)], **hyper)
    except (ValueError, TypeError, RuntimeError) as exc:
        raise InvalidInputError(f"{name}: torch.optim.{torch_optimizer.__name__} rejects {dict(hyper)!r:.200}: "
                                f"{exc}") from None


def group_options(name: str, groups: Any, n: int, torch_optimizer: type) -> list[dict[str, Any]] | None:
    """Parameter groups by index that list every parameter ``0..n-1`` once, in order, with options torch takes."""
    __tracebackhide__ = True
    if groups is None:
        return None
    if not isinstance(groups, list | tuple) or not all(isinstance(g, Mapping) and "params" in g for g in groups):
        raise InvalidInputError(f"{name} must be a list of dicts with 'params' (parameter indices), such as "
                                f"[{{'params': [0], 'lr': 0.1}}, {{'params': [1]}}], got {groups!r:.120}")
    order = [int(i) for g in groups for i in g["params"]]
    if order != list(range(n)) or any(not g["params"] for g in groups):
        raise InvalidInputError(f"{name} must split the parameters 0..{n - 1} in order into non-empty "
                                f"groups, got {[list(g['params']) for g in groups]}")
    checked = []
    for k, g in enumerate(groups):
        options = hyperparameters(f"{name}[{k}]", {key: v for key, v in g.items() if key != "params"}, torch_optimizer)
        checked.append({**options, "params": list(g["params"])})
    return checked
