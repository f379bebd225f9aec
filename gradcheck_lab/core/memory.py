"""What a check needs in memory beyond its inputs, and refusing before any work one that cannot fit."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from gradcheck_lab.errors import ResourceError

ORACLE_MEMORY = 6
"""The oracle's peak extra memory, in multiples of the moving inputs' bytes (see :func:`oracle_memory`)."""


def oracle_memory(inputs: Sequence[np.ndarray]) -> int:
    """Bytes the oracle may need beyond its inputs: |v|, one direction, a moved point, the function's own
    intermediates at it, and the work buffers of a confirmation, each the size of the inputs in float64."""
    return ORACLE_MEMORY * sum(8 * int(np.size(x)) for x in inputs)


CHECK_MEMORY = 6
"""A passing check's peak extra memory, in multiples of its inputs as float64 (measured: 6.0x at 4M elements)."""


ALWAYS_AVAILABLE = 64 * 2**20
"""A need this small (64 MiB) is not checked against the system's free memory."""


def available_memory() -> int | None:
    """Bytes the system can give without swapping (``MemAvailable``), or None where it cannot tell."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def require_memory(inputs: Sequence[object], *, oracle: bool, available: int | None = None) -> None:
    """Refuse, before any work, a check whose inputs cannot fit in the memory free on this machine.

    Args:
        inputs: the check's inputs (anything ``np.size`` measures).
        oracle: whether finite differences vote too (they need :data:`ORACLE_MEMORY` more).
        available: free bytes (default: the system's ``MemAvailable``; nothing is refused where unknown).

    Raises:
        ResourceError: the check needs more than ``available``.
    """
    __tracebackhide__ = True
    size = sum(8 * int(np.size(x)) for x in inputs if isinstance(x, np.ndarray | float | int))
    need = (CHECK_MEMORY + (ORACLE_MEMORY if oracle else 0)) * size
    if available is None and need <= ALWAYS_AVAILABLE:
        return  # reading the system's free memory costs more than a small check
    free = available_memory() if available is None else available
    if free is None:
        return
    if need > free:
        extra = f" (finite differences alone need {ORACLE_MEMORY * size / 2**30:.3g} GiB)" if oracle else ""
        fix = "check a smaller input, or pass finite_differences=False" if oracle else "check a smaller input"
        raise ResourceError(f"this check needs about {need / 2**30:.3g} GiB beyond its inputs ({size / 2**30:.3g} GiB "
                            f"as float64){extra}, but only {free / 2**30:.3g} GiB are free: {fix}")
