"""Arguments of the public entry points: validated before any work, and renamed ones kept for a release.

Every entry point follows one template, ``check_x(impl, torch_impl, inputs_or_shapes, *, device, dtype,
rtol, atol, seed, ...)``. A user's mistake is an :class:`~gradcheck_lab.errors.InvalidInputError` naming
the argument and the fix, raised before anything runs; every function here hides its frame from pytest's
traceback (``__tracebackhide__``), so the failure starts with the user's call.
"""

from __future__ import annotations

import functools
import math
import numbers
import warnings
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, TypeVar

from gradcheck_lab.errors import InvalidInputError

F = TypeVar("F", bound=Callable[..., Any])


def call_style(*, positional: int, legacy_positional: Sequence[str] = (),
               renamed: Mapping[str, str] | None = None) -> Callable[[F], F]:
    """Keep old call styles working for one release, with a :class:`DeprecationWarning`.

    Args:
        positional: how many positional parameters the entry point takes now.
        legacy_positional: the names, in order, that used to be accepted positionally after those.
        renamed: old keyword name -> new keyword name.

    Returns:
        A decorator that maps old-style calls onto the new signature before calling it.
    """
    renames = dict(renamed or {})

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            __tracebackhide__ = True
            if len(args) > positional:
                extra = args[positional:]
                if len(extra) > len(legacy_positional):
                    raise InvalidInputError(
                        f"{fn.__name__}() takes {positional} positional arguments but {len(args)} were given: "
                        "pass the others by keyword")
                names = legacy_positional[:len(extra)]
                warnings.warn(f"{fn.__name__}(): passing {', '.join(names)} positionally is deprecated; pass "
                              f"{'them' if len(names) > 1 else 'it'} by keyword", DeprecationWarning, stacklevel=2)
                for name, value in zip(names, extra, strict=True):
                    if name in kwargs:
                        raise InvalidInputError(f"{fn.__name__}() got {name} both by position and by keyword")
                    kwargs[name] = value
                args = args[:positional]
            for old, new in renames.items():
                if old in kwargs:
                    if new in kwargs:
                        raise InvalidInputError(f"{fn.__name__}() got both {old}= and {new}=: {old}= is the old "
                                                f"name of {new}=, pass only {new}=")
                    warnings.warn(f"{fn.__name__}(): {old}= is deprecated, use {new}=", DeprecationWarning,
                                  stacklevel=2)
                    kwargs[new] = kwargs.pop(old)
            return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


def tolerance(name: str, value: Any) -> float | None:
    """``rtol``/``atol``: None (the dtype's default) or a finite number >= 0."""
    __tracebackhide__ = True
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidInputError(f"{name} must be a number >= 0 or None (the dtype's default), got {value!r} "
                                f"({type(value).__name__}): pass e.g. {name}=1e-6")
    as_float = float(value)
    if not math.isfinite(as_float) or as_float < 0:
        raise InvalidInputError(f"{name} must be a finite number >= 0 or None, got {value!r}")
    return as_float


def integer(name: str, value: Any, *, minimum: int = 0) -> int:
    """A whole number of at least ``minimum`` (``steps``, ``max_examples``, ``directions``, ``seed``)."""
    __tracebackhide__ = True
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InvalidInputError(f"{name} must be an integer >= {minimum}, got {value!r} ({type(value).__name__})")
    if int(value) < minimum:
        raise InvalidInputError(f"{name} must be at least {minimum}, got {value}")
    return int(value)


def choice(name: str, value: Any, options: Collection[str]) -> str:
    """One of a few named options (``kinks``)."""
    __tracebackhide__ = True
    if value not in options:
        raise InvalidInputError(f"{name} must be one of {', '.join(repr(o) for o in options)}, got {value!r}")
    return str(value)


def shape(name: str, value: Any) -> tuple[int, ...]:
    """One array shape: a tuple of integers >= 0 (``(4, 3)``; ``()`` for a scalar)."""
    __tracebackhide__ = True
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        raise InvalidInputError(f"{name} must be a tuple of ints, got the int {value!r}: write ({value},)")
    if not isinstance(value, Sequence) or isinstance(value, str):
        raise InvalidInputError(f"{name} must be a tuple of ints such as (4, 3), got {value!r}")
    dims = []
    for d in value:
        if isinstance(d, bool) or not isinstance(d, numbers.Integral) or int(d) < 0:
            raise InvalidInputError(f"{name} must hold integers >= 0, got {value!r}")
        dims.append(int(d))
    return tuple(dims)


def shapes(name: str, value: Any, *, count: int | None = None) -> list[tuple[int, ...]]:
    """A list of array shapes, one per input (``[(4, 3), (3,)]``)."""
    __tracebackhide__ = True
    if not isinstance(value, Sequence) or isinstance(value, str) or not value:
        raise InvalidInputError(f"{name} must be a non-empty list of shapes such as [(4, 3), (3,)], got {value!r}")
    if all(isinstance(d, numbers.Integral) and not isinstance(d, bool) for d in value):
        raise InvalidInputError(f"{name} must be a list of shapes, one per input, got {value!r}: for one input "
                                f"write [{tuple(value)!r}]")
    result = [shape(f"{name}[{k}]", s) for k, s in enumerate(value)]
    if count is not None and len(result) != count:
        raise InvalidInputError(f"{name} has {len(result)} shapes but the function takes {count} inputs: "
                                "pass one shape per input")
    return result


def mapping(name: str, value: Any) -> dict[str, Any]:
    """A mapping with string keys, or None for an empty one (``hyper``, ``config``, ``params``)."""
    __tracebackhide__ = True
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise InvalidInputError(f"{name} must be a dict with string keys, got {value!r}")
    return dict(value)


def callable_argument(name: str, value: Any, what: str) -> Callable[..., Any]:
    """A function (or an object with ``__call__``): ``what`` says what it should be."""
    __tracebackhide__ = True
    if not callable(value):
        raise InvalidInputError(f"{name} must be {what}, got {type(value).__name__} {value!r:.80}")
    return value  # type: ignore[no-any-return]
