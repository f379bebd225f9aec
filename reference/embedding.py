r"""Embedding lookup and its backward pass."""

from __future__ import annotations

import numpy as np

from ._arrays import as_float


def _check_indices(indices: np.ndarray, num_embeddings: int) -> np.ndarray:
    indices = np.asarray(indices)
    if not np.issubdtype(indices.dtype, np.integer):
        raise ValueError(f"indices must be an integer array, got {indices.dtype}")
    if indices.size and (indices.min() < 0 or indices.max() >= num_embeddings):
        raise ValueError(f"indices must lie in [0, {num_embeddings})")
    return indices


def embedding(indices: np.ndarray, weight: np.ndarray) -> np.ndarray:
    r"""Rows of ``weight`` (``(num_embeddings, D)``) picked by ``indices`` (any shape): ``(*indices.shape, D)``."""
    weight = as_float(weight)
    return weight[_check_indices(indices, weight.shape[0])]


def embedding_backward(grad_out: np.ndarray, indices: np.ndarray, num_embeddings: int) -> np.ndarray:
    r"""Gradient of the weight through :math:`y_{k} = W_{i_k}` for every position :math:`k`.

    .. math::
        \frac{\partial L}{\partial W_{r}} = \sum_{k:\ i_k = r} \frac{\partial L}{\partial y_k}:

    a row used several times receives the *sum* of its positions' gradients (an assignment
    ``grad[indices] = grad_out`` keeps only the last one), and unused rows get 0.
    """
    indices = _check_indices(indices, num_embeddings)
    grad_out = as_float(grad_out)
    dim = grad_out.shape[-1]
    grad = np.zeros((num_embeddings, dim), dtype=grad_out.dtype)
    np.add.at(grad, indices.reshape(-1), grad_out.reshape(-1, dim))
    return grad
