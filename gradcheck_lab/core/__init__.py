"""Judging: dtypes, devices, the error model, comparison, floor, kinks, oracle, diagnosis, verdict and report.

Nothing here imports from the layers above it (gradients, optim, cases, runner, bench, cli).
"""
