"""Hand-derived NumPy forward and backward passes and optimizers.

This package never imports torch: it is the independent side of every check.
Each backward writes out the chain rule that gives it in its docstring.
"""

from . import activations, conv, embedding, linear, losses, models, normalization, optim, tutorial

__all__ = ["activations", "conv", "embedding", "linear", "losses", "models", "normalization", "optim", "tutorial"]
