"""What machine a result came from: CPU, cores, GPUs and library versions."""

from __future__ import annotations

import os
import platform
from typing import Any

import numpy as np
import torch

from gradcheck_lab.core.threads import available_cores


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _load_average() -> list[float] | None:
    """1, 5 and 15-minute load averages (None where the OS has none): a loaded machine times slowly."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def machine_info() -> dict[str, Any]:
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    gpus = [torch.cuda.get_device_name(i) for i in range(count)]
    return {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "available_cores": available_cores(),
        "torch_threads": torch.get_num_threads(),
        "load_average": _load_average(),
        "gpus": gpus,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "numpy": np.__version__,
        "platform": platform.platform(),
    }
