"""The training runs tutorials teach with: NumPy references and torch agree at every step, on every device."""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest
import torch
from gradcheck_lab.reference import models, optim

from gradcheck_lab.core.comparison import compare
from gradcheck_lab.core.tolerances import trajectory_tolerance
from gradcheck_lab.optim.sides import torch_state_dict

F64 = torch.float64


def _assert_close(expected, actual, steps, what):
    tol = trajectory_tolerance(F64, steps)
    result = compare(np.asarray(expected, dtype=np.float64), np.asarray(actual, dtype=np.float64), tol)
    assert result.passed, f"{what}: {result}"


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_linear_regression_with_sgd_agrees_every_epoch_and_resumes_across_sides(device, momentum):
    x = np.arange(11, dtype=np.float64).reshape(-1, 1)
    y = 2 * x + 1
    torch.manual_seed(0)
    model = torch.nn.Linear(1, 1).to(device, F64)
    loss_fn = torch.nn.MSELoss()
    opt = torch.optim.SGD(model.parameters(), lr=0.001, momentum=momentum)
    xt, yt = torch.tensor(x, device=device), torch.tensor(y, device=device)

    w, b = model.weight.detach().cpu().numpy()[0].copy(), model.bias.detach().cpu().numpy().copy()
    np_opt = optim.SGD([w, b], lr=0.001, momentum=momentum)
    snapshot = None
    for epoch in range(1, 1001):
        opt.zero_grad()
        loss = loss_fn(model(xt), yt)
        loss.backward()
        opt.step()
        np_loss, (gw, gb, _, _) = models.linear_regression(w, b, x, y[:, 0])
        np_opt.step([gw, gb])
        _assert_close(loss.item(), np_loss, epoch, f"loss at epoch {epoch}")
        _assert_close(model.weight.detach().cpu().numpy()[0], w, epoch, f"weight at epoch {epoch}")
        _assert_close(model.bias.detach().cpu().numpy(), b, epoch, f"bias at epoch {epoch}")
        if epoch == 500:
            snapshot = ([w.copy(), b.copy()], np_opt.state_dict())
    assert abs(w[0] - 2) < 0.2 and abs(b[0] - 1) < 1.0  # learning, though 1000 small steps do not converge

    # Resume the NumPy run from epoch 500 in torch: the last 500 epochs land on the same parameters.
    params, state = snapshot
    resumed = torch.nn.Linear(1, 1).to(device, F64)
    with torch.no_grad():
        resumed.weight.copy_(torch.tensor(params[0]).reshape(1, 1))
        resumed.bias.copy_(torch.tensor(params[1]))
    resumed_opt = torch.optim.SGD(resumed.parameters(), lr=0.5, momentum=momentum)  # lr comes from the state
    torch_state = torch_state_dict(state, device=device)
    if momentum:  # the NumPy model keeps w as (1,), nn.Linear keeps its weight as (1, 1)
        buffer = torch_state["state"][0]["momentum_buffer"]
        torch_state["state"][0]["momentum_buffer"] = buffer.reshape(1, 1)
    resumed_opt.load_state_dict(torch_state)
    assert resumed_opt.param_groups[0]["lr"] == 0.001
    for _ in range(500):
        resumed_opt.zero_grad()
        loss_fn(resumed(xt), yt).backward()
        resumed_opt.step()
    _assert_close(w, resumed.weight.detach().cpu().numpy()[0], 1000, "weight after resuming in torch")
    _assert_close(b, resumed.bias.detach().cpu().numpy(), 1000, "bias after resuming in torch")


def test_gradient_descent_on_a_parabola_follows_the_closed_form(device):
    x_np = np.array([3.0])
    np_opt = optim.SGD([x_np], lr=0.1)
    x_t = torch.tensor([3.0], dtype=F64, device=device, requires_grad=True)
    t_opt = torch.optim.SGD([x_t], lr=0.1)
    for t in range(1, 51):
        np_opt.step([2 * x_np])
        t_opt.zero_grad()
        (x_t**2).sum().backward()
        t_opt.step()
        closed_form = 3 * 0.8**t
        assert x_np[0] == pytest.approx(closed_form, rel=1e-12)
        assert x_t.item() == pytest.approx(closed_form, rel=1e-12)


def _tutorial_model(device):
    torch.manual_seed(0)
    layer = torch.nn.Linear(4, 4, bias=False).to(device, F64)
    x = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=F64, device=device)
    y = torch.tensor([3.0, 2.0, 4.0, 5.0], dtype=F64, device=device)
    return layer, x, y


@pytest.mark.parametrize(("np_cls", "torch_cls", "lr", "steps"), [
    (optim.SGD, torch.optim.SGD, 0.5, 1),
    (optim.Adam, torch.optim.Adam, 0.01, 100),
])
def test_linear_sigmoid_mse_model_trains_identically(device, np_cls, torch_cls, lr, steps):
    layer, x, y = _tutorial_model(device)
    weight = layer.weight.detach().cpu().numpy().copy()
    np_opt = np_cls([weight], lr=lr)
    t_opt = torch_cls(layer.parameters(), lr=lr)
    x_np, y_np = x.cpu().numpy(), y.cpu().numpy()
    for step in range(1, steps + 1):
        t_opt.zero_grad()
        loss = torch.nn.functional.mse_loss(torch.sigmoid(layer(x)), y)
        loss.backward()
        t_opt.step()
        np_loss, (g_weight, _, _) = models.sigmoid_mse(weight, x_np, y_np)
        np_opt.step([g_weight])
        _assert_close(loss.item(), np_loss, step, f"loss at step {step}")
        _assert_close(layer.weight.detach().cpu().numpy(), weight, step, f"weight at step {step}")


def test_per_sample_sgd_converges_to_the_true_slope_on_both_sides(device):
    xs, ys = [1.0, 2.0, 3.0], [2.0, 4.0, 6.0]
    w_np = np.array([1.0])
    np_opt = optim.SGD([w_np], lr=0.01)
    w_t = torch.tensor([1.0], dtype=F64, device=device, requires_grad=True)
    t_opt = torch.optim.SGD([w_t], lr=0.01)
    for epoch in range(100):
        for x, y in zip(xs, ys, strict=True):
            np_opt.step([2 * (x * w_np - y) * x])
            t_opt.zero_grad()
            ((x * w_t - y) ** 2).sum().backward()
            t_opt.step()
            _assert_close(w_t.detach().cpu().numpy(), w_np, epoch + 1, "w")
    assert w_np[0] == pytest.approx(2.0, abs=1e-9)
    assert w_t.item() == pytest.approx(2.0, abs=1e-9)


def test_accumulating_loss_tensors_keeps_every_graph_alive_but_item_does_not():
    def run(accumulate_tensors: bool) -> tuple[int, int]:
        w = torch.ones(256, requires_grad=True)
        alive, total = [], 0.0
        for step in range(20):
            activation = w * (step + 1.0)  # saved by pow for its backward: lives as long as the graph
            alive.append(weakref.ref(activation))
            loss = (activation**2).sum()
            total = total + (loss if accumulate_tensors else loss.item())
            del activation, loss
        gc.collect()
        kept = sum(ref() is not None for ref in alive)
        del total
        gc.collect()
        return kept, sum(ref() is not None for ref in alive)

    kept_leaky, after_release = run(accumulate_tensors=True)
    kept_right, _ = run(accumulate_tensors=False)
    assert kept_leaky == 20  # every iteration's graph, with its saved activation, is still reachable
    assert after_release == 0  # ...until the accumulated tensor is dropped
    assert kept_right == 0
