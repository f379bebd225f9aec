"""Hand-derived NumPy forward and backward passes and optimizers.

This package never imports torch: it is the independent side of every check.
Each backward writes out the chain rule that gives it in its docstring.
"""

from . import activations, embedding, linear, losses, models, optim, tutorial

__all__ = ["activations", "embedding", "linear", "losses", "models", "optim", "tutorial"]
