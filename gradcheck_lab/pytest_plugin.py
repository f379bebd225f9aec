"""pytest plugin: ``--device`` / ``--dtype`` options, ``device`` / ``dtype`` parametrization and a ``cuda`` marker.

Installed with the package (``pytest11`` entry point). A test that takes an argument named
``device`` or ``dtype`` is parametrized at collection, so it works with ``@given`` (no
function-scoped fixture) and gets ids like ``test_x[cuda-float32]``.

- default: ``cpu`` and ``cuda``; the ``cuda`` cases skip, with the reason, where CUDA is absent;
- ``--device all``: every device present; ``--device cuda:1,cpu``: exactly those, and asking
  for a device that does not exist is a usage error, not a silent skip;
- under pytest-xdist a bare ``cuda`` means GPU ``k mod N`` for worker ``gwk``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import pytest
import torch

from gradcheck_lab.devices import cuda_device_count, resolve_devices, worker_device
from gradcheck_lab.dtypes import dtype_name, resolve_dtype
from gradcheck_lab.errors import GradcheckError

DEFAULT_DTYPES = ("float64", "float32")


@dataclass(frozen=True)
class DeviceParam:
    value: str
    id: str
    skip_reason: str | None = None


def no_cuda_reason() -> str:
    return (f"CUDA is not available (torch {torch.__version__}, torch.cuda.is_available() is "
            f"{torch.cuda.is_available()}); the cpu cases still run")


def device_params(spec: str | None, worker_id: str | None = None) -> list[DeviceParam]:
    """The device parametrization for a ``--device`` value (None: cpu, plus cuda or its skip)."""
    count = cuda_device_count()
    if spec is None:
        cuda = DeviceParam(worker_device("cuda", worker_id, count), "cuda", None if count else no_cuda_reason())
        return [DeviceParam("cpu", "cpu"), cuda]
    return [DeviceParam(worker_device(name, worker_id, count), name) for name in _requested(spec)]


def _requested(spec: str) -> list[str]:
    names = []
    for item in (s.strip() for s in spec.split(",") if s.strip()):
        # Keep a bare "cuda" bare, so xdist workers can spread it over the GPUs.
        names.extend(["cuda"] if item.lower() == "cuda" and resolve_devices("cuda") else resolve_devices(item))
    return list(dict.fromkeys(names))


def dtype_params(spec: str | None) -> list[str]:
    if spec is None:
        return list(DEFAULT_DTYPES)
    return [dtype_name(resolve_dtype(s.strip())) for s in spec.split(",") if s.strip()]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("gradcheck-lab")
    group.addoption("--device", default=None,
                    help="devices for tests taking `device`: cpu, cuda, cuda:1, mps, all, or a comma list "
                         "(default: cpu and cuda, cuda skipped where absent)")
    group.addoption("--dtype", default=None,
                    help=f"dtypes for tests taking `dtype`, comma-separated (default: {','.join(DEFAULT_DTYPES)})")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "cuda: needs a CUDA device; skipped, with the reason, where none exists")
    try:
        config.stash[_DEVICES] = device_params(config.getoption("--device"), os.environ.get("PYTEST_XDIST_WORKER"))
        config.stash[_DTYPES] = dtype_params(config.getoption("--dtype"))
    except GradcheckError as exc:
        raise pytest.UsageError(f"gradcheck-lab: {exc}") from None


_DEVICES = pytest.StashKey[list[DeviceParam]]()
_DTYPES = pytest.StashKey[list[str]]()


def _parametrized_elsewhere(metafunc: pytest.Metafunc, name: str) -> bool:
    """True when the test parametrizes ``name`` itself or a fixture of that name is defined."""
    for marker in metafunc.definition.iter_markers("parametrize"):
        names = marker.args[0] if marker.args else marker.kwargs.get("argnames", "")
        names = [n.strip() for n in names.split(",")] if isinstance(names, str) else list(names)
        if name in names:
            return True
    return name in getattr(metafunc, "_arg2fixturedefs", {})


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    config = metafunc.config
    if "device" in metafunc.fixturenames and not _parametrized_elsewhere(metafunc, "device"):
        metafunc.parametrize("device", [
            pytest.param(d.value, id=d.id, marks=[pytest.mark.skip(reason=d.skip_reason)] if d.skip_reason else [])
            for d in config.stash[_DEVICES]
        ])
    if "dtype" in metafunc.fixturenames and not _parametrized_elsewhere(metafunc, "dtype"):
        metafunc.parametrize("dtype", config.stash[_DTYPES], ids=config.stash[_DTYPES])


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    has_cuda = cuda_device_count() > 0
    for item in items:
        if item.get_closest_marker("cuda") and not has_cuda:
            item.add_marker(pytest.mark.skip(reason=no_cuda_reason()))
        params = getattr(getattr(item, "callspec", None), "params", {})
        if str(params.get("device", "cpu")) != "cpu":
            _without_deadline(item)


def _without_deadline(item: pytest.Item) -> None:
    """First calls on a GPU (context, kernels) blow hypothesis deadlines: run such tests without one."""
    test = getattr(item, "obj", None)
    current = getattr(test, "_hypothesis_internal_use_settings", None)
    if current is not None and current.deadline is not None:
        from hypothesis import settings

        test._hypothesis_internal_use_settings = settings(current, deadline=None)


def pytest_report_header(config: pytest.Config) -> str:
    devices = ", ".join(d.id + (" (skipped: no CUDA)" if d.skip_reason else "") for d in config.stash[_DEVICES])
    return f"gradcheck-lab: devices {devices}; dtypes {', '.join(config.stash[_DTYPES])}"
