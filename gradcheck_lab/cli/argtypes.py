"""argparse types and checks shared by the command-line tools: every bad argument is a usage error
(exit 2) found while parsing, before any work starts."""

from __future__ import annotations

import argparse
import importlib.util
import os


def positive_int(text: str) -> int:
    """An integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {value}")
    return value


def size_list(text: str) -> list[int]:
    """A comma list of whole numbers >= 1, e.g. ``16,64,256``."""
    items = [s.strip() for s in text.split(",") if s.strip()]
    if not items:
        raise argparse.ArgumentTypeError("expected a comma list of sizes such as 16,64,256, got nothing")
    try:
        return [positive_int(s) for s in items]
    except argparse.ArgumentTypeError as exc:
        raise argparse.ArgumentTypeError(f"sizes {text!r}: {exc}") from None


def output_path(text: str) -> str:
    """A file path whose folder exists (checked now, not after the run)."""
    folder = os.path.dirname(os.path.abspath(text))
    if not os.path.isdir(folder):
        raise argparse.ArgumentTypeError(f"cannot write {text!r}: folder {folder!r} does not exist")
    if os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"cannot write {text!r}: it is a folder")
    return text


def plot_path(text: str) -> str:
    """An output path for a plot, which needs matplotlib (the ``plot`` extra)."""
    if importlib.util.find_spec("matplotlib") is None:
        raise argparse.ArgumentTypeError("plotting needs matplotlib: pip install 'gradcheck-lab[plot]'")
    return output_path(text)
