"""Which devices exist, and resolving ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"`` and ``"all"``."""

from __future__ import annotations

import re

import torch

from gradcheck_lab.errors import DeviceError

_DEVICE_PATTERN = re.compile(r"^(cpu|cuda|mps)(?::(\d+))?$")


def cuda_device_count() -> int:
    """Number of CUDA devices torch can use (0 on a CPU-only build or machine)."""
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def available_devices() -> list[str]:
    """Every device present: ``["cpu", "cuda:0", "cuda:1", ..., "mps"]``."""
    devices = ["cpu"] + [f"cuda:{i}" for i in range(cuda_device_count())]
    return devices + (["mps"] if mps_available() else [])


def resolve_device(device: str | torch.device) -> torch.device:
    """Parse and validate one device; raise :class:`DeviceError` if it is malformed or absent."""
    text = str(device).strip().lower()
    known = _RESOLVED.get(text)
    return known if known is not None else _RESOLVED.setdefault(text, _resolve(text, device))


_RESOLVED: dict[str, torch.device] = {}
"""Devices resolved so far, by spelling: every check resolves its device, and the devices a process has do not
change (an absent one raises, and is not remembered)."""


def _resolve(text: str, device: str | torch.device) -> torch.device:
    match = _DEVICE_PATTERN.match(text)
    if not match:
        raise DeviceError(f"unknown device {device!r}; expected 'cpu', 'cuda', 'cuda:N' or 'mps'")
    kind, index = match.group(1), match.group(2)
    if kind == "cuda":
        count = cuda_device_count()
        if count == 0:
            raise DeviceError(
                f"device {text!r} was requested but CUDA is not available here "
                f"(torch {torch.__version__}, torch.cuda.is_available() is False)"
            )
        if index is not None and int(index) >= count:
            raise DeviceError(f"device {text!r} does not exist: this machine has {count} CUDA device(s)")
    if kind == "mps" and not mps_available():
        raise DeviceError("device 'mps' was requested but torch.backends.mps.is_available() is False")
    if kind == "cpu" and index not in (None, "0"):
        raise DeviceError(f"device {text!r}: the CPU has no index other than 0")
    return torch.device(text)


def resolve_devices(spec: str | torch.device | list[str] | tuple[str, ...]) -> list[str]:
    """Expand a device spec into a validated list.

    ``"all"`` means every device present; ``"cpu,cuda:1"`` and sequences are split; each
    named device must exist.
    """
    if isinstance(spec, torch.device):
        items = [str(spec)]
    elif isinstance(spec, str):
        items = [s for s in (part.strip() for part in spec.split(",")) if s]
    else:
        items = [str(s) for s in spec]
    if not items:
        raise DeviceError("no device given")
    out: list[str] = []
    for item in items:
        names = available_devices() if item.lower() == "all" else [str(resolve_device(item))]
        out.extend(name for name in names if name not in out)
    return out


def worker_device(device: str, worker_id: str | None, cuda_count: int) -> str:
    """The CUDA device an xdist worker should use for a bare ``"cuda"``: GPU ``k mod N`` for worker ``gwk``.

    Any other device, a run without workers, or a machine without GPUs leaves ``device`` unchanged.
    """
    if device != "cuda" or not worker_id or cuda_count == 0:
        return device
    match = re.fullmatch(r"gw(\d+)", worker_id)
    return f"cuda:{int(match.group(1)) % cuda_count}" if match else device
