"""`scale plot`: every figure from a small results directory and from a table, valid files, and skips with reasons.

The fit drawn is the real `fit_all` on the measured table; what each figure draws is checked on the
matplotlib Figure objects in tests/test_plot_fitview.py.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from xml.etree import ElementTree

import numpy as np
import pandas as pd
import pytest
from conftest import SHARED_DATA, scale_in_process

from scaling_cli.errors import FitError, SpecError, StoreError
from scaling_cli.fit import FitOptions, TableOptions, fit_all
from scaling_cli.fit.laws import chinchilla_loss
from scaling_cli.plot import FIGURES, draw, load_inputs, make_figures
from scaling_cli.plot.style import PNG_DPI, WIDTH_IN

# A known law per data set; losses in nats per byte token, so bits per byte = loss / ln 2.
LAWS = {
    "markov": {"E": 1.55, "A": 60.0, "B": 150.0, "alpha": 0.34, "beta": 0.30},
    "shakespeare": {"E": 1.05, "A": 60.0, "B": 150.0, "alpha": 0.34, "beta": 0.30},
}
BASELINES = {
    "markov": {"lz4": 5.6, "lz4hc": 5.3, "zlib": 4.9, "bz2": 4.5, "lzma": 4.35},
    "shakespeare": {"lz4": 4.4, "lz4hc": 3.9, "zlib": 3.3, "bz2": 2.6, "lzma": 2.7},
}
# Six sizes over 100x, so that every budget's optimum (1e5 to 7e5 parameters) lies inside its sizes.
SIZES = (3e4, 7.5e4, 1.9e5, 4.7e5, 1.2e6, 3e6)
BUDGETS = (4e12, 1.6e13, 6.4e13, 2.56e14)
EVAL_POINTS = 8
# Starts around the laws drawn here: the figures are under test, not the fitter's search (tests/test_fit_*).
QUICK_GRID = {"e": [0.0, 0.6], "a": [3.0, 6.0], "b": [5.0, 8.0], "alpha": [0.3, 0.6], "beta": [0.3, 0.6]}
QUICK_FIT = FitOptions(bootstrap=8, holdout="3", grid=QUICK_GRID)
NO_BOOTSTRAP = FitOptions(bootstrap=0, grid=QUICK_GRID)


def loss_during_training(law: dict, size: float, seen: float, total: float) -> float:
    # Before the learning rate has decayed a run sits above the law; the gap closes at the end.
    return float(chinchilla_loss(law, size, seen)) * (1 + 0.04 * (1 - seen / total))


def write_results(directory: Path, sizes=SIZES, budgets=BUDGETS, datasets=("markov", "shakespeare")) -> Path:
    """A results directory as `scale sweep` writes it: an IsoFLOP grid per data set, several eval points per run."""
    rng = np.random.default_rng(7)
    runs, curves = [], []
    for dataset in datasets:
        law = LAWS[dataset]
        for size in sizes:
            for budget in budgets if dataset == datasets[0] else budgets[:3]:
                tokens = budget / (6 * size)
                run_id = f"{dataset}-n{size:.0e}-c{budget:.0e}"
                for step in range(1, EVAL_POINTS + 1):
                    seen = tokens * step / EVAL_POINTS
                    loss = loss_during_training(law, size, seen, tokens) * math.exp(rng.normal(0, 0.004))
                    curves.append(
                        {
                            "run_id": run_id,
                            "step": step * 100,
                            "tokens": seen,
                            "flops": 6 * size * seen,
                            "lr": 1e-3,
                            "train_loss": loss + 0.01,
                            "val_loss": loss,
                            "val_bpb": loss / math.log(2),
                            "wall_s": step * 2.0,
                        }
                    )
                final = curves[-1]["val_loss"]
                runs.append(
                    {
                        "run_id": run_id,
                        "sweep": "plot-test",
                        "dataset": dataset,
                        "tokenizer": "bytes",
                        "params": size,
                        "params_nonembed": size * 0.9,
                        "tokens": tokens,
                        "flops": budget,
                        "flops_6nd": budget,
                        "lr": 1e-3,
                        "schedule": "cosine",
                        "val_loss": final,
                        "val_bpb": final / math.log(2),
                        "bytes_per_token": 1.0,
                        "train_loss": final + 0.01,
                        "status": "done",
                        "seed": 0,
                        "tokens_per_param": tokens / size,
                        **{f"bpb_{name}": value for name, value in BASELINES[dataset].items()},
                    }
                )
    directory.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(runs).to_parquet(directory / "runs.parquet")
    pd.DataFrame(curves).to_parquet(directory / "curves.parquet")
    return directory


@pytest.fixture(scope="session")
def results(tmp_path_factory) -> Path:
    """The synthetic sweep with its fit.json from the real fitter, per data set, with 3 held-out runs."""
    directory = write_results(tmp_path_factory.mktemp("plot") / "sweep")
    fit = fit_all(directory, TableOptions(by="dataset"), QUICK_FIT)
    (directory / "fit.json").write_text(json.dumps(fit))
    return directory


def assert_png(path: Path) -> None:
    from matplotlib.image import imread

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = imread(path)
    assert pixels.shape[1] == round(WIDTH_IN * PNG_DPI)
    assert 1.5 * PNG_DPI <= pixels.shape[0] <= 6 * PNG_DPI  # one paper column, at most 6 in tall
    assert pixels[..., :3].std() > 0.05, "the image is blank"


def assert_format(path: Path, fmt: str) -> None:
    if fmt == "png":
        assert_png(path)
    elif fmt == "pdf":
        data = path.read_bytes()
        assert data.startswith(b"%PDF-") and b"%%EOF" in data[-64:]
        assert len(data) > 5_000
    else:
        root = ElementTree.parse(path).getroot()
        assert root.tag.endswith("svg")
        assert root.get("width").startswith(f"{WIDTH_IN * 72:.1f}"[:3])


def test_every_figure_from_a_results_directory(results, tmp_path):
    made = make_figures(results, out_dir=tmp_path)
    assert [name for name, _, _ in made] == list(FIGURES)
    assert {name: reason for name, _, reason in made} == {name: "" for name in FIGURES}
    for name, path, _ in made:
        assert path == tmp_path / f"{name}.png"
        assert_png(path)
    assert not list(tmp_path.glob(".*")), "no temporary file is left behind"


@pytest.mark.parametrize("fmt", ["pdf", "svg"])
def test_vector_formats_are_valid(results, tmp_path, fmt):
    made = make_figures(results, out_dir=tmp_path, fmt=fmt, only="parametric_fit")
    assert [path.suffix for _, path, _ in made] == [f".{fmt}"]
    assert_format(made[0][1], fmt)


def test_every_fit_figure_from_a_table_with_named_columns(results, tmp_path):
    runs = pd.read_parquet(results / "runs.parquet")
    table = runs[runs["dataset"] == "markov"].rename(
        columns={"params": "Model Size", "flops": "Training FLOP", "val_loss": "loss"}
    )
    csv = tmp_path / "table.csv"
    table.drop(columns=["tokens", "status"]).to_csv(csv, index=False)
    options = TableOptions(n_col="Model Size", c_col="Training FLOP", loss_col="loss")
    fit = tmp_path / "fit.json"
    fit.write_text(json.dumps(fit_all(csv, options, QUICK_FIT)))
    made = make_figures(csv, fit_path=fit, table=options)
    reasons = {name: reason for name, _, reason in made}
    assert [name for name, reason in reasons.items() if reason] == ["data_axis"]
    for name, path, _ in made:
        if path is not None:
            assert path == tmp_path / "figures" / f"{name}.png"
            assert_png(path)


def test_single_size_sweep_skips_multi_size_figures(tmp_path):
    directory = write_results(tmp_path / "one-size", sizes=(6e5,), datasets=("markov",))
    made = make_figures(directory)
    reasons = {name: reason for name, _, reason in made}
    for name in ("isoflop", "optimal_allocation", "parametric_fit"):
        assert "needs several model sizes" in reasons[name]
    assert "one data set" in reasons["data_axis"]
    assert reasons["extrapolation"]
    for name in ("loss_vs_compute", "compression"):
        assert reasons[name] == ""
        assert_png(directory / "figures" / f"{name}.png")
    assert sorted(p.name for p in (directory / "figures").iterdir()) == ["compression.png", "loss_vs_compute.png"]
    assert not (directory / "fit.json").exists(), "plot draws; it never writes the fit"


def test_a_results_directory_without_fit_is_fitted_per_data_set(results, tmp_path):
    for name in ("runs.parquet", "curves.parquet"):
        shutil.copy(results / name, tmp_path / name)
    inputs = load_inputs(tmp_path, fit_options=NO_BOOTSTRAP)
    assert inputs.fit.by == "dataset"
    assert set(inputs.fit.groups) == {"markov", "shakespeare"}
    made = draw(inputs, tmp_path / "figures", "png", ["loss_vs_compute", "data_axis"])
    assert [reason for _, _, reason in made] == ["", ""]
    fitted = inputs.fit.groups["markov"].laws["chinchilla"].params
    assert fitted["alpha"] == pytest.approx(LAWS["markov"]["alpha"], abs=0.1)


def test_the_runs_drawn_are_the_rows_the_fit_selected(results, tmp_path):
    # One run diverged and one lost the lr race: neither is drawn, exactly as neither was fitted.
    runs = pd.read_parquet(results / "runs.parquet")
    runs = runs[runs["dataset"] == "markov"]
    diverged = runs.iloc[[0]].assign(run_id="diverged", status="diverged", val_loss=9.0)
    worse_lr = runs.iloc[[1]].assign(run_id="worse-lr", lr=3e-3, val_loss=runs.iloc[1]["val_loss"] + 0.5)
    pd.concat([runs, diverged, worse_lr]).to_parquet(tmp_path / "runs.parquet")
    inputs = load_inputs(tmp_path, fit_options=NO_BOOTSTRAP)
    assert set(inputs.runs["run_id"]) == set(runs["run_id"])
    assert {p["run_id"] for p in inputs.fit.groups["all"].points} <= set(inputs.runs["run_id"])


def test_only_one_figure_in_a_chosen_folder(results, tmp_path):
    result = scale_in_process("plot", results, "--only", "compression", "--format", "svg", "--out", tmp_path / "figs")
    assert result.returncode == 0, result.stderr
    assert [p.name for p in (tmp_path / "figs").iterdir()] == ["compression.svg"]
    assert "1 of 1 figures written" in result.stdout


@pytest.mark.parametrize(
    ("args", "start"),
    [
        (["--only", "nope"], "error: --only: nope: unknown figure"),
        (["--n-col", "Model Size"], "error: "),
    ],
)
def test_bad_options_exit_2_with_one_line(results, tmp_path, args, start):
    result = scale_in_process("plot", results, *args, "--out", tmp_path, cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith(start) and result.stderr.count("\n") == 1, result.stderr
    assert "Model Size" in result.stderr or "Model Size" not in args
    assert "Traceback" not in result.stderr
    assert not list(tmp_path.glob("*.png"))


def test_bad_sources_raise_typed_errors(tmp_path):
    with pytest.raises(FitError, match="no such file"):
        make_figures(tmp_path / "absent")
    with pytest.raises(FitError, match="runs.parquet"):
        make_figures(tmp_path)
    table = tmp_path / "t.csv"
    table.write_text("N,C,loss\n1,2,3\n")
    with pytest.raises(FitError) as caught:
        make_figures(table, table=TableOptions(n_col="Model Size", c_col="C", loss_col="loss"))
    assert caught.value.field == "Model Size"
    with pytest.raises(SpecError):
        make_figures(table, only="everything")
    with pytest.raises(SpecError, match="unknown format"):
        make_figures(table, fmt="gif")
    with pytest.raises(StoreError, match="no such fit file"):
        make_figures(table, fit_path=tmp_path / "none.json", table=TableOptions(n_col="N", c_col="C"))


CHINCHILLA_CSV = SHARED_DATA / "chinchilla_svg_extracted_data.csv"


@pytest.mark.skipif(not CHINCHILLA_CSV.is_file(), reason="no shared data")
def test_chinchilla_table_is_fitted_and_drawn(tmp_path):
    table = TableOptions(n_col="Model Size", c_col="Training FLOP", loss_col="loss", drop_highest_loss=5)
    fit = tmp_path / "fit.json"
    fit.write_text(json.dumps(fit_all(CHINCHILLA_CSV, table, FitOptions(bootstrap=8, grid=QUICK_GRID))))
    made = make_figures(CHINCHILLA_CSV, fit_path=fit, out_dir=tmp_path / "figures", table=table)
    status = {name: "made" if path else "skipped" for name, path, _ in made}
    assert status == {
        "loss_vs_compute": "made",
        "isoflop": "made",
        "optimal_allocation": "made",
        "parametric_fit": "made",
        "extrapolation": "skipped",
        "compression": "skipped",
        "data_axis": "skipped",
    }
    for name in ("loss_vs_compute", "isoflop", "optimal_allocation", "parametric_fit"):
        assert_png(tmp_path / "figures" / f"{name}.png")
    assert not (CHINCHILLA_CSV.parent / "figures").exists()


def test_a_trained_markov_sweep_fits_and_plots_without_a_traceback(tiny_results):
    from scaling_cli.plot.axes import figure_notes
    from scaling_cli.plot.figures import isoflop, make_context

    out = tiny_results
    assert scale_in_process("fit", out, "--bootstrap", "8", "--backtest").returncode == 0
    result = scale_in_process("plot", out)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    made = [line.split()[2] for line in result.stdout.splitlines() if line.startswith("made")]
    assert {"loss_vs_compute", "compression"} <= {Path(path).stem for path in made}
    for path in made:
        assert_png(Path(path))
    # Two token budgets: the fit skips Approach 2 (no parabola), and the figure says why.
    fit = json.loads((out / "fit.json").read_text())
    assert "isoflop" in fit["groups"]["all"]["skipped"]
    # Runs of one token budget are joined instead, and the figure says which figure it is.
    inputs = load_inputs(out)
    figure = isoflop(make_context(inputs))
    first, second = figure_notes(figure)
    assert first.startswith("no isoFLOP budgets in this sweep: each line joins the runs of one token budget D")
    assert second.startswith("Approach 2 skipped: needs at least 3 budgets")
    sizes = set(inputs.runs["N"])
    lines = [
        line for line in figure.axes[0].get_lines() if len(line.get_xdata()) > 1 and set(line.get_xdata()) <= sizes
    ]
    assert len(lines) == inputs.runs["D"].nunique() == 2  # (the source's entropy rate is a line across, too)
    for line in lines:
        assert inputs.runs[inputs.runs["N"].isin(line.get_xdata())]["N"].nunique() == len(line.get_xdata())
