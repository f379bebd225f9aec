r"""Where a layer keeps its arrays: attribute or ``"mapping.key"`` paths, layout transforms and their adjoints,
and guessing where a layer left its parameter gradients when ``param_grads=`` is not given.

A layout transform :math:`T` (a transpose, a reshape) is linear, so a gradient in torch's layout is its adjoint
applied to the layer's: :math:`\nabla_p = T^\top \nabla_{T p}`, computed by sending element indices through
:math:`T`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from gradcheck_lab.errors import InvalidInputError, ReferenceContractError

Path = str
Transform = Callable[[np.ndarray], np.ndarray]

_GRAD_GUESSES = ("d{p}", "grad_{p}", "{p}_grad", "grads.{p}", "grads.d{p}", "gradients.{p}", "grad.{p}")


def _step(obj: Any, part: str) -> Any:
    if isinstance(obj, Mapping):
        return obj[part]
    if isinstance(obj, list | tuple) and part.isdigit():
        return obj[int(part)]
    return getattr(obj, part)


def get_path(obj: Any, path: Path) -> Any:
    """``obj.a`` for ``"a"``; ``obj.a["b"]`` (or ``obj.a.b``) for ``"a.b"``; ``obj.a[0]`` for ``"a.0"`` (a list)."""
    for part in path.split("."):
        obj = _step(obj, part)
    return obj


def set_path(obj: Any, path: Path, value: Any) -> None:
    *head, last = path.split(".")
    for part in head:
        obj = _step(obj, part)
    if isinstance(obj, dict):
        obj[last] = value
    elif isinstance(obj, list) and last.isdigit():
        obj[int(last)] = value
    else:
        setattr(obj, last, value)


def has_path(obj: Any, path: Path) -> bool:
    try:
        get_path(obj, path)
    except (AttributeError, KeyError, TypeError, IndexError):
        return False
    return True


def adjoint(transform: Transform, shape: tuple[int, ...], grad: np.ndarray) -> np.ndarray:
    """The adjoint of a layout change applied to ``grad``: element indices are sent through ``transform``."""
    index = np.asarray(transform(np.arange(int(np.prod(shape))).reshape(shape)))
    if index.dtype.kind not in "iu":
        raise InvalidInputError("a transform must be a layout change (transpose, reshape, indexing) that works on "
                                f"integer arrays; it turned integers into {index.dtype}")
    grad = np.asarray(grad, dtype=np.float64)
    if index.shape != grad.shape:
        raise ReferenceContractError(f"the layer's gradient has shape {grad.shape}, its parameter {index.shape}")
    out = np.zeros(int(np.prod(shape)))
    np.add.at(out, index.ravel(), grad.ravel())
    return out.reshape(shape)


def guess_grad_paths(layer: Any, params: Mapping[str, Path], new_paths: Sequence[Path] = (),
                     attributes: Sequence[str] = ()) -> dict[str, Path]:
    """Where a layer that has run ``backward`` keeps each parameter's gradient: ``dW``, ``grads.W``, ...

    ``new_paths`` are ``params=`` paths the layer did not have before the harness set them (``attributes``: what
    it had): when no gradient is found for one of them, the path itself is the likely mistake, and the message
    says so.
    """
    __tracebackhide__ = True
    guesses = {}
    for name, path in params.items():
        *head, last = path.split(".")
        prefixes = dict.fromkeys([".".join(head) + "." if head else "", ""])
        candidates = [prefix + pattern.format(p=last) for prefix in prefixes for pattern in _GRAD_GUESSES]
        found = [c for c in candidates if c != path and has_path(layer, c)]
        if not found and path in new_paths:
            raise InvalidInputError(f"params= maps {name!r} to {path!r}, which the layer did not have (the harness set "
                                    f"it) and no gradient of it was found after backward: is {path!r} where the "
                                    f"layer keeps {name!r}? Its attributes are {list(attributes)}; if the path is "
                                    "right, pass param_grads={" + f"{name!r}: <where backward leaves its gradient>}}")
        if not found:
            raise InvalidInputError(f"param_grads= is needed: no gradient of {name!r} found at "
                                    + ", ".join(candidates))
        guesses[name] = found[0]
    return guesses
