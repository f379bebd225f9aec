"""Gradient checks: a hand-derived reference (function, forward/backward pair or layer) against torch.autograd."""
