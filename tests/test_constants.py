"""``constants=``: labels, targets and masks are data: passed through, never perturbed, no gradient needed."""

from __future__ import annotations

import numpy as np
import pytest
import torch.nn.functional as F

import gradcheck_lab as gl

rng = np.random.default_rng(3)
LOGITS = rng.standard_normal((5, 4))
LABELS = np.array([0, 3, 1, 1, 2])


def softmax_cross_entropy(logits, labels):
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    n = len(labels)
    grad = np.exp(log_p)
    grad[np.arange(n), labels] -= 1
    return -log_p[np.arange(n), labels].mean(), (grad / n,)


def test_integer_labels_are_data(dtype):
    report = gl.check_gradients(softmax_cross_entropy, F.cross_entropy, (LOGITS, LABELS), constants=(1,),
                                dtype=dtype, finite_differences=True)
    assert report.passed and list(report.gradients) == ["logits"]


def test_the_constant_slot_may_hold_none_and_a_negative_index_works():
    def with_none(logits, labels):
        value, (grad,) = softmax_cross_entropy(logits, labels)
        return value, (grad, None)

    assert gl.check_gradients(with_none, F.cross_entropy, (LOGITS, LABELS), constants=[-1]).passed


def test_a_wrong_gradient_next_to_labels_is_still_caught():
    def forgot_the_one_hot(logits, labels):
        value, _ = softmax_cross_entropy(logits, labels)
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        return value, (shifted / shifted.sum(axis=1, keepdims=True) / len(labels),)

    with pytest.raises(gl.GradientMismatch, match="'logits'"):
        gl.check_gradients(forgot_the_one_hot, F.cross_entropy, (LOGITS, LABELS), constants=(1,))


def test_a_float_target_is_never_perturbed_by_the_oracle():
    seen = []

    def mse(pred, target):
        return np.mean((pred - target) ** 2), (2 * (pred - target) / pred.size,)

    def torch_mse(pred, target):
        seen.append(target.detach().numpy().copy())
        return F.mse_loss(pred, target)

    target = rng.standard_normal(6)
    gl.check_gradients(mse, torch_mse, (rng.standard_normal(6), target), constants=(1,), finite_differences=True)
    assert len(seen) > 2 and all(np.array_equal(t, target) for t in seen)


def test_integers_without_constants_and_bad_indices_are_explained():
    with pytest.raises(gl.InvalidInputError, match="constants="):
        gl.check_gradients(softmax_cross_entropy, F.cross_entropy, (LOGITS, LABELS))
    with pytest.raises(gl.InvalidInputError, match="index 2"):
        gl.check_gradients(softmax_cross_entropy, F.cross_entropy, (LOGITS, LABELS), constants=(2,))
    with pytest.raises(gl.InvalidInputError, match="every input"):
        gl.check_gradients(softmax_cross_entropy, F.cross_entropy, (LOGITS, LABELS), constants=(0, 1))
