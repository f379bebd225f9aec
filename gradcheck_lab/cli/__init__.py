"""The ``gradcheck-lab`` command: ``verify``, ``list`` and ``bench``."""

from gradcheck_lab.cli.commands import main

__all__ = ["main"]
