"""CPU threads: a run takes the threads its step size pays for, out of the cores left free; a lone run gets every
usable core, units started together share them, and tiny models stay on one thread."""

from __future__ import annotations

import os

from conftest import REPO, run_scale

from scaling_cli.plan import load_sweep
from scaling_cli.store import Store
from scaling_cli.sweep import FLOPS_PER_THREAD, cores_for_unit, threads_for

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
    widest = runs[max(runs)]
    assert threads_for(widest, 2) == 2  # the demo's widest shape: every core it may have
    assert threads_for(widest, 1) == 1 and threads_for(widest, None) is None
    assert FLOPS_PER_THREAD < 0.71e9 / 2


def test_cores_for_a_unit_follow_what_is_free():
    assert cores_for_unit(cores=8, taken=0, starting=1, idle=None, largest=8) == 8  # a lone unit: every core
    assert cores_for_unit(cores=8, taken=0, starting=2, idle=None, largest=8) == 4  # two start together
    assert cores_for_unit(cores=8, taken=4, starting=1, idle=None, largest=8) == 4  # the last unit: what is left
    assert cores_for_unit(cores=8, taken=0, starting=1, idle=None, largest=2) == 2  # one Ray node's CPUs
    assert cores_for_unit(cores=2, taken=0, starting=1, idle=0.1, largest=2) == 1  # a machine busy elsewhere
    assert cores_for_unit(cores=2, taken=2, starting=3, idle=None, largest=2) == 1  # never zero


def test_each_start_records_the_threads_it_trained_with(tmp_path):
    pair = run_scale("sweep", spec(tmp_path, "[32]", 128, "[1e-2, 3e-3]"), "--out", tmp_path / "pair", "--workers", "2")
    assert pair.returncode == 0, pair.stderr
    given = [t for attempts in threads_per_run(tmp_path / "pair").values() for t in attempts]
    assert len(given) == 2 and all(1 <= t <= max(1, CORES // 2) for t in given)  # two units share the cores
