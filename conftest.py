"""Root pytest configuration: hypothesis profiles and the gradcheck-lab plugin.

Profiles: the plugin's ``gradcheck-ci`` / ``gradcheck-dev`` / ``gradcheck-thorough`` (any project can use
them), registered here under this repository's short names too: ``ci`` (derandomized, bounded, no deadline,
no example database: the same run every time, safe under xdist workers), ``dev`` (the default) and
``thorough`` (1,000 examples a case). Pick one with ``--hypothesis-profile NAME`` or ``HYPOTHESIS_PROFILE``.
"""

from __future__ import annotations

import os
from importlib.metadata import entry_points

from hypothesis import settings

from gradcheck_lab.pytest_plugin import PROFILES, register_profiles

register_profiles()
for _name in PROFILES:
    settings.register_profile(_name.removeprefix("gradcheck-"), settings.get_profile(_name))
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

# Installed, the plugin loads through its pytest11 entry point; from a bare checkout
# (PYTHONPATH=.), load it here instead.
if not any(ep.value.startswith("gradcheck_lab.pytest_plugin") for ep in entry_points(group="pytest11")):
    pytest_plugins = ["gradcheck_lab.pytest_plugin"]
