r"""Running the two sides of :func:`~gradcheck_lab.gradients.torch_function.check_torch_function`.

One run calls a torch callable on fresh tensors made from the dtype-rounded inputs, drives its backward with
the upstream gradient :math:`g` and returns, in float64 on the CPU, every tensor the check judges:

- order 1: the output, then :math:`J_k^\top g` for each non-constant input :math:`x_k`;
- order 2, also: the gradient of :math:`s = \sum_k \langle J_k^\top g, v_k\rangle` (fixed vectors :math:`v_k`)
  with respect to each non-constant input and to :math:`g`: what the double backward computes, the job of
  ``torch.autograd.gradgradcheck``.

The candidate's side also enforces its contract, with a :class:`~gradcheck_lab.errors.CandidateContractError`:
an output with no ``grad_fn`` (not differentiable), an output of another shape or on another device than the
reference's, and a custom ``torch.autograd.Function`` whose ``backward`` returns a gradient of the wrong dtype,
shape or device. torch casts a wrongly typed gradient silently and sums a broadcastable one, so that backward is
called directly (in a pre-hook, on the same incoming gradients) and its raw results compared with what each
input expects.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch.autograd.function import BackwardCFunction

from gradcheck_lab.errors import CandidateContractError, TorchFunctionError

Role = Literal["candidate", "reference"]
TorchCallable = Callable[..., Any]

_MAX_NODES = 100_000


@dataclass(frozen=True)
class Plan:
    """What every run of a check shares: the inputs' names, which are data, the order and the device."""

    names: list[str]
    fixed: frozenset[int]
    order: int
    device: torch.device

    @property
    def variables(self) -> list[int]:
        return [k for k in range(len(self.names)) if k not in self.fixed]

    def labels(self) -> list[str]:
        """The judged tensors' names, in the order :func:`run` returns them."""
        first = [f"the gradient of {self.names[k]}" for k in self.variables]
        if self.order == 1:
            return ["the output", *first]
        second = [f"the double backward, d<grads, v>/d {self.names[k]}" for k in self.variables]
        return ["the output", *first, *second, "the double backward, d<grads, v>/d grad_output"]


def leaves(inputs: Sequence[np.ndarray], plan: Plan, dtype: torch.dtype, device: torch.device) -> list[torch.Tensor]:
    """Fresh tensors: the non-constant inputs require grad; integer data keeps its dtype."""
    out = []
    for k, x in enumerate(inputs):
        if k in plan.fixed and x.dtype.kind in "iub":
            out.append(torch.tensor(x, device=device))
        else:
            out.append(torch.tensor(x, dtype=dtype, device=device, requires_grad=k not in plan.fixed))
    return out


def forward(fn: TorchCallable, role: Role, tensors: list[torch.Tensor]) -> torch.Tensor:
    """Call ``fn`` and check it returned one differentiable tensor."""
    __tracebackhide__ = True
    error = CandidateContractError if role == "candidate" else TorchFunctionError
    if role == "reference":
        try:
            out = fn(*tensors)
        except RuntimeError as exc:  # an op without a kernel for this dtype or device
            first = next((t for t in tensors if t.is_floating_point()), tensors[0])
            where = f"{str(first.dtype).removeprefix('torch.')} on {first.device}"
            raise TorchFunctionError(f"the reference cannot run in {where}: {exc}") from exc
    else:
        out = fn(*tensors)
    if not isinstance(out, torch.Tensor):
        raise error(f"the {role} must return one tensor, got {type(out).__name__}: return the output tensor "
                    "(a loss, or an activation of any shape)")
    if not out.requires_grad or out.grad_fn is None:
        raise error(f"the {role}'s output is not differentiable (requires_grad is False, no grad_fn): it was "
                    "computed under torch.no_grad(), detached, or through .data / .numpy(); a custom "
                    "autograd.Function must be called through its .apply")
    return out


def differentiate(out: torch.Tensor, tensors: list[torch.Tensor], plan: Plan, role: Role,
                  grad_output: np.ndarray, vectors: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The output and the gradients the check judges (see the module docstring), in float64 on the CPU."""
    __tracebackhide__ = True
    error = CandidateContractError if role == "candidate" else TorchFunctionError
    inputs = [tensors[k] for k in plan.variables]
    problems = watch_backwards(out, {id(t): plan.names[k] for k, t in zip(plan.variables, inputs, strict=True)})
    g = torch.tensor(grad_output, dtype=out.dtype, device=out.device, requires_grad=plan.order == 2)
    try:
        grads = torch.autograd.grad(out, inputs, g, allow_unused=True, create_graph=plan.order == 2)
    except RuntimeError as exc:
        _raise_contract(problems, role)
        raise error(f"the {role}'s backward failed: {exc}") from exc
    _raise_contract(problems, role)
    first = [_first_order(grad, x, name, role, plan.device) for grad, x, name in
             zip(grads, inputs, [plan.names[k] for k in plan.variables], strict=True)]
    results = [_numpy(out), *(_numpy(f) for f in first)]
    if plan.order == 1:
        return results
    if not any(grad is not None and grad.requires_grad for grad in grads):
        raise error(f"the {role}'s backward is not differentiable (its gradients have no grad_fn), so its double "
                    "backward cannot be checked: write backward with differentiable torch ops on tensors saved "
                    "with ctx.save_for_backward (not under no_grad, not @once_differentiable)")
    if any(grad is not None and _reaches_error_node(grad) for grad in grads):
        raise error(f"the {role}'s backward is marked @once_differentiable, so its double backward cannot be "
                    "checked: drop the decorator and write backward with differentiable torch ops")
    s = sum((grad * torch.tensor(v, dtype=grad.dtype, device=grad.device)).sum()
            for grad, v in zip(grads, vectors, strict=True) if grad is not None and grad.requires_grad)
    assert isinstance(s, torch.Tensor)
    problems = watch_backwards(s, {id(t): plan.names[k] for k, t in zip(plan.variables, inputs, strict=True)})
    try:
        second = torch.autograd.grad(s, [*inputs, g], allow_unused=True)
    except RuntimeError as exc:
        _raise_contract(problems, role)
        raise error(f"the {role}'s double backward failed: {exc}") from exc
    _raise_contract(problems, role)
    return results + [_numpy(torch.zeros_like(t) if d is None else d) for d, t in zip(second, [*inputs, g],
                                                                                       strict=True)]


def _reaches_error_node(t: torch.Tensor) -> bool:
    """Whether ``t``'s graph holds the node ``@once_differentiable`` plants (differentiating it would fail, but
    autograd skips it silently when it has no inputs to reach, giving None instead of an error)."""
    return any(type(node).__name__ in ("Error", "DelayedError") for node in _graph_nodes(t))


def _graph_nodes(t: torch.Tensor) -> Iterator[Any]:
    """Each node of ``t``'s autograd graph once (depth first), at most ``_MAX_NODES`` of them."""
    seen: set[int] = set()
    stack = [t.grad_fn]
    while stack and len(seen) < _MAX_NODES:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        yield node
        stack.extend(n for n, _ in node.next_functions)


def _first_order(grad: torch.Tensor | None, x: torch.Tensor, name: str, role: Role,
                 device: torch.device) -> torch.Tensor:
    """A first-order gradient after checking it; None (no gradient flowed) counts as zeros for the candidate."""
    __tracebackhide__ = True
    if grad is None:
        if role == "reference":
            raise TorchFunctionError(f"the reference does not depend on {name}: autograd gave it no gradient (if it "
                                     "is data, such as labels or a mask, pass its index in constants=)")
        return torch.zeros_like(x)
    error = CandidateContractError if role == "candidate" else TorchFunctionError
    if grad.dtype != x.dtype or tuple(grad.shape) != tuple(x.shape) or grad.device != x.device:
        raise error(f"the {role}'s gradient of {name} is {_describe(grad)}, the input is {_describe(x)}")
    return grad


def _describe(t: torch.Tensor) -> str:
    return f"{str(t.dtype).removeprefix('torch.')} {tuple(t.shape)} on {t.device}"


def _numpy(t: torch.Tensor) -> np.ndarray:
    return np.asarray(t.detach().to("cpu", torch.float64).numpy())


def _raise_contract(problems: list[str], role: Role) -> None:
    __tracebackhide__ = True
    if problems:
        error = CandidateContractError if role == "candidate" else TorchFunctionError
        raise error(f"the {role}'s backward breaks autograd's contract (torch would cast or sum it silently, or "
                    f"fail): {problems[0]}" + (f"; and {len(problems) - 1} more" if len(problems) > 1 else "")
                    + ": return one gradient per forward input, with that input's dtype, shape and device")


def watch_backwards(out: torch.Tensor, leaf_names: dict[int, str]) -> list[str]:
    """Check the raw results of every user-written ``autograd.Function.backward`` in ``out``'s graph.

    Returns the list the problems are appended to while autograd runs (empty when all is well).
    torch's own nodes (``torch.*`` Functions, ``torch.compile``'s) are left alone.
    """
    problems: list[str] = []
    for node in _graph_nodes(out):
        if isinstance(node, BackwardCFunction) and _user_written(node):
            node.register_prehook(functools.partial(_inspect, node, leaf_names, problems))
    return problems


def _user_written(node: Any) -> bool:
    module = getattr(getattr(node, "_forward_cls", None), "__module__", "torch.") or "torch."
    return not module.startswith("torch.")


def _inspect(node: Any, leaf_names: dict[int, str], problems: list[str], grad_outputs: tuple[Any, ...]) -> None:
    """A pre-hook: call the node's backward on its incoming gradients and compare each result with its input."""
    if any(g is None for g in grad_outputs):
        return  # the engine materializes these; calling backward with None could fail for no fault of its own
    try:
        with torch.no_grad():
            raw = node.apply(*grad_outputs)
    except Exception:  # the engine's own call reports it
        return
    raw = raw if isinstance(raw, tuple) else (raw,)
    needs = list(node.needs_input_grad)
    edges = [(k, e) for k, e in enumerate(node.next_functions) if e[0] is not None]
    returned = [r for r, need in zip(raw, needs, strict=False) if need]
    owner = node._forward_cls.__name__
    if len(raw) < len(needs):
        problems.append(f"{owner}.backward returned {len(raw)} value(s) for {len(needs)} forward input(s)")
        return
    for (position, (next_node, slot)), grad in zip(edges, returned, strict=False):
        if grad is None:
            continue
        where = leaf_names.get(id(getattr(next_node, "variable", None)), f"input {position} of {owner}.forward")
        if not isinstance(grad, torch.Tensor):
            problems.append(f"{owner}.backward returned a {type(grad).__name__} as the gradient of {where}")
            continue
        try:
            meta = next_node._input_metadata[slot]
        except (AttributeError, IndexError):
            continue
        expected = (str(meta.dtype).removeprefix("torch."), tuple(meta.shape), str(meta.device))
        got = (str(grad.dtype).removeprefix("torch."), tuple(grad.shape), str(grad.device))
        if got != expected:
            what = [w for w, a, b in zip(("dtype", "shape", "device"), got, expected, strict=True) if a != b]
            problems.append(f"{owner}.backward returns the gradient of {where} with {' and '.join(what)} "
                            f"{', '.join(str(a) for a, b in zip(got, expected, strict=True) if a != b)} where the "
                            f"input has {', '.join(str(b) for a, b in zip(got, expected, strict=True) if a != b)}")
