"""Thread budgets: core counting (affinity, cgroup quota, xdist share) and restoring both pools."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from gradcheck_lab.core import threads


def test_available_cores_is_the_affinity_capped_by_the_quota(monkeypatch, tmp_path):
    affinity = len(os.sched_getaffinity(0))
    monkeypatch.setattr(threads, "CGROUP_V1_QUOTA", tmp_path / "absent")
    cpu_max = tmp_path / "cpu.max"
    monkeypatch.setattr(threads, "CGROUP_CPU_MAX", cpu_max)
    cpu_max.write_text("max 100000\n")
    assert threads.available_cores() == affinity
    cpu_max.write_text("50000 100000\n")  # half a CPU: still one core
    assert threads.available_cores() == 1
    cpu_max.write_text(f"{(affinity + 3) * 100000} 100000\n")  # a quota above the affinity changes nothing
    assert threads.available_cores() == affinity


def test_cgroup_v1_quota_is_read_when_v2_is_absent(monkeypatch, tmp_path):
    monkeypatch.setattr(threads, "CGROUP_CPU_MAX", tmp_path / "absent")
    (tmp_path / "q").write_text("150000\n")
    (tmp_path / "p").write_text("100000\n")
    monkeypatch.setattr(threads, "CGROUP_V1_QUOTA", tmp_path / "q")
    monkeypatch.setattr(threads, "CGROUP_V1_PERIOD", tmp_path / "p")
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)))
    assert threads.available_cores() == 2


@pytest.mark.parametrize(("cores", "workers", "expected"), [(8, "2", 4), (8, "3", 2), (2, "4", 1), (4, None, 4),
                                                             (4, "junk", 4), (4, "0", 4)])
def test_each_xdist_worker_gets_its_share(monkeypatch, cores, workers, expected):
    monkeypatch.setattr(threads, "available_cores", lambda: cores)
    if workers is None:
        monkeypatch.delenv("PYTEST_XDIST_WORKER_COUNT", raising=False)
    else:
        monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", workers)
    assert threads.cores_for_this_process() == expected


def _blas_threads() -> int | None:
    threadpoolctl = pytest.importorskip("threadpoolctl")
    pools = threadpoolctl.threadpool_info()
    blas = [p["num_threads"] for p in pools if p["user_api"] == "blas"]
    return max(blas) if blas else None


def test_thread_budget_sets_and_restores_torch_and_blas():
    import numpy as np

    np.dot(np.ones((2, 2)), np.ones((2, 2)))  # load BLAS
    torch_before, blas_before = torch.get_num_threads(), _blas_threads()
    target = 1 if torch_before != 1 else 2
    with threads.thread_budget(target) as n:
        assert n == target
        assert torch.get_num_threads() == target
        if blas_before is not None:
            assert _blas_threads() == target
    assert torch.get_num_threads() == torch_before
    assert _blas_threads() == blas_before


def test_thread_budget_restores_on_error_and_defaults_to_this_process_share(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.setattr(threads, "cores_for_this_process", lambda: 1)
    with pytest.raises(RuntimeError, match="boom"), threads.thread_budget() as n:
        assert n == 1 and torch.get_num_threads() == 1
        raise RuntimeError("boom")
    assert torch.get_num_threads() == before


def test_a_budget_below_one_thread_is_an_error():
    with pytest.raises(ValueError, match="at least 1"), threads.thread_budget(0):
        pass


def test_a_check_runs_with_its_share_of_threads_and_one_blas_thread_and_restores_both():
    import numpy as np

    import gradcheck_lab as gl
    from gradcheck_lab.core import threads

    threadpoolctl = pytest.importorskip("threadpoolctl")

    def blas_threads():
        return [pool["num_threads"] for pool in threadpoolctl.threadpool_info() if pool["user_api"] == "blas"]

    seen = {}

    def reference(x):
        seen["blas"] = blas_threads()
        seen["torch"] = torch.get_num_threads()
        return np.sum(x**2), (2 * x,)

    before_torch = torch.get_num_threads()
    before_blas = blas_threads()
    gl.check_gradients(reference, lambda t: (t**2).sum(), (np.arange(3.0),))
    assert seen["torch"] == threads.cores_for_this_process()
    assert seen["blas"] and all(n == 1 for n in seen["blas"])
    assert torch.get_num_threads() == before_torch
    assert blas_threads() == before_blas


@pytest.mark.parametrize("name, hyper", [
    ("SGD", {"lr": 1e-2, "momentum": 0.9}), ("Adam", {"lr": 1e-3, "amsgrad": True}), ("AdamW", {"lr": 1e-3}),
    ("RMSprop", {"lr": 1e-2, "centered": True, "momentum": 0.5}), ("Adagrad", {"lr": 1e-2}),
    ("Adadelta", {"lr": 1.0, "weight_decay": 1e-2}), ("Adamax", {"lr": 2e-3}), ("NAdam", {"lr": 2e-3}),
    ("RAdam", {"lr": 1e-3, "decoupled_weight_decay": True, "weight_decay": 1e-2}),
])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_reference_optimizers_give_the_same_bits_on_any_number_of_threads(name, hyper, dtype):
    """Large updates run in cache-sized blocks over threads: the result must not depend on the split."""
    from gradcheck_lab.reference import optim, optim_blocks

    rng = np.random.default_rng(0)
    size = 3 * optim_blocks.BLOCK + 123  # several blocks, the last one partial
    start = rng.standard_normal(size).astype(dtype)
    # enough steps for every layout to be tried and one kept (optim_blocks.TUNING_STEPS)
    steps = optim_blocks.TUNING_STEPS + 2
    grads = [rng.standard_normal(size).astype(dtype) * 10.0 ** rng.integers(-8, 2) for _ in range(steps)]
    results = {}
    for count in (1, 3):
        previous = optim_blocks.set_num_threads(count)
        try:
            param = start.copy().reshape(-1, 1)  # a 2-D parameter is blocked through a flat view
            opt = getattr(optim, name)([param], **hyper)
            for grad in grads:
                opt.step([grad.reshape(-1, 1)])
            results[count] = (param.copy(), opt.state_dict()["state"][0])
        finally:
            optim_blocks.set_num_threads(previous)
    np.testing.assert_array_equal(results[1][0], results[3][0])
    for key, value in results[1][1].items():
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(value, results[3][1][key])
    assert not np.array_equal(results[1][0], start.reshape(-1, 1))


def test_reference_thread_count_is_validated_and_restored():
    from gradcheck_lab.reference import optim_blocks

    with pytest.raises(ValueError, match="at least 1"):
        optim_blocks.set_num_threads(0)
    previous = optim_blocks.set_num_threads(2)
    assert optim_blocks.num_threads() == 2
    optim_blocks.set_num_threads(previous)
    assert optim_blocks.num_threads() == (previous or optim_blocks.default_threads())


def test_a_pool_worker_uses_the_share_its_parent_gave_it():
    before = torch.get_num_threads()
    machine_share = threads.cores_for_this_process()
    try:
        threads.set_worker_share(1)
        assert threads.cores_for_this_process() == 1 and torch.get_num_threads() == 1
        torch.set_num_threads(2)
        with threads.check_threads():
            assert torch.get_num_threads() == 1  # the worker's share, not the machine's
        with pytest.raises(ValueError, match="at least 1"):
            threads.set_worker_share(0)
    finally:
        threads.set_worker_share(None)
        torch.set_num_threads(before)
    assert threads.cores_for_this_process() == machine_share


def _large_adam_step(threads_count: int) -> None:
    from gradcheck_lab.reference import optim, optim_blocks

    optim_blocks.set_num_threads(threads_count)
    param = np.zeros(4 * optim_blocks.BLOCK, dtype=np.float32)
    optim.Adam([param], lr=1e-3).step([np.ones_like(param)])
    raise SystemExit(0 if np.allclose(param, -1e-3) else 3)


def test_a_forked_child_starts_its_own_reference_threads():
    """A child forked after the parent's block threads started (the verify workers) must not wait on them."""
    import multiprocessing

    from gradcheck_lab.reference import optim, optim_blocks

    previous = optim_blocks.set_num_threads(2)
    try:
        param = np.zeros(4 * optim_blocks.BLOCK, dtype=np.float32)
        optim.Adam([param]).step([np.ones_like(param)])  # the parent's pool of 2 threads now runs
        child = multiprocessing.get_context("fork").Process(target=_large_adam_step, args=(2,))
        child.start()
        child.join(timeout=60)
        alive = child.is_alive()
        if alive:
            child.terminate()
        assert not alive and child.exitcode == 0
    finally:
        optim_blocks.set_num_threads(previous)
