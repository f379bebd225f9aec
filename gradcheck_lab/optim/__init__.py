"""Optimizer checks: an update rule or optimizer class against torch.optim, step by step."""
