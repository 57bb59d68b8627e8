"""`scale plot`: every figure from a small results directory and from a table, valid files, and skips with reasons."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from xml.etree import ElementTree

import numpy as np
import pandas as pd
import pytest
from conftest import SHARED_DATA, run_scale

from scaling_cli.errors import DataError, SpecError, StoreError
from scaling_cli.fit.laws import chinchilla_loss, chinchilla_optimum
from scaling_cli.plot import FIGURES, TableColumns, draw, load_inputs, make_figures
from scaling_cli.plot.figures import make_context
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
SIZES = (2e5, 6e5, 1.8e6, 5.4e6)
BUDGETS = (4e12, 1.6e13, 6.4e13, 2.56e14)
EVAL_POINTS = 8


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
            for budget in budgets if dataset == datasets[0] else budgets[:2]:
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
                        "val_loss": final,
                        "val_bpb": final / math.log(2),
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


def hand_made_fit(runs: pd.DataFrame, law: dict, holdout_count: int = 3) -> dict:
    """A fit.json as `scale fit --holdout` writes it, with the law that generated the runs."""
    runs = runs.sort_values("flops")
    fitted, held = runs.iloc[:-holdout_count], runs.iloc[-holdout_count:]
    points = [
        {"run_id": r.run_id, "N": r.params, "D": r.tokens, "C": r.flops, "loss": r.val_loss}
        for r in fitted.itertuples()
    ]
    alpha, beta = law["alpha"], law["beta"]
    a, b = beta / (alpha + beta), alpha / (alpha + beta)
    budgets = []
    for compute, group in fitted.groupby("flops"):
        if len(group) < 3:
            continue
        coef = np.polyfit(np.log(group["params"]), group["val_loss"], 2)
        size_opt = float(np.exp(-coef[1] / (2 * coef[0])))
        budgets.append(
            {
                "C": compute,
                "coef": list(coef),
                "N_opt": size_opt,
                "loss_opt": float(np.polyval(coef, np.log(size_opt))),
                "edge": not group["params"].min() <= size_opt <= group["params"].max(),
                "points": [{"N": n, "loss": v} for n, v in zip(group["params"], group["val_loss"])],
            }
        )
    size0, tokens0 = (float(x) for x in chinchilla_optimum(law, 1.0))
    frontier = [
        {"C": r.flops, "N": r.params, "D": r.tokens, "loss": r.val_loss, "run_id": r.run_id}
        for r in fitted.loc[fitted.groupby("flops")["val_loss"].idxmin()].itertuples()
    ]
    allocation = {
        "params": {"a": a + 0.02, "N0": size0 * 0.8, "b": b - 0.02, "D0": tokens0 * 1.25},
        "intervals": {"a": [a - 0.03, a + 0.07], "b": [b - 0.07, b + 0.03]},
    }
    predictions = [
        {
            "run_id": r.run_id,
            "N": r.params,
            "D": r.tokens,
            "C": r.flops,
            "loss": r.val_loss,
            "pred": {
                "chinchilla": float(chinchilla_loss(law, r.params, r.tokens)),
                "linear": r.val_loss * 0.9,
            },
        }
        for r in held.itertuples()
    ]
    mape = {
        name: float(100 * np.mean([abs(p["pred"][name] / p["loss"] - 1) for p in predictions]))
        for name in ("chinchilla", "linear")
    }
    group = {
        "n_points": len(points),
        "points": points,
        "laws": {
            "chinchilla": {
                "params": law,
                "intervals": {"a": [a - 0.02, a + 0.02], "b": [b - 0.02, b + 0.02]},
                "derived": {"a": a, "b": b},
                "r2": 0.99,
            },
            "kaplan": {"L_C": {"params": {"C_c": 5e14, "alpha_C": 0.15, "E": 1.5}}, "r2": 0.9},
            "envelope": {**allocation, "frontier": frontier},
            "isoflop": {**allocation, "budgets": budgets},
        },
        "holdout": {"runs": predictions, "mape": mape},
        "skipped": {},
    }
    return {
        "version": 1,
        "source": "test",
        "columns": {"n": "params", "d": "tokens", "c": "flops", "loss": "val_loss"},
        "by": "dataset",
        "groups": {"markov": group},
    }


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    directory = write_results(tmp_path_factory.mktemp("plot") / "sweep")
    runs = pd.read_parquet(directory / "runs.parquet")
    fit = hand_made_fit(runs[runs["dataset"] == "markov"], LAWS["markov"])
    (directory / "fit.json").write_text(json.dumps(fit))
    return directory


def assert_png(path: Path, height_in: float | None = None) -> None:
    from matplotlib.image import imread

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = imread(path)
    assert pixels.shape[1] == round(WIDTH_IN * PNG_DPI)
    assert 1.5 * PNG_DPI <= pixels.shape[0] <= 5 * PNG_DPI
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


@pytest.mark.parametrize("fmt", ["pdf", "svg"])
def test_vector_formats_are_valid(results, tmp_path, fmt):
    made = make_figures(results, out_dir=tmp_path, fmt=fmt)
    assert all(path is not None for _, path, _ in made), made
    for _, path, _ in made:
        assert path.suffix == f".{fmt}"
        assert_format(path, fmt)


def test_every_figure_from_a_hand_made_table(results, tmp_path):
    runs = pd.read_parquet(results / "runs.parquet")
    table = runs.rename(columns={"params": "Model Size", "flops": "Training FLOP", "val_loss": "loss"})
    table = table.drop(columns=["tokens", "status"])
    csv = tmp_path / "table.csv"
    table.to_csv(csv, index=False)
    fit = tmp_path / "fit.json"
    fit.write_text(json.dumps(hand_made_fit(runs[runs["dataset"] == "markov"], LAWS["markov"])))
    columns = TableColumns(n="Model Size", c="Training FLOP", loss="loss")
    made = make_figures(csv, fit_path=fit, columns=columns)
    assert {name: reason for name, _, reason in made} == {name: "" for name in FIGURES}
    for name, path, _ in made:
        assert path == tmp_path / "figures" / f"{name}.png"
        assert_png(path)


def test_curves_are_sliced_into_isoflop_profiles_when_the_fit_has_none(results, tmp_path):
    fit = json.loads((results / "fit.json").read_text())
    del fit["groups"]["markov"]["laws"]["isoflop"]
    fit_path = tmp_path / "fit.json"
    fit_path.write_text(json.dumps(fit))
    made = make_figures(results, fit_path=fit_path, out_dir=tmp_path, only="isoflop")
    assert made == [("isoflop", tmp_path / "isoflop.png", "")]


def test_the_parametric_optimum_is_drawn_at_the_runs_own_flop_count(results, tmp_path):
    # Runs that count 1.5x the 6ND FLOPs (attention, embeddings): the law's optimum must move right with them.
    runs = pd.read_parquet(results / "runs.parquet")
    runs["flops"] = 1.5 * 6 * runs["params"] * runs["tokens"]
    runs.to_parquet(tmp_path / "runs.parquet")
    context = make_context(load_inputs(tmp_path, fit_path=results / "fit.json"))
    compute = np.geomspace(1e13, 1e15, 5)
    sizes, tokens = context.chinchilla_optimum(LAWS["markov"], compute)
    np.testing.assert_allclose(1.5 * 6 * sizes * tokens, compute, rtol=1e-3)
    plain_sizes, _ = chinchilla_optimum(LAWS["markov"], compute / 1.5)
    np.testing.assert_allclose(sizes, plain_sizes, rtol=1e-3)


def test_single_size_sweep_skips_multi_size_figures(tmp_path):
    directory = write_results(tmp_path / "one-size", sizes=(6e5,), datasets=("markov",))
    result = run_scale("plot", directory)
    assert result.returncode == 0, result.stderr
    lines = {line.split()[1]: line for line in result.stdout.splitlines() if line.startswith(("made", "skipped"))}
    for name in ("isoflop", "optimal_allocation", "parametric_fit"):
        assert lines[name].startswith("skipped") and "needs several model sizes" in lines[name]
    assert lines["data_axis"].startswith("skipped") and "one data set" in lines["data_axis"]
    assert lines["extrapolation"].startswith("skipped") and "no law could be fitted" in lines["extrapolation"]
    for name in ("loss_vs_compute", "compression"):
        assert lines[name].startswith("made")
        assert_png(directory / "figures" / f"{name}.png")
    assert sorted(p.name for p in (directory / "figures").iterdir()) == [
        "compression.png",
        "loss_vs_compute.png",
    ]
    assert not (directory / "fit.json").exists(), "plot draws; it never writes the fit"


def test_a_results_directory_without_fit_is_fitted_per_data_set(results, tmp_path):
    for name in ("runs.parquet", "curves.parquet"):
        shutil.copy(results / name, tmp_path / name)
    inputs = load_inputs(tmp_path)
    assert inputs.fit["by"] == "dataset"
    assert set(inputs.fit["groups"]) == {"markov", "shakespeare"}
    made = draw(inputs, tmp_path / "figures", "png", ["loss_vs_compute", "parametric_fit"])
    assert [reason for _, _, reason in made] == ["", ""]
    fitted = inputs.fit["groups"]["markov"]["laws"]["chinchilla"]["params"]
    assert fitted["alpha"] == pytest.approx(LAWS["markov"]["alpha"], abs=0.1)


def test_only_one_figure_in_a_chosen_folder(results, tmp_path):
    result = run_scale("plot", results, "--only", "compression", "--format", "svg", "--out", tmp_path / "figs")
    assert result.returncode == 0, result.stderr
    assert [p.name for p in (tmp_path / "figs").iterdir()] == ["compression.svg"]
    assert "1 of 1 figures written" in result.stdout


@pytest.mark.parametrize(
    ("args", "start"),
    [
        (["--only", "nope"], "error: --only: nope: unknown figure"),
        (["--format", "gif"], "error: --format: gif: unknown format"),
        (["--fit", "missing.json"], "error: missing.json: no such fit file"),
    ],
)
def test_bad_options_exit_2_with_one_line(results, tmp_path, args, start):
    result = run_scale("plot", results, *args, "--out", tmp_path, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith(start) and result.stderr.count("\n") == 1, result.stderr
    assert not list(tmp_path.glob("*.png"))


def test_bad_sources_raise_typed_errors(tmp_path):
    with pytest.raises(StoreError, match="no such file"):
        make_figures(tmp_path / "absent")
    with pytest.raises(StoreError, match="runs.parquet"):
        make_figures(tmp_path)
    table = tmp_path / "t.csv"
    table.write_text("N,C,loss\n1,2,3\n")
    with pytest.raises(DataError) as caught:
        make_figures(table, columns=TableColumns(n="Model Size", c="C", loss="loss"))
    assert (caught.value.where, caught.value.field) == ("--n-col", "Model Size")
    with pytest.raises(SpecError):
        make_figures(table, only="everything")


@pytest.mark.skipif(not (SHARED_DATA / "chinchilla_svg_extracted_data.csv").is_file(), reason="no shared data")
def test_chinchilla_table_is_fitted_and_drawn(tmp_path):
    source = tmp_path / "chinchilla.csv"
    shutil.copy(SHARED_DATA / "chinchilla_svg_extracted_data.csv", source)
    options = [
        "--n-col",
        "Model Size",
        "--c-col",
        "Training FLOP",
        "--loss-col",
        "loss",
        "--drop-highest-loss",
        "5",
    ]
    result = run_scale("plot", source, *options)
    assert result.returncode == 0, result.stderr
    status = {
        line.split()[1]: line.split()[0] for line in result.stdout.splitlines() if line.startswith(("made", "sk"))
    }
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
