"""CPU threads: a run takes the threads its step size pays for, out of the cores left free; a lone run gets every
usable core, units started together share them, and tiny models stay on one thread."""

from __future__ import annotations

import os

import pytest
from conftest import REPO, run_scale

from scaling_cli.plan import load_sweep
from scaling_cli.store import Store
from scaling_cli.sweep import FLOPS_PER_THREAD, threads_for

TINY = REPO / "sweeps" / "markov-tiny.toml"
CORES = len(os.sched_getaffinity(0))


def spec(tmp_path, widths: str, seq_len: int, lrs: str = "1e-2"):
    text = (
        TINY.read_text()
        .replace("d_model = [16, 32, 48]", f"d_model = {widths}")
        .replace("seq_len = 32", f"seq_len = {seq_len}")
        .replace("tokens = [12_288, 24_576]", f"tokens = [{16 * seq_len * 6}]")
        .replace("lr = 1e-2", f"lr = {lrs}")
    )
    path = tmp_path / "threads.toml"
    path.write_text(text)
    return path


def threads_per_run(out) -> dict[str, list]:
    store = Store(out)
    return {run_dir.name: [a["threads"] for a in store.attempts(run_dir.name)] for run_dir in store.runs_dir.iterdir()}


def test_thread_rule_on_the_shapes_sweeps_train():
    runs = {(r.model.d_model, r.model.seq_len): r for r in load_sweep(REPO / "sweeps" / "demo.toml").runs()}
    tiny = {r.model.d_model: r for r in load_sweep(TINY).runs()}
    assert all(threads_for(run, 2) == 1 for run in tiny.values())  # 0.05-0.27 GFLOP steps
    assert threads_for(runs[(32, 128)], 2) == 2  # 0.71 GFLOP: 1.7x faster on 2 threads (measured bare loop)
    assert threads_for(runs[(128, 128)], 1) == 1 and threads_for(runs[(128, 128)], None) is None
    assert FLOPS_PER_THREAD < 0.71e9 / 2


@pytest.mark.skipif(CORES < 2, reason="needs two usable cores")
def test_a_lone_run_gets_the_free_cores_and_two_units_share_them(tmp_path):
    lone = run_scale("sweep", spec(tmp_path, "[32]", 128), "--out", tmp_path / "lone", "--workers", "2")
    assert lone.returncode == 0, lone.stderr
    assert list(threads_per_run(tmp_path / "lone").values()) == [[min(CORES, 2)]]
    pair = run_scale("sweep", spec(tmp_path, "[32]", 128, "[1e-2, 3e-3]"), "--out", tmp_path / "pair", "--workers", "2")
    assert pair.returncode == 0, pair.stderr
    given = sorted(t for attempts in threads_per_run(tmp_path / "pair").values() for t in attempts)
    assert given == [max(1, CORES // 2)] * 2 if CORES < 4 else all(t >= 1 for t in given)
