"""Hypothesis strategies for gradient checks: ``gl.strategies`` / ``import gradcheck_lab.strategies``.

The public names of :mod:`gradcheck_lab.gradients.strategies`, where they are defined and documented.
"""

from gradcheck_lab.gradients.strategies import DEFAULT_BOUND as DEFAULT_BOUND
from gradcheck_lab.gradients.strategies import LARGE as LARGE
from gradcheck_lab.gradients.strategies import MIN_MAGNITUDE as MIN_MAGNITUDE
from gradcheck_lab.gradients.strategies import arrays as arrays
from gradcheck_lab.gradients.strategies import elements as elements
from gradcheck_lab.gradients.strategies import input_tuples as input_tuples
from gradcheck_lab.gradients.strategies import labels as labels
from gradcheck_lab.gradients.strategies import linear_inputs as linear_inputs
from gradcheck_lab.gradients.strategies import regression_inputs as regression_inputs
from gradcheck_lab.gradients.strategies import same_shape as same_shape
from gradcheck_lab.gradients.strategies import shapes as shapes
from gradcheck_lab.gradients.strategies import sides as sides
from gradcheck_lab.gradients.strategies import sigmoid_mse_inputs as sigmoid_mse_inputs

__all__ = [
    "DEFAULT_BOUND",
    "LARGE",
    "MIN_MAGNITUDE",
    "arrays",
    "elements",
    "input_tuples",
    "labels",
    "linear_inputs",
    "regression_inputs",
    "same_shape",
    "shapes",
    "sides",
    "sigmoid_mse_inputs",
]
