"""pytest plugin: ``--gradcheck-device`` / ``--gradcheck-dtype``, ``device`` / ``dtype`` parametrization,
a ``gradcheck_cuda`` marker and the ``gradcheck-*`` hypothesis profiles.

Installed with the package (``pytest11`` entry point), so it loads in *every* pytest run of the
environment. It therefore stays out of the way: its options and marker are prefixed, loading it
imports nothing heavy (torch is imported only when a test takes ``device``/``dtype`` or carries
the marker), and its header line is printed only in runs that use it. Turn it off with
``-p no:gradcheck_lab``.

A test that takes an argument named ``device`` or ``dtype`` that nothing else provides (no
fixture of that name, no ``parametrize`` of it, no conftest hook parametrizing it) is
parametrized at collection, so it works with ``@given`` and gets ids like ``test_x[cuda-float32]``.
``device`` is a string (``"cpu"``, ``"cuda:0"``), ``dtype`` a ``torch.dtype`` (``torch.zeros(2, dtype=dtype,
device=device)`` works) and ``dtype_name`` its name (``"float32"``), parametrized the same way.

- default: ``cpu`` and ``cuda``; the ``cuda`` cases skip, with the reason, where CUDA is absent;
- ``--gradcheck-device all``: every device present; ``--gradcheck-device cuda:1,cpu``: exactly those,
  and asking for a device that does not exist is a usage error, not a silent skip;
- under pytest-xdist a bare ``cuda`` means GPU ``k mod N`` for worker ``gwk``.

Hypothesis profiles (:data:`PROFILES`): ``--hypothesis-profile gradcheck-ci`` (derandomized, bounded, no
deadline, no example database), ``gradcheck-dev`` and ``gradcheck-thorough`` (1,000 examples a case) work in
any project; they are registered when one of them is asked for (hypothesis is not imported otherwise), or by
:func:`register_profiles`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

from gradcheck_lab.errors import GradcheckError

if TYPE_CHECKING:
    import torch

DEFAULT_DTYPES = ("float64", "float32")
MARKER = "gradcheck_cuda"
T = TypeVar("T")

PROFILES: dict[str, dict[str, Any]] = {
    "gradcheck-ci": {"max_examples": 20, "derandomize": True, "deadline": None, "database": None,
                     "print_blob": True, "suppress_health_check": ["too_slow"]},
    "gradcheck-dev": {"max_examples": 50, "derandomize": False, "deadline": None},
    "gradcheck-thorough": {"max_examples": 1000, "derandomize": False, "deadline": None,
                           "suppress_health_check": ["too_slow"]},
}
"""The hypothesis profiles the plugin ships: name -> settings (health checks by name). Every setting that
differs between them is written in each: a profile inherits the rest from hypothesis's default, which under a
``CI`` environment variable is hypothesis's own ``ci`` profile (derandomized)."""


def register_profiles() -> None:
    """Register :data:`PROFILES` with hypothesis (``settings.load_profile("gradcheck-ci")`` then works)."""
    from hypothesis import HealthCheck, settings

    for name, values in PROFILES.items():
        checks = [HealthCheck[check] for check in values.get("suppress_health_check", ())]
        settings.register_profile(name, **{**values, "suppress_health_check": checks})


@dataclass(frozen=True)
class DeviceParam:
    value: str
    id: str
    skip_reason: str | None = None


# Thin wrappers: the torch-importing modules load on first call, not with the plugin.
def cuda_device_count() -> int:
    from gradcheck_lab.core.devices import cuda_device_count as count

    return count()


def resolve_devices(spec: str) -> list[str]:
    from gradcheck_lab.core.devices import resolve_devices as resolve

    return resolve(spec)


def no_cuda_reason() -> str:
    import torch

    return (f"CUDA is not available (torch {torch.__version__}, torch.cuda.is_available() is "
            f"{torch.cuda.is_available()}); the cpu cases still run")


def device_params(spec: str | None, worker_id: str | None = None) -> list[DeviceParam]:
    """The device parametrization for a ``--gradcheck-device`` value (None: cpu, plus cuda or its skip)."""
    from gradcheck_lab.core.devices import worker_device

    count = cuda_device_count()
    if spec is None:
        cuda = DeviceParam(worker_device("cuda", worker_id, count), "cuda", None if count else no_cuda_reason())
        return [DeviceParam("cpu", "cpu"), cuda]
    return [DeviceParam(worker_device(name, worker_id, count), name) for name in _requested(spec)]


def _requested(spec: str) -> list[str]:
    names: list[str] = []
    for item in (s.strip() for s in spec.split(",") if s.strip()):
        # Keep a bare "cuda" bare, so xdist workers can spread it over the GPUs.
        names.extend(["cuda"] if item.lower() == "cuda" and resolve_devices("cuda") else resolve_devices(item))
    return list(dict.fromkeys(names))


def dtype_params(spec: str | None) -> list[str]:
    if spec is None:
        return list(DEFAULT_DTYPES)
    from gradcheck_lab.core.dtypes import dtype_name, resolve_dtype

    return [dtype_name(resolve_dtype(s.strip())) for s in spec.split(",") if s.strip()]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("gradcheck-lab", "gradcheck-lab (turn off with -p no:gradcheck_lab)")
    group.addoption("--gradcheck-device", dest="gradcheck_device", default=None,
                    help="devices for tests taking `device`: cpu, cuda, cuda:1, mps, all, or a comma list "
                         "(default: cpu and cuda, cuda skipped where absent)")
    group.addoption("--gradcheck-dtype", dest="gradcheck_dtype", default=None,
                    help=f"dtypes for tests taking `dtype`, comma-separated (default: {','.join(DEFAULT_DTYPES)})")


class _State:
    """The parametrization, computed on first use (that is when torch is imported)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self._devices: list[DeviceParam] | None = None
        self._dtypes: list[str] | None = None
        self.used = False
        self.announced = False

    def devices(self) -> list[DeviceParam]:
        if self._devices is None:
            spec = self.config.getoption("gradcheck_device")
            self._devices = _usage(lambda: device_params(spec, os.environ.get("PYTEST_XDIST_WORKER")))
        return self._devices

    def dtypes(self) -> list[str]:
        if self._dtypes is None:
            spec = self.config.getoption("gradcheck_dtype")
            self._dtypes = _usage(lambda: dtype_params(spec))
        return self._dtypes

    def header(self) -> str:
        devices = ", ".join(d.id + (" (skipped: no CUDA)" if d.skip_reason else "") for d in self.devices())
        return f"gradcheck-lab: devices {devices}; dtypes {', '.join(self.dtypes())}"


def _usage(make: Callable[[], T]) -> T:
    __tracebackhide__ = True
    try:
        return make()
    except GradcheckError as exc:
        raise pytest.UsageError(f"gradcheck-lab: {exc}") from None


_STATE = pytest.StashKey[_State]()


def _explicit(config: pytest.Config) -> bool:
    return config.getoption("gradcheck_device") is not None or config.getoption("gradcheck_dtype") is not None


@pytest.hookimpl(tryfirst=True)  # before hypothesis's plugin loads the profile asked for
def pytest_configure(config: pytest.Config) -> None:
    profile = config.getoption("hypothesis_profile", None)
    if isinstance(profile, str) and profile in PROFILES:
        register_profiles()
    config.addinivalue_line("markers", f"{MARKER}: needs a CUDA device; skipped, with the reason, where none exists")
    state = config.stash[_STATE] = _State(config)
    if _explicit(config):  # a bad value is a usage error before any test runs
        state.devices()
        state.dtypes()


def _parametrized_elsewhere(metafunc: pytest.Metafunc, name: str) -> bool:
    """True when the test, a fixture or another plugin/conftest hook already provides ``name``."""
    for marker in metafunc.definition.iter_markers("parametrize"):
        names = marker.args[0] if marker.args else marker.kwargs.get("argnames", "")
        names = [n.strip() for n in names.split(",")] if isinstance(names, str) else list(names)
        if name in names:
            return True
    if any(name in call.params for call in getattr(metafunc, "_calls", [])):
        return True
    return name in getattr(metafunc, "_arg2fixturedefs", {})


@pytest.hookimpl(trylast=True)  # after the project's own hooks, so we can see what they parametrized
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    state = metafunc.config.stash[_STATE]
    if "device" in metafunc.fixturenames and not _parametrized_elsewhere(metafunc, "device"):
        state.used = True
        metafunc.parametrize("device", [
            pytest.param(d.value, id=d.id, marks=[pytest.mark.skip(reason=d.skip_reason)] if d.skip_reason else [])
            for d in state.devices()
        ])
    # `dtype` is a torch.dtype, `dtype_name` its name; a test may take either or both.
    wanted = [name for name in ("dtype", "dtype_name")
              if name in metafunc.fixturenames and not _parametrized_elsewhere(metafunc, name)]
    if wanted:
        state.used = True
        names = state.dtypes()
        dtypes = [torch_dtype(name) for name in names]
        rows: list[object] = list(zip(dtypes, names, strict=True)) if len(wanted) == 2 else \
            list(dtypes if wanted == ["dtype"] else names)
        metafunc.parametrize(",".join(wanted), rows, ids=names)


def torch_dtype(name: str) -> torch.dtype:
    from gradcheck_lab.core.dtypes import resolve_dtype

    return resolve_dtype(name)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    marked = [item for item in items if item.get_closest_marker(MARKER)]
    if marked:
        config.stash[_STATE].used = True
        if cuda_device_count() == 0:
            reason = no_cuda_reason()
            for item in marked:
                item.add_marker(pytest.mark.skip(reason=reason))
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if "device" in params and str(params["device"]) != "cpu":
            _without_deadline(item)


def _without_deadline(item: pytest.Item) -> None:
    """First calls on a GPU (context, kernels) blow hypothesis deadlines: run such tests without one."""
    test = getattr(item, "obj", None)
    current = getattr(test, "_hypothesis_internal_use_settings", None)
    if current is not None and current.deadline is not None:
        from hypothesis import settings

        test._hypothesis_internal_use_settings = settings(current, deadline=None)  # type: ignore[union-attr]


def pytest_report_header(config: pytest.Config) -> str | None:
    """Printed only when the options were given; otherwise the summary says it, if a test used the plugin."""
    state = config.stash[_STATE]
    if not _explicit(config):
        return None
    state.announced = True
    return state.header()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    state = config.stash[_STATE]
    if state.used and not state.announced:
        terminalreporter.write_line(state.header())
