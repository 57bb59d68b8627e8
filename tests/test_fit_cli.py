"""`scale fit` and `scale predict` as real subprocesses on small hand-made tables (CSV and parquet)."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from conftest import SHARED_DATA, scale_in_process
from test_fit_chinchilla import PUBLISHED, TOLERANCE
from test_fit_pipeline import grid_table, make_sweep


def one_line_error(result, *fragments):
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
    directory = make_sweep(tmp_path_factory.mktemp("cli") / "demo")
    result = scale_in_process("fit", directory, "--bootstrap", "10", "--holdout", "6")
    assert result.returncode == 0, result.stderr
    assert "chinchilla" in result.stdout and "holdout: fitted on 18, 6 held out" in result.stdout
    return directory


def test_fit_of_a_results_directory_writes_fit_json_beside_the_runs(sweep_dir):
    document = json.loads((sweep_dir / "fit.json").read_text())
    assert document["version"] == 1 and document["rows"]["excluded"]["diverged"] == 1
    assert set(document["groups"]["all"]["laws"]) == {"chinchilla", "kaplan", "envelope", "isoflop", "linear"}


def test_predict_prints_the_split_and_the_run_loss(sweep_dir):
    result = scale_in_process("predict", sweep_dir, "--compute", "1e18", "--params", "1e7", "--tokens", "1e9")
    assert result.returncode == 0, result.stderr
    assert "N_opt" in result.stdout and "tokens/param" in result.stdout and "linear" in result.stdout
    as_json = scale_in_process("predict", sweep_dir / "fit.json", "--compute", "1e18", "--json")
    split = json.loads(as_json.stdout)["groups"]["all"]["compute"]["chinchilla"]
    assert 6.3 * split["N_opt"] * split["D_opt"] == pytest.approx(1e18, rel=1e-6)  # the table's C is 6.3 N D
    assert "warning:" in result.stderr and "beyond the largest fitted run" in result.stderr  # 1e18 is x15,000


def test_fit_of_a_csv_prints_the_json_it_writes(tmp_path):
    table = grid_table(tmp_path / "grid.csv", {"markov": 1.5})
    out = tmp_path / "out" / "fit.json"
    result = scale_in_process(
        "fit",
        table,
        "--n-col",
        "N",
        "--d-col",
        "D",
        "--loss-col",
        "loss",
        "--law",
        "chinchilla,linear",
        "--bootstrap",
        "0",
        "--json",
        "--out",
        out,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == json.loads(out.read_text())
    assert set(json.loads(result.stdout)["groups"]["all"]["laws"]) == {"chinchilla", "linear"}


def test_fit_of_a_parquet_table_by_group(tmp_path):
    csv = grid_table(tmp_path / "grid.csv", {"markov": 1.5, "prose": 2.5})
    table = tmp_path / "grid.parquet"
    pd.read_csv(csv).to_parquet(table)
    result = scale_in_process(
        "fit",
        table,
        "--n-col",
        "N",
        "--d-col",
        "D",
        "--loss-col",
        "loss",
        "--by",
        "dataset",
        "--law",
        "linear",
        "--bootstrap",
        "5",
    )
    assert result.returncode == 0, result.stderr
    assert "group markov" in result.stdout and "group prose" in result.stdout
    assert set(json.loads((tmp_path / "grid.fit.json").read_text())["groups"]) == {"markov", "prose"}


def test_bad_input_is_one_line_and_exit_2(tmp_path, sweep_dir):
    table = grid_table(tmp_path / "grid.csv", {"markov": 1.5})
    one_line_error(scale_in_process("fit", table, "--n-col", "size"), "size: missing column; have: N, D, loss, dataset")
    one_line_error(scale_in_process("fit", sweep_dir, "--law", "hoffmann"), "--law: hoffmann: unknown law")
    one_line_error(scale_in_process("fit", sweep_dir, "--holdout", "all"), "--holdout")
    one_line_error(scale_in_process("fit", tmp_path / "none.csv"), "no such file")
    one_line_error(scale_in_process("predict", tmp_path / "fit.json", "--compute", "1e18"), "run `scale fit` first")
    one_line_error(scale_in_process("predict", sweep_dir, "--params", "1e7"), "needs both")


def test_cli_reproduces_the_published_chinchilla_fit(tmp_path):
    table = SHARED_DATA / "chinchilla_svg_extracted_data.csv"
    if not table.is_file():
        pytest.skip(f"{table} is absent")
    out = tmp_path / "fit.json"
    result = scale_in_process(
        "fit",
        table,
        "--n-col",
        "Model Size",
        "--c-col",
        "Training FLOP",
        "--loss-col",
        "loss",
        "--drop-highest-loss",
        "5",
        "--law",
        "chinchilla",
        "--bootstrap",
        "0",
        "--out",
        out,
    )
    assert result.returncode == 0, result.stderr
    document = json.loads(out.read_text())
    assert document["rows"]["used"] == 240
    fitted = document["groups"]["all"]["laws"]["chinchilla"]["params"]
    for name, published in PUBLISHED.items():
        assert fitted[name] == pytest.approx(published, rel=TOLERANCE[name]), name
