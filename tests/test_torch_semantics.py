"""The claims tutorials make about torch.autograd, checked against torch itself."""

from __future__ import annotations

import pytest
import torch


def test_leaf_tensors_and_is_leaf():
    x = torch.tensor([1.0, 2.0], requires_grad=True)
    y = x * 2
    assert x.is_leaf and not y.is_leaf
    assert y.grad_fn is not None and x.grad_fn is None
    assert torch.tensor([1.0]).is_leaf  # tensors not requiring grad are leaves by convention


def test_gradients_accumulate_across_backward_calls_until_zeroed():
    x = torch.tensor([1.0, -2.0, 3.0], requires_grad=True)
    (x**2).sum().backward()
    (x**2).sum().backward()
    assert torch.equal(x.grad, 4 * x.detach())
    x.grad.zero_()
    (x**2).sum().backward()
    assert torch.equal(x.grad, 2 * x.detach())


def test_retain_graph_is_needed_for_a_second_backward():
    x = torch.tensor([1.0, 2.0], requires_grad=True)
    y = (x.exp() * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    assert torch.allclose(x.grad, 2 * (x.exp() * (1 + x)).detach())
    z = (x.exp() * x).sum()
    z.backward()
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        z.backward()


def test_no_grad_builds_no_graph():
    x = torch.ones(3, requires_grad=True)
    with torch.no_grad():
        y = x * 2
    assert not y.requires_grad and y.grad_fn is None
    assert (x * 2).requires_grad


def test_detach_shares_storage_but_not_the_graph():
    x = torch.ones(3, requires_grad=True)
    d = x.detach()
    assert d.data_ptr() == x.data_ptr()
    assert not d.requires_grad
    d[0] = 5.0
    assert x[0].item() == 5.0


def test_requires_grad_on_an_integer_tensor_is_an_error():
    with pytest.raises(RuntimeError, match="floating point"):
        torch.tensor([1, 2, 3], requires_grad=True)
