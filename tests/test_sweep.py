"""`scale sweep` end to end on sweeps/markov-tiny.toml with real training: tables, reruns, kill -9 and resume,
two sweeps at once, a crashing run and the plan (the Ray executor's table: tests/test_ops_ray.py, on its
cluster). Real subprocesses where the process boundary is the point (kill -9, two sweeps at once); the other
commands in-process."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import REPO, SCALE, copy_results, scale_in_process

from scaling_cli.plan import load_sweep
from scaling_cli.store import Store
from scaling_cli.sweep import Unit, UnitTask, build_units, plan_sweep, prepare_data, run_unit

TINY = REPO / "sweeps" / "markov-tiny.toml"
DESIGN_RUN_COLUMNS = {
    "run_id",
    "sweep",
    "dataset",
    "tokenizer",
    "n_layer",
    "d_model",
    "n_head",
    "seq_len",
    "params",
    "params_nonembed",
    "tokens",
    "flops",
    "flops_6nd",
    "lr",
    "batch_size",
    "schedule",
    "seed",
    "train_loss",
    "val_loss",
    "val_bpb",
    "status",
    "wall_s",
    "tokens_per_s",
    "device",
    "bpb_lz4",
    "bpb_lz4hc",
    "bpb_zlib",
    "bpb_bz2",
    "bpb_lzma",
    "tokens_per_param",
    "branch_of",
    "error",
}
DESIGN_CURVE_COLUMNS = {"run_id", "step", "tokens", "flops", "lr", "train_loss", "val_loss", "val_bpb", "wall_s"}


def run_ids() -> list[str]:
    return sorted(r.run_id for r in load_sweep(TINY).runs())


def attempts(out: Path) -> dict[str, list[dict]]:
    store = Store(out)
    return {run_id: store.attempts(run_id) for run_id in run_ids()}


def start_sweep(out: Path, *extra: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [SCALE, "sweep", str(TINY), "--out", str(out), *extra],
        cwd=REPO,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture(scope="module")
def baseline(tiny_sweep, tmp_path_factory):
    """One complete sweep of markov-tiny with the local executor (the session's, copied), and its output."""
    trained, result = tiny_sweep
    return copy_results(trained, tmp_path_factory.mktemp("baseline") / "out"), result


def test_sweep_writes_both_tables_with_one_row_per_run(baseline):
    out, result = baseline
    assert result.returncode == 0, result.stderr
    runs = pd.read_parquet(out / "runs.parquet")
    curves = pd.read_parquet(out / "curves.parquet")
    assert DESIGN_RUN_COLUMNS <= set(runs.columns)
    assert DESIGN_CURVE_COLUMNS <= set(curves.columns)
    assert sorted(runs.run_id) == run_ids()
    assert set(runs.status) == {"done"}
    assert set(curves.run_id) == set(runs.run_id)
    assert (runs.val_loss < 2.77).all()  # below the uniform 16-symbol loss: the models learned
    branches = runs[runs.branch_of != ""]
    assert len(branches) == 3 and set(branches.branch_of) <= set(runs.run_id)
    assert (out / "spec.toml").read_text() == TINY.read_text()
    assert len(result.stdout.splitlines()) >= 7  # one plain line per run when stdout is not a terminal


def test_rerun_trains_nothing(baseline):
    # Speed is a benchmark's business (shared machines are noisy); what users rely on is that nothing retrains.
    out, _ = baseline
    rows_before = {p: p.stat().st_mtime_ns for p in out.glob("runs/*/row.json")}
    curves_before = {p: p.read_bytes() for p in out.glob("runs/*/curve.jsonl")}
    result = scale_in_process("sweep", TINY, "--out", out)
    assert result.returncode == 0, result.stderr
    assert {p: p.read_bytes() for p in out.glob("runs/*/curve.jsonl")} == curves_before
    assert {p: p.stat().st_mtime_ns for p in out.glob("runs/*/row.json")} == rows_before
    assert all(len(lines) == 1 for lines in attempts(out).values())
    status = scale_in_process("status", out, "--summary")
    assert status.returncode == 0, status.stderr
    assert "6 done" in status.stdout and "runs.parquet" in status.stdout


def test_dry_run_shows_states_and_saved_compute(baseline):
    out, _ = baseline
    result = scale_in_process("sweep", TINY, "--out", out, "--dry-run")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count(" done ") == 6
    assert "saves" in result.stdout and "estimated wall time" in result.stdout
    assert "measured" in result.stdout  # the estimate uses this directory's finished runs


def test_plan_counts_trunk_sharing():
    spec = load_sweep(TINY)
    plan = plan_sweep(spec, "/nonexistent/out")
    assert len(build_units(spec.runs())) == 3
    independent = sum(r.flops for r in spec.runs())
    assert plan.total_flops == pytest.approx(independent)
    branch_starts = sum(
        p.run.flops_per_token * p.branch_step * p.run.train.batch_size * p.run.model.seq_len
        for p in plan.runs
        if p.branch_of
    )
    assert plan.saved_flops == pytest.approx(branch_starts) and plan.saved_flops > 0
    assert plan.counts()["pending"] == 6


def early_in_run(store: Store, run, done: list[str]) -> bool:
    """Checkpointed and in the first half of its steps, so far from finishing when it is killed."""
    if run.run_id in done or not (store.run_dir(run.run_id) / "checkpoint.pt").exists():
        return False
    point = store.last_point(run.run_id) or {}
    total = run.tokens // (run.train.batch_size * run.model.seq_len)
    return point.get("step", total) <= total // 2


def test_kill_9_then_rerun_trains_every_run_exactly_once(tmp_path):
    out = tmp_path / "out"
    sweep = start_sweep(out)
    store = Store(out)
    plans = load_sweep(TINY).runs()
    interrupted = None
    deadline = time.time() + 300
    while time.time() < deadline and sweep.poll() is None:
        done = [r for r in run_ids() if store.read_row(r)]
        running = [r.run_id for r in plans if early_in_run(store, r, done)]
        if done and running:
            interrupted = running[0]
            sweep.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    sweep.wait()
    assert interrupted is not None, "the sweep finished before it could be killed mid-run"
    finished_before = {
        r: store.run_dir(r).joinpath("row.json").stat().st_mtime_ns for r in run_ids() if store.read_row(r)
    }
    unit = next(u.unit_id for u in build_units(load_sweep(TINY).runs()) if interrupted in [r.run_id for r in u.runs])
    for _ in range(100):  # the orphaned worker notices its parent died and exits, freeing the claim
        if not store.is_claimed(unit):
            break
        time.sleep(0.1)
    assert not store.is_claimed(unit), "the worker outlived the killed sweep"
    assert store.read_row(interrupted) is None
    result = scale_in_process("sweep", TINY, "--out", out)  # the resume needs no process of its own
    assert result.returncode == 0, result.stderr
    runs = pd.read_parquet(out / "runs.parquet")
    assert sorted(runs.run_id) == run_ids() and set(runs.status) == {"done"}
    tries = attempts(out)
    for run_id, mtime in finished_before.items():
        assert len(tries[run_id]) == 1
        assert store.run_dir(run_id).joinpath("row.json").stat().st_mtime_ns == mtime
    assert [t["resumed"] for t in tries[interrupted]] == [False, True]
    steps = [p["step"] for p in store.read_curve(interrupted)]
    assert steps == sorted(set(steps))


def test_two_concurrent_sweeps_train_each_run_once(tmp_path):
    out = tmp_path / "out"
    first, second = start_sweep(out), start_sweep(out)
    sizes = []
    while first.poll() is None or second.poll() is None:
        if (out / "runs.parquet").exists():  # a reader during the sweep always sees a whole table
            sizes.append(len(pd.read_parquet(out / "runs.parquet")))
        time.sleep(0.25)
    assert first.wait() == 0 and second.wait() == 0, first.stderr.read() + second.stderr.read()
    assert all(len(lines) == 1 for lines in attempts(out).values())
    assert sorted(pd.read_parquet(out / "runs.parquet").run_id) == run_ids()
    assert sizes == sorted(sizes)


def test_a_run_that_always_crashes_ends_failed_and_the_others_finish(tmp_path):
    units = build_units(load_sweep(TINY).runs())
    doomed = units[0]
    out = tmp_path / "out"
    result = scale_in_process(
        "sweep", TINY, "--out", out, "--workers", "2", "--retries", "1", env={"SCALE_FAIL_RUNS": doomed.unit_id}
    )
    assert result.returncode == 1
    runs = pd.read_parquet(out / "runs.parquet").set_index("run_id")
    doomed_ids = [r.run_id for r in doomed.runs]
    assert set(runs.loc[doomed_ids, "status"]) == {"failed"}
    assert "injected failure" in runs.loc[doomed.unit_id, "error"]
    assert len(Store(out).attempts(doomed.unit_id)) == 2
    assert set(runs.drop(index=doomed_ids).status) == {"done"} and len(runs) == 6
    assert f"failed {doomed.unit_id}" in result.stderr
    status = scale_in_process("status", out)
    assert status.returncode == 0 and "2 failed" in status.stdout and "injected failure" in status.stdout


def test_a_diverged_run_is_recorded_and_not_retried(tmp_path):
    spec = load_sweep(TINY)
    run = min(spec.runs(), key=lambda r: (r.params, r.tokens))
    poisoned = dataclasses.replace(run, train=dataclasses.replace(run.train, nan_at_step=3))
    task = UnitTask(
        unit=Unit(trunk=poisoned),
        store_root=str(tmp_path),
        data=prepare_data(spec),
        threads=1,
        final_attempt=False,
        sweep_pid=os.getpid(),
    )
    first = run_unit(task)
    assert [o.status for o in first.outcomes] == ["diverged"]
    row = Store(tmp_path).read_row(run.run_id)
    assert row["status"] == "diverged" and row["diverged_step"] == 3
    assert [o.status for o in run_unit(task).outcomes] == ["skipped"]
    assert len(Store(tmp_path).attempts(run.run_id)) == 1
