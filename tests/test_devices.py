"""Device resolution and the xdist GPU spreading rule (simulated where GPUs are absent)."""

from __future__ import annotations

import pytest
import torch

import gradcheck_lab as gl
from gradcheck_lab import pytest_plugin
from gradcheck_lab.core import devices
from gradcheck_lab.core.devices import available_devices, resolve_devices


def test_cpu_is_always_available_and_all_includes_it():
    assert available_devices()[0] == "cpu"
    assert resolve_devices("all")[0] == "cpu"
    assert resolve_devices("cpu, cpu") == ["cpu"]


@pytest.mark.parametrize("spec", ["", " , "])
def test_an_empty_device_spec_is_an_error(spec):
    with pytest.raises(gl.DeviceError, match="no device"):
        resolve_devices(spec)


@pytest.mark.parametrize(("worker", "count", "expected"), [
    ("gw0", 2, "cuda:0"), ("gw1", 2, "cuda:1"), ("gw2", 2, "cuda:0"), ("gw7", 3, "cuda:1"),
    (None, 2, "cuda"), ("gw3", 0, "cuda"), ("master", 2, "cuda"),
])
def test_xdist_workers_spread_over_gpus(worker, count, expected):
    assert devices.worker_device("cuda", worker, count) == expected


def test_explicit_devices_are_not_remapped():
    assert devices.worker_device("cuda:1", "gw0", 4) == "cuda:1"
    assert devices.worker_device("cpu", "gw5", 4) == "cpu"


def test_plugin_parametrization_spreads_workers_over_simulated_gpus(monkeypatch):
    monkeypatch.setattr(pytest_plugin, "cuda_device_count", lambda: 4)
    monkeypatch.setattr(pytest_plugin, "resolve_devices", lambda spec: [spec])
    values = [pytest_plugin.device_params(None, f"gw{k}")[1].value for k in range(6)]
    assert values == ["cuda:0", "cuda:1", "cuda:2", "cuda:3", "cuda:0", "cuda:1"]
    assert {p.id for k in range(6) for p in pytest_plugin.device_params(None, f"gw{k}")} == {"cpu", "cuda"}


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_default_parametrization_skips_cuda_with_a_reason():
    params = pytest_plugin.device_params(None)
    assert [p.id for p in params] == ["cpu", "cuda"]
    assert params[1].skip_reason and "CUDA is not available" in params[1].skip_reason
