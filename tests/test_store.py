"""The results store: atomic row files, claims that die with their holder, parquet compaction, status."""

from __future__ import annotations

import json
import math
import multiprocessing as mp
import os
import signal
import time

import pandas as pd
import pytest

from scaling_cli.errors import StoreError
from scaling_cli.store import CURVES_COLUMNS, RUNS_COLUMNS, Store
from scaling_cli.store_status import status


def make_row(run_id: str, status_: str = "done", loss: float = 1.0) -> dict:
    return {"run_id": run_id, "status": status_, "val_loss": loss, "flops": 1e9, "tokens": 1000}


def test_rewriting_a_row_leaves_no_temporary_files(tmp_path):
    store = Store(tmp_path)
    store.write_row("r0", make_row("r0", "failed"))
    store.write_row("r0", make_row("r0", "done"))
    assert store.read_row("r0")["status"] == "done"
    assert [p.name for p in store.run_dir("r0").iterdir()] == ["row.json"]


def test_compaction_writes_documented_columns_one_row_per_run(tmp_path):
    store = Store(tmp_path)
    store.init("name = 'x'\n", [])
    for i, state in enumerate(("done", "diverged", "failed")):
        store.write_row(f"r{i}", make_row(f"r{i}", state))
        (store.run_dir(f"r{i}") / "curve.jsonl").write_text(
            "\n".join(json.dumps({"step": s, "tokens": s * 10, "val_loss": 2.0 / (s + 1)}) for s in range(3))
            + '\n{"step": 3, "tok'
        )  # a line cut short by a crash is skipped
    store.compact()
    runs = pd.read_parquet(store.runs_parquet)
    curves = pd.read_parquet(store.curves_parquet)
    assert list(runs.columns[: len(RUNS_COLUMNS)]) == RUNS_COLUMNS
    assert sorted(runs.run_id) == ["r0", "r1", "r2"]
    assert list(curves.columns[: len(CURVES_COLUMNS)]) == CURVES_COLUMNS
    assert len(curves) == 9 and set(curves.run_id) == {"r0", "r1", "r2"}


def test_compaction_of_an_empty_store_still_has_the_columns(tmp_path):
    store = Store(tmp_path)
    store.init("", [])
    store.compact()
    assert set(RUNS_COLUMNS) <= set(pd.read_parquet(store.runs_parquet).columns)
    assert set(CURVES_COLUMNS) <= set(pd.read_parquet(store.curves_parquet).columns)


def test_rows_must_be_final(tmp_path):
    store = Store(tmp_path)
    with pytest.raises(StoreError):
        store.write_row("r", {"run_id": "r", "status": "running"})


def _hold_claim(root: str, unit: str, ready) -> None:
    with Store(root).claim(unit) as mine:
        assert mine
        ready.set()
        time.sleep(60)


def test_claim_is_exclusive_and_freed_when_the_holder_is_killed(tmp_path):
    store = Store(tmp_path)
    context = mp.get_context("spawn")
    ready = context.Event()
    holder = context.Process(target=_hold_claim, args=(str(tmp_path), "u1", ready))
    holder.start()
    try:
        assert ready.wait(30)
        with store.claim("u1") as mine:
            assert not mine
        assert store.is_claimed("u1")
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.join()
    with store.claim("u1") as mine:
        assert mine
    assert not store.is_claimed("u1")


def test_sweeps_checking_one_new_directory_at_once_all_find_it_writable(tmp_path):
    """Two `scale sweep` into one new directory once failed with "not writable: No such file or directory":
    each removed the other's write probe. Here four processes check it 300 times each, at once."""
    out = tmp_path / "out"
    context = mp.get_context("fork")
    with context.Pool(4) as pool:
        problems = pool.map(_check_writable_repeatedly, [str(out)] * 4)
    assert problems == [[]] * 4
    assert sorted(p.name for p in out.iterdir()) == ["runs"]  # no probe left behind


def _check_writable_repeatedly(root: str, times: int = 300) -> list[str]:
    problems = []
    for _ in range(times):
        try:
            Store(root).check_writable()
        except StoreError as exc:
            problems.append(str(exc))
    return problems


def test_status_counts_states_compute_and_failures(tmp_path):
    store = Store(tmp_path)
    plan = [{"run_id": f"r{i}", "unit": f"r{i}", "flops": 10.0, "cost_flops": 10.0} for i in range(4)]
    store.init("", plan)
    store.write_row("r0", make_row("r0"))
    store.write_row("r1", {**make_row("r1", "failed", math.nan), "error": "RuntimeError: boom", "attempts": 3})
    info = status(tmp_path)
    assert info["counts"] == {"done": 1, "diverged": 0, "failed": 1, "running": 0, "pending": 2}
    assert info["flops_spent"] == 20.0 and info["flops_remaining"] == 20.0
    assert info["failed"] == [{"run_id": "r1", "error": "RuntimeError: boom", "attempts": 3}]


def test_status_of_a_missing_directory(tmp_path):
    with pytest.raises(StoreError):
        status(tmp_path / "nope")
