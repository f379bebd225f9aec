"""A reference that returns different results for the same inputs raises a typed error (issue #20)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import gradcheck_lab as gl
from gradcheck_lab.errors import NondeterministicReferenceError, ReferenceContractError


class UninitializedLinear:
    """A layer that draws its weights on every forward, as an uninitialized one does: L = sum(x W)."""

    def __init__(self) -> None:
        self.rng = np.random.default_rng()

    def __call__(self, x: np.ndarray) -> tuple[float, tuple[np.ndarray]]:
        weights = self.rng.normal(size=(x.shape[1], 3))
        # dL/dx = 1 W^T: every row the row sums of W.
        return float((x @ weights).sum()), (np.ones((x.shape[0], 3)) @ weights.T,)


def torch_linear(x: torch.Tensor) -> torch.Tensor:
    weights = torch.ones(x.shape[1], 3, dtype=x.dtype)
    return (x @ weights).sum()


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_reference_that_redraws_its_weights_raises(dtype: str) -> None:
    x = np.random.default_rng(0).normal(size=(4, 5))
    with pytest.raises(NondeterministicReferenceError, match=r"not deterministic: .*uninitialized weights"):
        gl.check_gradients(UninitializedLinear(), torch_linear, (x,), dtype=dtype)
    assert issubclass(NondeterministicReferenceError, ReferenceContractError)


def test_a_seeded_reference_is_judged_as_usual() -> None:
    """Seeding the draw inside the function makes it deterministic: a wrong gradient is then a mismatch."""
    def seeded(x: np.ndarray) -> tuple[float, tuple[np.ndarray]]:
        weights = np.random.default_rng(7).normal(size=(x.shape[1], 3))
        return float((x @ weights).sum()), (np.ones((x.shape[0], 3)) @ weights.T,)

    x = np.random.default_rng(0).normal(size=(4, 5))
    with pytest.raises(gl.GradientMismatch):
        gl.check_gradients(seeded, torch_linear, (x,))
