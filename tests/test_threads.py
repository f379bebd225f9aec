"""Thread budgets: core counting (affinity, cgroup quota, xdist share) and restoring both pools."""

from __future__ import annotations

import os

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
