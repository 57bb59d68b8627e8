"""A different grid under an existing sweep name: merged run by run (same run id, same run, never retrained),
and refused in one line while a sweep of the other grid is still training in the directory. In-process: the
process boundary is not what these test."""

from __future__ import annotations

import json

from conftest import REPO, scale_in_process

from scaling_cli.store import Store

TINY = REPO / "sweeps" / "markov-tiny.toml"


def grid(tmp_path, widths: str, name: str):
    path = tmp_path / name
    text = TINY.read_text().replace("d_model = [16, 32, 48]", f"d_model = {widths}")
    path.write_text(text.replace("tokens = [12_288, 24_576]", "tokens = [12_288]"))
    return path


def test_a_grown_grid_keeps_finished_runs_and_adds_the_new_ones(tmp_path):
    out = tmp_path / "out"
    first = scale_in_process("sweep", grid(tmp_path, "[16]", "a.toml"), "--out", out)
    assert first.returncode == 0, first.stderr
    (kept,) = [run["run_id"] for run in json.loads((out / "plan.json").read_text())["runs"]]
    second = scale_in_process("sweep", grid(tmp_path, "[16, 32]", "b.toml"), "--out", out)
    assert second.returncode == 0, second.stderr
    assert "1 runs kept (same run id, same run), 1 added" in second.stdout
    store = Store(out)
    assert len(store.attempts(kept)) == 1  # not retrained
    assert len(store.rows()) == 2 and store.table_problems() == []


def test_another_grid_is_refused_while_a_sweep_of_the_first_is_training(tmp_path):
    out = tmp_path / "out"
    first = grid(tmp_path, "[16]", "a.toml")
    assert scale_in_process("sweep", first, "--out", out, "--dry-run").returncode == 0
    store = Store(out)
    store.init(first.read_text(), [{"run_id": "feedfacecafe", "unit": "feedfacecafe", "flops": 1.0}])
    with store.claim("feedfacecafe") as mine:  # a live sweep of the first grid holds this unit
        assert mine
        result = scale_in_process("sweep", grid(tmp_path, "[16, 32]", "b.toml"), "--out", out)
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: ") and "another grid" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert store.rows() == []
