"""Root pytest configuration: hypothesis profiles and the gradcheck-lab plugin.

Profiles: ``ci`` (derandomized, bounded, no deadline, no example database: the same run
every time, safe under xdist workers), ``dev`` (the default) and ``thorough`` (1,000
examples a case). Pick one with ``--hypothesis-profile NAME`` or ``HYPOTHESIS_PROFILE``.
"""

from __future__ import annotations

import os
from importlib.metadata import entry_points

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", max_examples=20, derandomize=True, deadline=None, database=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", max_examples=50, deadline=None)
settings.register_profile("thorough", max_examples=1000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

# Installed, the plugin loads through its pytest11 entry point; from a bare checkout
# (PYTHONPATH=.), load it here instead.
if not any(ep.value.startswith("gradcheck_lab.pytest_plugin") for ep in entry_points(group="pytest11")):
    pytest_plugins = ["gradcheck_lab.pytest_plugin"]
