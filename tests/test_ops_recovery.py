"""Recovery of the results tables: appending compaction equals a full rebuild, a lost, damaged or stale
runs.parquet / curves.parquet is noticed by `scale status` and rebuilt by the next sweep."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from conftest import REPO, copy_results, scale_in_process

from scaling_cli.store import Store
from scaling_cli.store_status import status

TINY = REPO / "sweeps" / "markov-tiny.toml"


def write_run(store: Store, run_id: str, state: str = "done", points: int = 3, finished_at: float = 1.0) -> None:
    store.write_row(
        run_id,
        {"run_id": run_id, "status": state, "val_loss": 1.5, "flops": 1e9, "tokens": 100, "finished_at": finished_at},
    )
    curve = [{"step": s, "tokens": 10 * s, "val_loss": 2.0 / (s + 1)} for s in range(points)]
    (store.run_dir(run_id) / "curve.jsonl").write_text("".join(json.dumps(p) + "\n" for p in curve))


def tables(store: Store) -> tuple[pd.DataFrame, pd.DataFrame]:
    return pd.read_parquet(store.runs_parquet), pd.read_parquet(store.curves_parquet)


def test_appending_runs_one_by_one_gives_the_tables_a_full_rebuild_gives(tmp_path):
    store = Store(tmp_path)
    store.init("", [])
    for i, state in enumerate(["done", "failed", "diverged", "done"]):
        write_run(store, f"r{3 - i}", state, points=i + 1)
        store.compact([f"r{3 - i}"])
    write_run(store, "r2", "done", points=5, finished_at=2.0)  # the failed run, retried and finished
    store.compact(["r2"])
    appended = tables(store)
    store.compact()
    rebuilt = tables(store)
    pd.testing.assert_frame_equal(appended[0], rebuilt[0])
    pd.testing.assert_frame_equal(appended[1], rebuilt[1])
    assert appended[0].set_index("run_id").loc["r2", "status"] == "done"
    assert (appended[1].run_id == "r2").sum() == 5
    assert store.table_problems() == []


@pytest.mark.parametrize(
    "damage, expected",
    [
        (lambda s: s.runs_parquet.unlink(), "runs.parquet missing"),
        (lambda s: s.curves_parquet.write_bytes(b"not parquet"), "unreadable"),
        (lambda s: write_run(s, "r9"), "1 finished runs missing (r9)"),
        (lambda s: write_run(s, "r0", "done", finished_at=5.0), "rows older than their run row file (r0)"),
        (lambda s: (s.run_dir("r1") / "row.json").unlink(), "rows without a run row file (r1)"),
        (lambda s: write_run(s, "r1", points=7), "curves.parquet: 1 runs' points differ"),
    ],
)
def test_table_problems_names_each_kind_of_disagreement(tmp_path, damage, expected):
    store = Store(tmp_path)
    store.init("", [])
    write_run(store, "r0", "failed")
    write_run(store, "r1")
    store.compact()
    assert store.table_problems() == []
    damage(store)
    problems = store.table_problems()
    assert any(expected in p for p in problems), problems
    assert status(tmp_path)["tables"] == problems
    store.compact()
    assert store.table_problems() == []


def test_an_empty_new_store_has_no_table_problem(tmp_path):
    store = Store(tmp_path)
    store.init("", [])
    assert store.table_problems() == []


@pytest.fixture(scope="module")
def finished(tiny_sweep, tmp_path_factory):
    out = copy_results(tiny_sweep[0], tmp_path_factory.mktemp("recovery") / "out")
    return out, tables(Store(out))


@pytest.mark.parametrize(
    "damage",
    [
        lambda out: (out / "runs.parquet").unlink(),
        lambda out: (out / "curves.parquet").write_bytes(b"PAR1 cut short"),
        lambda out: pd.read_parquet(out / "runs.parquet").iloc[:2].to_parquet(out / "runs.parquet"),
    ],
    ids=["runs-deleted", "curves-corrupt", "runs-missing-rows"],
)
def test_status_reports_a_damaged_table_and_a_rerun_restores_it(finished, damage):
    out, (runs_before, curves_before) = finished
    damage(out)
    shown = scale_in_process("status", out)
    assert shown.returncode == 0, shown.stderr
    assert "disagree" in shown.stdout and "rerun" in shown.stdout, shown.stdout
    rerun = scale_in_process("sweep", TINY, "--out", out)
    assert rerun.returncode == 0, rerun.stderr
    assert "rebuilt" in rerun.stdout
    runs_after, curves_after = tables(Store(out))
    pd.testing.assert_frame_equal(runs_after, runs_before)
    pd.testing.assert_frame_equal(curves_after, curves_before)
    assert "disagree" not in scale_in_process("status", out).stdout
