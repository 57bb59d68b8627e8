"""Bad runs and bad tables: blown-up runs are diverged with a reason, bad table values are named by row and column,
fits of tables keep their own file, `--out` means the same for every command, and logs stay readable."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import pandas as pd
import pytest
from conftest import scale_in_process

from scaling_cli.cli.render import LOG_WIDTH, axes_label, run_line, varying_axes
from scaling_cli.divergence import blown_up, loss_limit
from scaling_cli.fit.table import TableOptions, load_rows

FIT_FAST = ("--law", "linear", "--bootstrap", "0")


def chinchilla_rows() -> list[dict]:
    """20 runs on a known law: 5 sizes x 4 budgets."""
    rows = []
    for n, d in itertools.product([1e6, 3e6, 1e7, 3e7, 1e8], [2e7, 6e7, 2e8, 6e8]):
        rows.append({"params": n, "tokens": d, "loss": 1.7 + 400 / n**0.34 + 410 / d**0.28})
    return rows


def write_bad_table(path: Path) -> Path:
    """The known-law table with three bad cells: data rows 3 (loss 0), 7 (N 'abc') and 12 (N negative)."""
    frame = pd.DataFrame(chinchilla_rows()).astype(object)
    frame.loc[2, "loss"] = 0
    frame.loc[6, "params"] = "abc"
    frame.loc[11, "params"] = -5e6
    frame.to_csv(path, index=False)
    return path


def test_a_loss_past_the_uniform_guess_is_diverged_with_the_reason():
    assert loss_limit(256) == pytest.approx(math.log(256) + 1.0)
    assert blown_up(5.6, 256) is None and blown_up(float("nan"), 256) is None
    reason = blown_up(67.9, 256, "val_loss at step 40")
    assert reason.startswith("val_loss at step 40 67.9 exceeds the uniform guess ln 256 = 5.545")


def test_a_blown_up_training_run_stops_as_diverged(tmp_path):
    from scaling_cli.data import DataOptions, prepare
    from scaling_cli.model import ModelConfig
    from scaling_cli.train import TrainConfig, train_run

    data = prepare("markov", DataOptions(markov_bytes=200_000, markov_alphabet=16), cache_dir=tmp_path / "data")
    model = ModelConfig(d_model=32, n_layer=2, n_head=2, seq_len=32)
    common = {"batch_size": 8, "eval_every": 5, "eval_batches": 2, "checkpoint_every": 5, "device": "cpu"}
    common.update(dtype="fp32", threads=1, tokens=40 * 256)
    result = train_run(model, TrainConfig(lr=3.0, **common), data, tmp_path / "blown")
    assert (result.status, result.diverged_step) == ("diverged", 5)
    assert "exceeds the uniform guess ln 256" in result.diverged_reason
    assert math.isnan(result.val_loss)
    assert not (tmp_path / "blown" / "checkpoint.pt").exists()  # nothing to resume a blown-up run from
    healthy = train_run(model, TrainConfig(lr=3e-3, **common), data, tmp_path / "healthy")
    assert (healthy.status, healthy.diverged_reason) == ("done", "")


def test_fit_leaves_out_done_rows_past_the_limit_as_diverged(tmp_path):
    """Results recorded before the trainer judged losses: runs "done" at 67.9 and 125.4 nats (limit 11.8)."""
    rows = [
        {**row, "run_id": f"r{i}", "status": "done", "vocab_size": 50257} for i, row in enumerate(chinchilla_rows())
    ]
    rows[4]["loss"], rows[9]["loss"] = 67.9, 125.4
    table = tmp_path / "runs.parquet"
    pd.DataFrame(rows).rename(columns={"loss": "val_loss"}).to_parquet(table)
    _, runs, info = load_rows(table, TableOptions())
    assert info["rows"]["excluded"]["diverged"] == 2
    assert set(runs["run_id"]).isdisjoint({"r4", "r9"}) and len(runs) == 18


def test_bad_table_values_are_named_by_row_and_column(tmp_path):
    table = write_bad_table(tmp_path / "table.csv")
    result = scale_in_process("fit", table, *FIT_FAST)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines == [
        f"error: {table}: row 3, loss: 0 is not a positive number (2 more bad values); "
        "fix the table or pass --skip-bad-rows to leave such rows out"
    ]
    assert not list(tmp_path.glob("*.json"))


def test_skip_bad_rows_leaves_them_out_and_each_table_keeps_its_own_fit(tmp_path):
    bad = write_bad_table(tmp_path / "bad.csv")
    good = tmp_path / "good.csv"
    pd.DataFrame(chinchilla_rows()).to_csv(good, index=False)
    result = scale_in_process("fit", bad, *FIT_FAST, "--skip-bad-rows")
    assert result.returncode == 0, result.stderr
    assert "left out row 7, params: 'abc' is not a number" in result.stdout
    assert "left out row 12, params: -5000000.0 is not a positive number" in result.stdout
    assert scale_in_process("fit", good, *FIT_FAST).returncode == 0
    bad_fit = json.loads((tmp_path / "bad.fit.json").read_text())
    good_fit = json.loads((tmp_path / "good.fit.json").read_text())
    assert bad_fit["rows"]["excluded"]["non_finite"] == 3 and bad_fit["rows"]["used"] == 17
    assert bad_fit["rows"]["bad_rows"][0] == "row 3, loss: 0 is not a positive number"
    assert good_fit["rows"]["used"] == 20 and not (tmp_path / "fit.json").exists()


def test_out_is_a_directory_unless_it_names_the_commands_file(tmp_path):
    table = tmp_path / "runs.csv"
    pd.DataFrame(chinchilla_rows()).to_csv(table, index=False)
    assert scale_in_process("fit", table, *FIT_FAST, "--out", tmp_path / "new" / "dir").returncode == 0
    assert (tmp_path / "new" / "dir" / "runs.fit.json").is_file()
    assert scale_in_process("fit", table, *FIT_FAST, "--out", tmp_path / "named.json").returncode == 0
    assert (tmp_path / "named.json").is_file()
    (tmp_path / "a_file").write_text("x")
    refused = scale_in_process("fit", table, *FIT_FAST, "--out", tmp_path / "a_file")
    assert refused.returncode == 2
    assert refused.stderr.strip() == (
        f"error: {tmp_path / 'a_file'}: --out: not a directory; give a directory or a file name ending in .json"
    )


def test_tables_in_a_log_are_at_most_120_columns(tmp_path, capsys):
    from rich.table import Table

    from scaling_cli.cli import render

    table = Table(title="backtest " * 30)
    for column in ("filter", "fitted on", "law", "mean |error| %", "max |error| %"):
        table.add_column(column)
    table.add_row("all", "14", "chinchilla", "(0.4) not identified", "not identified: E's interval " * 20)
    render._console().print(table)  # off a terminal, as in a log
    wide = [line for line in capsys.readouterr().out.splitlines() if "not identified" in line]
    assert wide and max(len(line) for line in wide) <= LOG_WIDTH == 120
    csv = tmp_path / "runs.csv"
    pd.DataFrame(chinchilla_rows()).to_csv(csv, index=False)
    result = scale_in_process("fit", csv, "--law", "linear,kaplan", "--bootstrap", "0", "--backtest")
    assert result.returncode == 0, result.stderr
    table_lines = [line for line in result.stdout.splitlines() if line[:1] in "┏┃┡│└"]
    assert len(table_lines) > 10 and max(len(line) for line in table_lines) <= 120


def test_run_lines_name_every_axis_the_sweep_varies():
    plan = [
        {"run_id": "a", "d_model": 32, "n_layer": 2, "dataset": "markov", "lr": 0.01, "seed": 0, "schedule": "wsd"},
        {"run_id": "b", "d_model": 32, "n_layer": 2, "dataset": "markov", "lr": 0.03, "seed": 0, "schedule": "wsd"},
        {"run_id": "c", "d_model": 32, "n_layer": 2, "dataset": "kjv", "lr": 0.01, "seed": 0, "schedule": "wsd"},
    ]
    axes = varying_axes(plan)
    assert axes == ("dataset", "lr")
    lines = {run_line({**row, "status": "done", "tokens": 4096, "val_loss": 1.5}, axes) for row in plan}
    assert len(lines) == 3  # two runs of one size never read alike
    assert "d_model=32 n_layer=2 dataset=markov lr=0.03 tokens=4.1k val_loss=1.5000" in "\n".join(lines)
    assert axes_label(plan[2], axes) == "d_model=32 n_layer=2 dataset=kjv lr=0.01"
