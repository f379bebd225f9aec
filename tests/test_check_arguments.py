"""check_gradients validates every argument before any work: a typed error naming the argument and the fix."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

import gradcheck_lab as gl

X = np.array([0.5, -1.25, 2.0])


def square(x: np.ndarray) -> tuple[float, tuple[np.ndarray]]:
    return float((x**2).sum()), (2 * x,)


def torch_square(x: torch.Tensor) -> torch.Tensor:
    return (x**2).sum()


class Counting:
    """A reference that counts its calls: a bad argument must be refused before it is ever called."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, x: np.ndarray) -> tuple[float, tuple[np.ndarray]]:
        self.calls += 1
        return square(x)


@pytest.mark.parametrize(("kwargs", "words"), [
    ({"rtol": "1e-3"}, ["rtol", "number", "rtol=1e-6"]),
    ({"atol": -1.0}, ["atol", ">= 0"]),
    ({"rtol": float("nan")}, ["rtol", "finite"]),
    ({"kinks": "lenient"}, ["kinks", "'strict'", "'subgradient'"]),
    ({"directions": 0}, ["directions", "at least 1"]),
    ({"seed": 1.5}, ["seed", "integer"]),
    ({"constants": (3,)}, ["constants=", "index 3", "1 input"]),
    ({"constants": ("labels",)}, ["constants=", "indices"]),
    ({"finite_differences": "yes"}, ["finite_differences", "True or False"]),
    ({"reference_dtype": "bfloat16"}, ["reference_dtype", "'float32'", "'float16'"]),
    ({"reference_dtype": "float64x"}, ["reference_dtype"]),
])
def test_bad_keyword_is_named_before_anything_runs(kwargs: dict[str, Any], words: list[str]) -> None:
    reference = Counting()
    with pytest.raises(gl.InvalidInputError) as info:
        gl.check_gradients(reference, torch_square, (X,), **kwargs)
    for word in words:
        assert word in str(info.value)
    assert reference.calls == 0


@pytest.mark.parametrize(("inputs", "words"), [
    ((X, None), ["inputs[1]", "None", "NumPy array"]),
    ([[0.5, -1.25], [2.0, 1.0]], ["list of numbers", "np.array(inputs)"]),
    ([0.5, -1.25, 2.0], ["list of numbers", "np.array(inputs)"]),
    ((), ["empty"]),
    ({"x": X}, ["tuple of NumPy arrays", "dict"]),
    (("abc",), ["inputs[0]", "str"]),
])
def test_bad_inputs_are_named_with_the_fix(inputs: Any, words: list[str]) -> None:
    reference = Counting()
    with pytest.raises(gl.InvalidInputError) as info:
        gl.check_gradients(reference, torch_square, inputs)
    for word in words:
        assert word in str(info.value)
    assert reference.calls == 0


def test_non_callable_sides_are_named() -> None:
    with pytest.raises(gl.InvalidInputError, match="reference_fn"):
        gl.check_gradients(X, torch_square, (X,))  # type: ignore[arg-type]
    with pytest.raises(gl.InvalidInputError, match="torch_fn"):
        gl.check_gradients(square, None, (X,))  # type: ignore[arg-type]


def test_accepted_spellings_still_check() -> None:
    """One array alone, a tuple holding one list, constants=None and an int rtol are all fine."""
    assert gl.check_gradients(square, torch_square, X).passed
    assert gl.check_gradients(square, torch_square, ([0.5, -1.25, 2.0],)).passed
    assert gl.check_gradients(square, torch_square, (X,), constants=None, rtol=0).verdict != "mismatch"


def test_everything_after_inputs_is_keyword_only() -> None:
    with pytest.raises(TypeError):
        gl.check_gradients(square, torch_square, (X,), "cpu")  # type: ignore[misc]
