"""CPU threads: a run takes the threads its step size pays for, out of the cores left free; a lone run gets every
usable core, units started together share them, tiny models stay on one thread, and a running unit takes the
cores a finished one freed."""

from __future__ import annotations

import os

import pytest
from conftest import REPO, scale_in_process

from scaling_cli.executors.local import LocalExecutor
from scaling_cli.plan import load_sweep
from scaling_cli.store import Store
from scaling_cli.sweep import (
    FLOPS_PER_THREAD,
    THREAD_ALLOWANCE_NAME,
    cores_for_unit,
    rebalanced_cores,
    run_sweep,
    threads_for,
)

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
    assert threads_for(runs[(32, 64)], 2) == 1  # the demo's base width, 0.30 GFLOP a step: one thread
    widest = runs[max(runs)]
    assert threads_for(widest, 2) == 2  # the demo's widest shape: every core it may have
    assert threads_for(widest, 1) == 1 and threads_for(widest, None) is None
    assert FLOPS_PER_THREAD < 0.71e9 / 2  # width 32 at seq 128 (0.71 GFLOP): 2 threads, 1.7x faster (bare loop)


def test_cores_for_a_unit_follow_what_is_free():
    assert cores_for_unit(cores=8, taken=0, starting=1, idle=None, largest=8) == 8  # a lone unit: every core
    assert cores_for_unit(cores=8, taken=0, starting=2, idle=None, largest=8) == 4  # two start together
    assert cores_for_unit(cores=8, taken=4, starting=1, idle=None, largest=8) == 4  # the last unit: what is left
    assert cores_for_unit(cores=8, taken=0, starting=1, idle=None, largest=2) == 2  # one Ray node's CPUs
    assert cores_for_unit(cores=2, taken=0, starting=1, idle=0.1, largest=2) == 1  # a machine busy elsewhere
    assert cores_for_unit(cores=2, taken=2, starting=3, idle=None, largest=2) == 1  # never zero


def test_each_start_records_the_threads_it_trained_with(tmp_path):
    pair = scale_in_process(
        "sweep", spec(tmp_path, "[32]", 128, "[1e-2, 3e-3]"), "--out", tmp_path / "pair", "--workers", "2"
    )
    assert pair.returncode == 0, pair.stderr
    given = [t for attempts in threads_per_run(tmp_path / "pair").values() for t in attempts]
    assert len(given) == 2 and all(1 <= t <= max(1, CORES // 2) for t in given)  # two units share the cores


def test_freed_cores_go_to_the_units_still_running():
    assert rebalanced_cores({"long": 1}, cores=2, idle=None, largest=2) == {"long": 2}
    assert rebalanced_cores({"a": 1, "b": 2}, cores=8, idle=None, largest=8) == {"a": 4, "b": 4}
    assert rebalanced_cores({"a": 1, "b": 1}, cores=3, idle=None, largest=3) == {"a": 2, "b": 1}
    assert rebalanced_cores({"a": 2}, cores=8, idle=None, largest=4) == {"a": 4}  # one Ray node's CPUs at most
    assert rebalanced_cores({"a": 1}, cores=2, idle=0.2, largest=2) == {"a": 1}  # the core went to other work
    assert rebalanced_cores({"a": 3}, cores=2, idle=None, largest=2) == {"a": 3}  # never taken away


LONG_AND_SHORT = """name = "long-and-short"
dataset = "markov"
device = "cpu"
seeds = [0]
[model]
shapes = [{d_model = 32, n_layer = 2, n_head = 1}]
seq_len = 128
[train]
tokens = [8_192, 204_800]  # 4 and 100 steps of 2,048 tokens: one unit each (cosine)
lr = 3e-3
batch_size = 16
schedule = "cosine"
checkpoint_every = 1_000_000
[eval]
every = 5
batches = 1
"""


class ThisSweepOnly(LocalExecutor):
    """The local executor, blind to other users' load on this shared machine (they would keep the freed core),
    so the test sees the sweep's own decision."""

    def idle_cores(self):
        return None


@pytest.mark.skipif(CORES < 2, reason="needs 2 usable cores")
def test_a_running_unit_takes_the_cores_a_finished_one_freed(tmp_path):
    spec = tmp_path / "long-and-short.toml"
    spec.write_text(LONG_AND_SHORT)
    sweep = load_sweep(spec)
    (long_run,) = [run for run in sweep.runs() if run.train.tokens == 204_800]
    assert threads_for(long_run, 2) == 2  # its steps pay for a second thread
    outcome = run_sweep(sweep, tmp_path / "out", ThisSweepOnly(workers=2), retries=0, poll_s=0.1)
    assert outcome.counts["done"] == 2, outcome

    store = Store(tmp_path / "out")
    (short_row,) = [row for row in store.rows() if row["tokens"] == 8_192]
    assert [a["threads"] for a in store.attempts(long_run.run_id)] == [1]  # it started beside the short unit
    assert [a["threads"] for a in store.attempts(short_row["run_id"])] == [1]
    threads = [point["threads"] for point in store.read_curve(long_run.run_id)]
    assert threads[-1] == 2, threads  # it took the second core once the short unit was done
    assert threads == sorted(threads), threads  # and kept it
    assert not list((tmp_path / "out").rglob(THREAD_ALLOWANCE_NAME))  # allowances go with their units
