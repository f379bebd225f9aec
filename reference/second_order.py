r"""Forward mode, second order and complex gradients by hand: NumPy only, the derivation in each docstring.

- :func:`logistic_loss`, :func:`logistic_hessian`, :func:`logistic_hvp`, :func:`newton_step`: L2-regularized
  logistic regression, the Hessian Newton's method and IRLS solve with;
- :func:`softmax_loss`, :func:`softmax_hvp`: softmax regression and its Hessian-vector product (an R-operator);
- :func:`mlp_forward`, :func:`mlp_jvp`: a tanh MLP and its forward-mode rule; :func:`mlp_loss`,
  :func:`mlp_hvp`: its squared loss and Pearlmutter's R-operator (the exact Hessian-vector product);
- :func:`complex_least_squares`: the gradient of :math:`\|Az - b\|^2` over complex :math:`z`, in torch's
  convention.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _sigmoid(z: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-z)) without overflow on either side."""
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e))


def logistic_loss(w: np.ndarray, X: np.ndarray, y: np.ndarray, l2: float = 0.1) -> tuple[np.ndarray, tuple]:
    r"""Mean logistic loss with an L2 penalty, and its gradient in ``w``.

    With :math:`z = Xw`, :math:`p = \sigma(z)` and labels :math:`y \in \{0, 1\}`,

    .. math::  L(w) = \frac1n \sum_i \big(\log(1 + e^{z_i}) - y_i z_i\big) + \frac{\lambda}{2}\|w\|^2 .

    :math:`\frac{d}{dz}\log(1 + e^z) = \sigma(z)`, so :math:`\partial L/\partial z_i = (p_i - y_i)/n` and by the
    chain rule through :math:`z = Xw`, :math:`\nabla L = X^\top (p - y)/n + \lambda w`. ``X`` and ``y`` are data
    (their gradients are None).
    """
    z = X @ w
    n = X.shape[0]
    value = np.mean(np.logaddexp(0.0, z) - y * z) + 0.5 * l2 * np.sum(w * w)
    return np.asarray(value), (X.T @ (_sigmoid(z) - y) / n + l2 * w, None, None)


def logistic_hessian(w: np.ndarray, X: np.ndarray, y: np.ndarray, l2: float = 0.1) -> np.ndarray:
    r"""The Hessian of :func:`logistic_loss` in ``w``: :math:`H = X^\top S X / n + \lambda I`.

    Differentiating :math:`\nabla L = X^\top (p - y)/n + \lambda w` once more: :math:`\partial p_i/\partial w =
    \sigma'(z_i)\,x_i = p_i(1 - p_i)\,x_i`, so with :math:`S = \mathrm{diag}(p_i(1 - p_i))` the data term is
    :math:`X^\top S X / n` (positive semi-definite: the loss is convex), and the penalty adds :math:`\lambda I`.
    ``y`` does not appear: the labels enter the gradient linearly.
    """
    p = _sigmoid(X @ w)
    n, d = X.shape
    return np.asarray((X.T * (p * (1 - p))) @ X / n + l2 * np.eye(d))


def logistic_hvp(vectors: Sequence[np.ndarray], w: np.ndarray, X: np.ndarray, y: np.ndarray,
                 l2: float = 0.1) -> tuple[np.ndarray]:
    r""":math:`Hv = X^\top (S (Xv)) / n + \lambda v` without forming :math:`H` (two matrix-vector products)."""
    (v,) = vectors
    p = _sigmoid(X @ w)
    return (X.T @ (p * (1 - p) * (X @ v)) / X.shape[0] + l2 * v,)


def newton_step(w: np.ndarray, X: np.ndarray, y: np.ndarray, l2: float = 0.1) -> np.ndarray:
    r"""One Newton (IRLS) step :math:`w - H^{-1}\nabla L`: a weighted least-squares solve with weights
    :math:`p_i(1 - p_i)`, which converges quadratically near the minimum."""
    _, (grad, _, _) = logistic_loss(w, X, y, l2)
    return np.asarray(w - np.linalg.solve(logistic_hessian(w, X, y, l2), grad))


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return np.asarray(e / e.sum(axis=1, keepdims=True))


def softmax_loss(W: np.ndarray, X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, tuple]:
    r"""Mean cross-entropy of softmax regression, :math:`L(W) = \frac1n\sum_i \big(\mathrm{lse}(x_i W) -
    (x_i W)_{y_i}\big)`, and its gradient :math:`X^\top (P - Y)/n` (:math:`P` the softmax of :math:`Z = XW`,
    :math:`Y` the one-hot labels): :math:`\partial\,\mathrm{lse}(z)/\partial z = \mathrm{softmax}(z)`."""
    Z = X @ W
    n = X.shape[0]
    P = _softmax(Z)
    Y = np.eye(W.shape[1])[y]
    value = np.mean(np.log(np.exp(Z - Z.max(axis=1, keepdims=True)).sum(axis=1)) + Z.max(axis=1)
                    - Z[np.arange(n), y])
    return np.asarray(value), (X.T @ (P - Y) / n, None, None)


def softmax_hvp(vectors: Sequence[np.ndarray], W: np.ndarray, X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray]:
    r"""The Hessian-vector product of :func:`softmax_loss` along :math:`V` (shaped like :math:`W`): an R-operator.

    Apply :math:`R\{\cdot\} = \frac{d}{dt}(\cdot)(W + tV)|_{t=0}` to the gradient :math:`X^\top (P - Y)/n`:
    :math:`R\{Z\} = XV`; the softmax Jacobian row by row is :math:`\mathrm{diag}(p) - pp^\top`, so
    :math:`R\{P\} = P \odot (R\{Z\} - \mathrm{rowsum}(P \odot R\{Z\}))`; :math:`Y` is constant, hence
    :math:`Hv = X^\top R\{P\} / n`.
    """
    (V,) = vectors
    P = _softmax(X @ W)
    RZ = X @ V
    RP = P * (RZ - np.sum(P * RZ, axis=1, keepdims=True))
    return (X.T @ RP / X.shape[0],)


def mlp_forward(x: np.ndarray, W1: np.ndarray, b1: np.ndarray, W2: np.ndarray, b2: np.ndarray) -> np.ndarray:
    r"""A one-hidden-layer tanh MLP: :math:`\mathrm{out} = \tanh(xW_1 + b_1)\,W_2 + b_2`."""
    return np.asarray(np.tanh(x @ W1 + b1) @ W2 + b2)


def mlp_jvp(tangents: Sequence[np.ndarray], x: np.ndarray, W1: np.ndarray, b1: np.ndarray, W2: np.ndarray,
            b2: np.ndarray) -> np.ndarray:
    r"""Forward mode through :func:`mlp_forward`: the derivative of the output along tangents of every input.

    Push the tangents :math:`(\dot x, \dot W_1, \dot b_1, \dot W_2, \dot b_2)` through each line, by the product
    rule: :math:`\dot a = \dot x W_1 + x\dot W_1 + \dot b_1`; :math:`\tanh' = 1 - \tanh^2`, so
    :math:`\dot h = (1 - h^2)\odot\dot a`; :math:`\dot{\mathrm{out}} = \dot h W_2 + h\dot W_2 + \dot b_2`.
    """
    dx, dW1, db1, dW2, db2 = tangents
    h = np.tanh(x @ W1 + b1)
    dh = (1 - h * h) * (dx @ W1 + x @ dW1 + db1)
    return np.asarray(dh @ W2 + h @ dW2 + db2)


def mlp_loss(W1: np.ndarray, b1: np.ndarray, W2: np.ndarray, b2: np.ndarray, x: np.ndarray,
             y: np.ndarray) -> tuple[np.ndarray, tuple]:
    r"""The squared loss :math:`L = \frac{1}{2n}\|\mathrm{out} - y\|^2` of :func:`mlp_forward` and its gradients.

    Backward: :math:`g_o = (\mathrm{out} - y)/n`; :math:`\nabla W_2 = h^\top g_o`, :math:`\nabla b_2 =
    \sum_i g_o`; :math:`g_h = g_o W_2^\top`, :math:`g_a = g_h\odot(1 - h^2)`; :math:`\nabla W_1 = x^\top g_a`,
    :math:`\nabla b_1 = \sum_i g_a`. ``x`` and ``y`` are data.
    """
    h = np.tanh(x @ W1 + b1)
    r = h @ W2 + b2 - y
    n = x.shape[0]
    go = r / n
    ga = (go @ W2.T) * (1 - h * h)
    return np.asarray(0.5 * np.sum(r * r) / n), (x.T @ ga, ga.sum(0), h.T @ go, go.sum(0), None, None)


def mlp_hvp(vectors: Sequence[np.ndarray], W1: np.ndarray, b1: np.ndarray, W2: np.ndarray, b2: np.ndarray,
            x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, ...]:
    r"""Pearlmutter's R-operator on :func:`mlp_loss`: the exact Hessian-vector product along :math:`V`.

    :math:`R\{\cdot\}` is the derivative along :math:`(V_1, c_1, V_2, c_2)`; apply it to every line of the
    forward and backward pass (the product rule on each):

    - forward: :math:`R\{a\} = xV_1 + c_1`, :math:`R\{h\} = (1 - h^2)\odot R\{a\}`,
      :math:`R\{o\} = R\{h\}W_2 + hV_2 + c_2`;
    - backward: :math:`R\{g_o\} = R\{o\}/n`; :math:`R\{\nabla W_2\} = R\{h\}^\top g_o + h^\top R\{g_o\}`,
      :math:`R\{\nabla b_2\} = \sum_i R\{g_o\}`; :math:`R\{g_h\} = R\{g_o\}W_2^\top + g_o V_2^\top`;
      :math:`R\{g_a\} = R\{g_h\}\odot(1 - h^2) - 2\,g_h\odot h\odot R\{h\}`;
      :math:`R\{\nabla W_1\} = x^\top R\{g_a\}`, :math:`R\{\nabla b_1\} = \sum_i R\{g_a\}`.

    The terms carrying :math:`g_o` (the residual) are what the Gauss-Newton product leaves out.
    """
    V1, c1, V2, c2 = vectors
    n = x.shape[0]
    h = np.tanh(x @ W1 + b1)
    go = (h @ W2 + b2 - y) / n
    gh = go @ W2.T
    Rh = (1 - h * h) * (x @ V1 + c1)
    Rgo = (Rh @ W2 + h @ V2 + c2) / n
    Rgh = Rgo @ W2.T + go @ V2.T
    Rga = Rgh * (1 - h * h) - 2 * gh * h * Rh
    return x.T @ Rga, Rga.sum(0), Rh.T @ go + h.T @ Rgo, Rgo.sum(0)


def complex_least_squares(A: np.ndarray, b: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, tuple]:
    r""":math:`L(z) = \|Az - b\|^2` over complex :math:`z`, and its gradient in torch's convention.

    With :math:`r = Az - b`, :math:`L = r^H r` is real. Its conjugate Wirtinger derivative is
    :math:`\partial L/\partial\bar z = A^H r` (:math:`r` is holomorphic in :math:`z`, :math:`\bar r` in
    :math:`\bar z`), and torch's ``z.grad``, :math:`\partial L/\partial x + i\,\partial L/\partial y`, is twice it:
    :math:`2A^H r`. (Check on one entry: :math:`L = |z|^2 = x^2 + y^2` gives :math:`2x + 2iy = 2z`.) ``A`` and
    ``b`` are data.
    """
    r = A @ z - b
    return np.asarray(np.real(np.vdot(r, r))), (None, None, 2 * A.conj().T @ r)
