"""Misuses that `mypy --strict` must report (tests/test_typing.py pins each line's error code)."""

from __future__ import annotations

import numpy as np
import torch

import gradcheck_lab as gl

x = np.ones(3)
report = gl.check_gradients(lambda x: (0.0, (x,)), lambda t: t.sum(), (x,))
worst = report.max_error  # attr-defined: the field is max_abs_error
gl.check_gradients(lambda x: (0.0, (x,)), lambda t: t.sum(), (x,), rtol="1e-3")  # arg-type
gl.check_optimizer(object, torch.optim.SGD, steps="50")  # arg-type
entry = gl.no_such_entry_point  # attr-defined
