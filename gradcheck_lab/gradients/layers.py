r"""``check_layer``: a layer object (``forward``, ``backward``, parameter gradients) against a ``torch.nn.Module``.

The torch module's parameters become inputs of :func:`~gradcheck_lab.gradients.vjp.check_vjp`: each call copies
them into a fresh copy of the layer (by attribute, or ``"mapping.key"`` path, through an optional
layout transform), runs ``layer.forward(*inputs)`` and ``layer.backward(grad_output)``, and reads the
parameter gradients back. A layout transform :math:`T` (a transpose, a reshape) is linear, so the
gradient in torch's layout is its adjoint applied to the layer's: :math:`\nabla_p = T^\top \nabla_{T p}`,
computed by sending element indices through :math:`T`.

A module with floating buffers (batch norm's running statistics) is compared once more after one
training-mode forward on both sides, from the same starting buffers.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from gradcheck_lab.core.arguments import call_style
from gradcheck_lab.core.comparison import compare
from gradcheck_lab.core.dtypes import float64_array, resolve_dtype
from gradcheck_lab.core.report import Report, comparison_lines
from gradcheck_lab.core.tolerances import gradient_tolerance
from gradcheck_lab.errors import GradientMismatch, InvalidInputError, ReferenceContractError, TorchFunctionError
from gradcheck_lab.gradients.inputs import constant_indices, parameter_names, prepare_inputs
from gradcheck_lab.gradients.layer_paths import (
    Path,
    Transform,
    adjoint,
    get_path,
    guess_grad_paths,
    has_path,
    set_path,
)
from gradcheck_lab.gradients.vjp import as_grads, check_vjp, checked_inputs, is_static


def _module_for(module: torch.nn.Module, cache: dict[Any, torch.nn.Module], like: torch.Tensor) -> torch.nn.Module:
    key = (like.dtype, like.device)
    if key not in cache:
        cache[key] = copy.deepcopy(module).to(device=like.device, dtype=like.dtype).train()
    return cache[key]


@call_style(positional=3, legacy_positional=("params", "param_grads", "transforms"))
def check_layer(
    layer: Any,
    torch_module: torch.nn.Module,
    inputs: Any,
    *,
    params: Mapping[str, Path] | None = None,
    param_grads: Mapping[str, Path] | Callable[[Any], Mapping[str, np.ndarray]] | None = None,
    transforms: Mapping[str, Transform] | None = None,
    outputs: Path | None = None,
    input_grads: Path | Sequence[Path] | None = None,
    buffers: Mapping[str, Path] | None = None,
    grad_output: np.ndarray | None = None,
    constants: Sequence[int] = (),
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype = "float64",
    rtol: float | None = None,
    atol: float | None = None,
    seed: int = 0,
    kinks: str = "strict",
    **check_kwargs: Any,
) -> Report:
    """Check a layer object's input and parameter gradients against ``torch_module`` (in training mode).

    ``layer.forward(*inputs) -> out`` and ``layer.backward(grad_output) -> grad(s)`` of the non-constant
    inputs. ``params`` maps each torch parameter name to where the layer keeps it (an attribute, or
    ``"mapping.key"``; default: the same name); ``param_grads`` maps it to where the layer leaves its
    gradient after ``backward``, or is a callable ``layer -> {torch_name: array}``; by default the
    gradients ``backward`` returns after the input gradients (in ``params`` order) are used, else
    they are looked for at ``dW``, ``grad_W``, ``grads.W``, ... ``transforms`` maps a torch name to a layout change from
    torch's layout to the layer's (``np.transpose``). ``buffers`` maps torch buffer names to the layer's
    (default: those found under the same name); they are copied in, and compared after one
    training-mode forward. The layer is never modified: every call works on a copy.

    Layers that keep results on attributes instead of returning them (``forward`` stores ``self.output``,
    ``backward`` stores ``self.dinputs`` and returns nothing): ``outputs="output"`` and ``input_grads="dinputs"``
    (a list of paths for several inputs) name where they live.

    Args:
        layer: the object checked: ``layer.forward(*inputs)``, ``layer.backward(grad_output)``.
        torch_module: the ``torch.nn.Module`` it implements (its parameters are copied into the layer).
        inputs: one array or a tuple of arrays (settings such as a ``train`` flag or a dict pass through).
        params, param_grads, transforms, outputs, input_grads, buffers: where the layer keeps things (above).
        grad_output: the upstream gradient; None: standard normal from ``seed``.
        constants, device, dtype, rtol, atol, seed, kinks, **check_kwargs: as in ``check_gradients``.

    Returns:
        The :class:`~gradcheck_lab.core.report.Report` of the gradient check.

    Raises:
        GradientMismatch: a gradient (or a running statistic) disagrees with torch.
        InvalidInputError: a layer without ``forward``/``backward``, a ``params=`` path the layer does not have,
            a parameter name the module does not have, ... (before any work).
        ReferenceContractError: the layer returned or left something of the wrong shape or kind.
    """
    __tracebackhide__ = True
    xs = checked_inputs(inputs)
    static = frozenset(k for k, x in enumerate(xs) if is_static(x))
    pair = layer_pair(layer, torch_module, len(xs), params, param_grads, transforms, buffers, constants, static,
                      outputs=outputs, input_grads=input_grads)
    report = check_vjp(pair.forward, pair.backward, pair.torch_op, (*xs, *pair.weights), grad_output=grad_output,
                       constants=tuple(pair.fixed), device=device, dtype=dtype, rtol=rtol, atol=atol, kinks=kinks,
                       seed=seed, **check_kwargs)
    if pair.buffer_paths:
        _compare_buffers(torch_module, xs, pair, device, dtype, rtol, atol)
    return report


@dataclass(frozen=True)
class LayerPair:
    """A layer as :func:`~gradcheck_lab.gradients.vjp.check_vjp` sees it, over ``(*inputs, *torch parameters)``."""

    forward: Callable[..., Any]
    backward: Callable[..., Any]
    torch_op: Callable[..., torch.Tensor]
    weights: list[np.ndarray]
    fixed: frozenset[int]
    fresh: Callable[[Sequence[np.ndarray]], Any]
    buffer_paths: dict[str, Path]


def layer_pair(layer: Any, torch_module: torch.nn.Module, n_x: int, params: Mapping[str, Path] | None,
               param_grads: Mapping[str, Path] | Callable[[Any], Mapping[str, np.ndarray]] | None,
               transforms: Mapping[str, Transform] | None, buffers: Mapping[str, Path] | None,
               constants: Sequence[int] | int, static: frozenset[int] = frozenset(), *,
               outputs: Path | None = None, input_grads: Path | Sequence[Path] | None = None) -> LayerPair:
    """Validate ``check_layer``'s arguments and build the forward, backward and torch op it checks.

    ``static`` are the positions of settings among the inputs (a ``train`` flag, a dict): no gradient.
    """
    __tracebackhide__ = True
    _check_methods(layer, outputs, input_grads)
    grad_attrs = [input_grads] if isinstance(input_grads, str) else list(input_grads or [])
    named_params = dict(torch_module.named_parameters())
    lazy = sorted(n for n, p in named_params.items() if isinstance(p, torch.nn.parameter.UninitializedParameter))
    if lazy:
        raise InvalidInputError(f"the torch module's parameters {lazy} are not initialized yet (a lazy module): "
                                "call it once on an input, e.g. module(x), so that their shapes exist")
    defaulted = params is None
    params = dict(params) if params is not None else {name: name for name in named_params}
    unknown = sorted(set(params) - set(named_params))
    if unknown:
        raise InvalidInputError(f"params= names {unknown}, which the torch module does not have; "
                                f"it has {sorted(named_params)}")
    # By default the layer keeps each parameter under torch's name; where it does not, say so now
    # (named explicitly, a path may be new: a layer that starts with an empty params dict).
    missing = [name for name, path in params.items() if not has_path(layer, path)] if defaulted else []
    new_paths = [] if defaulted else _check_param_paths(layer, params)
    if missing:
        arrays = sorted(k for k, v in vars(layer).items() if isinstance(v, np.ndarray)) if hasattr(layer, "__dict__") \
            else []
        raise InvalidInputError(
            f"the layer has no attribute {missing} named like the torch parameter(s): pass "
            f"params={{torch name: the layer's attribute}}, e.g. params={{{missing[0]!r}: 'W'}}"
            + (f"; the layer's array attributes are {arrays}" if arrays else ""))
    transforms = dict(transforms or {})
    grad_paths: dict[str, Path] = {} if param_grads is None or callable(param_grads) else dict(param_grads)
    torch_names = list(params)
    weights = [float64_array(named_params[n]) for n in torch_names]
    buffer_paths = _buffer_paths(layer, torch_module, buffers)
    start_buffers = {n: float64_array(b) for n, b in torch_module.named_buffers()
                     if n in buffer_paths}
    items: list[Any] = [constants] if isinstance(constants, int | np.integer) else list(constants)
    ks = [int(k) + n_x if isinstance(k, int | np.integer) and k < 0 else k for k in items]
    fixed = constant_indices(ks, n_x + (1 if weights else 0))
    if any(k >= n_x for k in fixed):
        raise InvalidInputError(f"constants= holds an index past the {n_x} input(s)")
    no_grad = fixed | static
    count = n_x - len(no_grad)

    def fresh(values: Sequence[np.ndarray]) -> Any:
        copy_ = copy.deepcopy(layer)
        for name, value in zip(torch_names, values, strict=True):
            t = transforms.get(name)
            set_path(copy_, params[name], np.array(t(value) if t else value, dtype=np.float64))
        for name, value in start_buffers.items():
            set_path(copy_, buffer_paths[name], np.array(value, copy=True))
        return copy_

    def forward(*args: np.ndarray) -> tuple[Any, Any]:
        x, values = args[:n_x], args[n_x:]
        current = fresh(values)
        out = current.forward(*x)
        if outputs is not None:
            if not has_path(current, outputs):
                raise ReferenceContractError(f"outputs={outputs!r}: the layer has no {outputs!r} after forward; its "
                                             f"attributes are {_attributes(current)}")
            out = get_path(current, outputs)
        elif out is None:
            raise ReferenceContractError("layer.forward returned None: if it stores its result on an attribute "
                                         "(self.output), name it: outputs='output'")
        return out, (current, [np.shape(v) for v in values])

    def backward(grad_output: np.ndarray, cache: tuple[Any, Any]) -> list[Any]:
        current, shapes = cache
        returned = current.backward(grad_output)
        if grad_attrs:
            for path in grad_attrs:
                if not has_path(current, path):
                    raise ReferenceContractError(f"input_grads={path!r}: the layer has no {path!r} after backward; "
                                                 f"its attributes are {_attributes(current)}")
            found_grads = [get_path(current, path) for path in grad_attrs]
            returned = found_grads[0] if len(found_grads) == 1 else tuple(found_grads)
        elif returned is None and count:
            raise ReferenceContractError("layer.backward returned None: if it stores the input gradient on an "
                                         "attribute (self.dinputs), name it: input_grads='dinputs'")
        tail = _returned_param_grads(returned, count, shapes, transforms, torch_names) if param_grads is None else None
        if tail is not None:  # backward returned (input grads..., param grads...)
            returned = tuple(returned[:count]) if count != 1 else returned[0]
        grads = as_grads(returned, count, n_x) if count else []
        if len(grads) == n_x and n_x != count:
            grads = [g for k, g in enumerate(grads) if k not in no_grad]
        if tail is None and param_grads is None and not grad_paths:
            grad_paths.update(guess_grad_paths(current, params, new_paths, _attributes(layer)))
        found = tail if tail is not None else param_grads(current) if callable(param_grads) else {
            name: get_path(current, path) for name, path in grad_paths.items()}
        for name, shape in zip(torch_names, shapes, strict=True):
            if name not in found or found[name] is None:
                raise ReferenceContractError(f"the layer left no gradient for {name!r} after backward")
            t = transforms.get(name)
            grads.append(adjoint(t, shape, found[name]) if t else found[name])
        return grads

    module_cache: dict[Any, torch.nn.Module] = {}

    def torch_op(*tensors: torch.Tensor) -> torch.Tensor:
        x, values = tensors[:n_x], tensors[n_x:]
        like = next(v for v in (*values, *x) if isinstance(v, torch.Tensor) and v.is_floating_point())
        module = _module_for(torch_module, module_cache, like)
        out = torch.func.functional_call(module, dict(zip(torch_names, values, strict=True)), tuple(x))
        if not isinstance(out, torch.Tensor):
            raise TorchFunctionError(f"the torch module must return a tensor, got {type(out).__name__}")
        return out

    forward.__signature__ = _signature(layer, n_x, torch_names)  # type: ignore[attr-defined]
    return LayerPair(forward, backward, torch_op, weights, fixed, fresh, buffer_paths)


def _attributes(layer: Any) -> list[str]:
    return sorted(k for k in vars(layer) if not k.startswith("_")) if hasattr(layer, "__dict__") else []


def _check_methods(layer: Any, outputs: Path | None, input_grads: Path | Sequence[Path] | None) -> None:
    """A layer needs ``forward`` and ``backward`` methods; ``outputs``/``input_grads`` are attribute paths."""
    __tracebackhide__ = True
    for name, what in (("forward", "forward(*inputs) -> output (or storing it: outputs='output')"),
                       ("backward", "backward(grad_output) -> input gradient(s) (or storing them: "
                                    "input_grads='dinputs')")):
        if not callable(getattr(layer, name, None)):
            methods = sorted(m for m in dir(layer) if not m.startswith("_") and callable(getattr(layer, m, None)))
            raise InvalidInputError(f"the layer ({type(layer).__name__}) has no {name} method: check_layer calls "
                                    f"layer.{what}; its methods are {methods} (rename yours, or wrap the layer)")
    for name, value in (("outputs", outputs), ("input_grads", input_grads)):
        paths = [value] if isinstance(value, str) or value is None else list(value)
        if not all(p is None or isinstance(p, str) for p in paths):
            raise InvalidInputError(f"{name}= must be an attribute name such as 'output' (or a list of them), "
                                    f"got {value!r}")


def _check_param_paths(layer: Any, params: Mapping[str, Path]) -> list[str]:
    """Every ``params=`` path is a string whose head (``"params"`` of ``"params.W"``) the layer has; returns the
    paths the layer does not have yet (the harness sets them: fine for a layer whose parameters are assigned)."""
    __tracebackhide__ = True
    new = []
    for name, path in params.items():
        if not isinstance(path, str):
            raise InvalidInputError(f"params[{name!r}] must be the layer's attribute name (a string such as 'W'), "
                                    f"got {path!r}")
        if has_path(layer, path):
            continue
        head = path.rsplit(".", 1)[0] if "." in path else None
        if head is not None and not has_path(layer, head):
            raise InvalidInputError(f"params= maps {name!r} to {path!r}, but the layer ({type(layer).__name__}) has "
                                    f"no {head!r}; its attributes are {_attributes(layer)}: pass params={{{name!r}: "
                                    "<the attribute holding it>}")
        new.append(path)
    return new


def _returned_param_grads(returned: Any, count: int, shapes: Sequence[tuple[int, ...]],
                          transforms: Mapping[str, Transform], torch_names: list[str]) -> dict[str, Any] | None:
    """The parameter gradients when ``backward`` returns them after the input gradients, in ``params`` order."""
    if not torch_names or not isinstance(returned, tuple | list) or len(returned) != count + len(torch_names):
        return None
    tail = returned[count:]
    for name, shape, g in zip(torch_names, shapes, tail, strict=True):
        t = transforms.get(name)
        expected = np.shape(t(np.zeros(shape))) if t else tuple(shape)
        if np.shape(g) != expected:
            return None
    return dict(zip(torch_names, tail, strict=True))


def _signature(layer: Any, n_x: int, torch_names: list[str]) -> Any:
    import inspect

    names = parameter_names(layer.forward, n_x) + [n.replace(".", "_") for n in torch_names]
    return inspect.Signature([inspect.Parameter(n if n.isidentifier() else f"param{k}",
                                                inspect.Parameter.POSITIONAL_ONLY) for k, n in enumerate(names)])


def _buffer_paths(layer: Any, module: torch.nn.Module, buffers: Mapping[str, Path] | None) -> dict[str, Path]:
    floating = {n for n, b in module.named_buffers() if b.is_floating_point()}
    if buffers is not None:
        unknown = sorted(set(buffers) - floating)
        if unknown:
            raise InvalidInputError(f"buffers= names {unknown}; the module's floating buffers are {sorted(floating)}")
        return dict(buffers)
    probe = copy.deepcopy(layer)
    return {n: n for n in sorted(floating) if has_path(probe, n)}


def _compare_buffers(module: torch.nn.Module, xs: tuple[Any, ...], pair: LayerPair, device: str | torch.device,
                     dtype: str | torch.dtype, rtol: float | None, atol: float | None) -> None:
    """One training-mode forward on both sides from the same buffers; raise where a buffer differs."""
    __tracebackhide__ = True
    torch_dtype = resolve_dtype(dtype)
    fixed, paths = pair.fixed, pair.buffer_paths
    arrays = [k for k, x in enumerate(xs) if not is_static(x)]
    rounded = dict(zip(arrays, prepare_inputs([xs[k] for k in arrays], torch_dtype,
                                               constants=frozenset(arrays.index(k) for k in fixed)), strict=True))
    mine = pair.fresh([np.array(w) for w in pair.weights])
    mine.forward(*[np.array(rounded[k], copy=True) if k in rounded else copy.deepcopy(x) for k, x in enumerate(xs)])
    theirs = copy.deepcopy(module).to(device=device, dtype=torch.float64).train()
    with torch.no_grad():
        theirs(*[copy.deepcopy(x) if k not in rounded else torch.tensor(rounded[k], device=device) if k in fixed
                 else torch.tensor(rounded[k], dtype=torch.float64, device=device) for k, x in enumerate(xs)])
    tol = gradient_tolerance(torch.float64, rtol=rtol, atol=atol)
    found = dict(theirs.named_buffers())
    for name, path in paths.items():
        expected = found[name].detach().cpu().numpy()
        actual = np.asarray(get_path(mine, path), dtype=np.float64)
        if actual.shape != expected.shape:
            raise ReferenceContractError(f"the layer's {path!r} has shape {actual.shape}, torch's {name!r} "
                                         f"{expected.shape}")
        c = compare(expected, actual, tol)
        if not c.passed:
            raise GradientMismatch(
                f"running statistic {name!r} (layer's {path!r}) differs after one training-mode forward\n"
                + "\n".join(comparison_lines(c, "torch", "layer", bound=False)) + "\n"
                "  check the momentum convention (torch: new = (1 - momentum) * old + momentum * batch) and that "
                "torch's running variance is unbiased (divides by n - 1)", inputs=tuple(xs))
