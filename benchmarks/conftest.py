"""pytest-benchmark configuration: GPU name in the machine info."""

from __future__ import annotations

import torch


def pytest_benchmark_update_machine_info(config, machine_info):
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    machine_info["gpus"] = [torch.cuda.get_device_name(i) for i in range(count)]
    machine_info["torch"] = torch.__version__
    machine_info["torch_threads"] = torch.get_num_threads()
