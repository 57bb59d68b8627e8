"""Backtest and law choice: fit below a compute cut, predict the runs above it; the chosen law and point
filter are what `predict` uses, and every prediction says how far it extrapolates."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import scale_in_process

from scaling_cli.fit import FitOptions, TableOptions, fit_all, predict
from scaling_cli.fit.allocation import chinchilla_allocation
from scaling_cli.fit.laws import chinchilla_loss

LAW = {"E": 1.8, "A": 400.0, "B": 2000.0, "alpha": 0.34, "beta": 0.36}
SIZES = np.logspace(7, 8.6, 6)
TOKENS_PER_PARAM = (1, 2, 4, 10, 20, 40, 80, 160)
GRID = {
    "e": [-1.0, 0.5],
    "a": [0.0, 5.0, 10.0],
    "b": [0.0, 5.0, 10.0],
    "alpha": [0.0, 0.5, 1.0],
    "beta": [0.0, 0.5, 1.0],
}
COLUMNS = TableOptions(n_col="N", d_col="D", loss_col="loss")


def under_trained_table(path, sizes=SIZES, tokens_per_param=TOKENS_PER_PARAM):
    """LAW on a grid of sizes x tokens per parameter; runs under ~10 tokens per parameter lose up to 0.5 more."""
    rng = np.random.default_rng(0)
    n, ratio = (a.ravel() for a in np.meshgrid(sizes, tokens_per_param))
    d = n * ratio
    loss = (chinchilla_loss(LAW, n, d) + 0.5 * np.exp(-ratio / 4)) * (1 + rng.normal(0, 0.001, n.size))
    pd.DataFrame({"N": n, "D": d, "loss": loss}).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def document(tmp_path_factory):
    table = under_trained_table(tmp_path_factory.mktemp("backtest") / "runs.csv")
    options = FitOptions(laws=("chinchilla", "kaplan", "linear"), bootstrap=10, grid=GRID, backtest=True)
    return fit_all(table, COLUMNS, options)


def test_the_backtest_chooses_a_filter_that_predicts_the_largest_runs_within_one_percent(document):
    backtest = document["groups"]["all"]["backtest"]
    assert backtest["held_out"] >= 0.15 * document["groups"]["all"]["n_points"]
    everything = next(c for c in backtest["candidates"] if c["filter"] == "all")
    assert everything["laws"]["chinchilla"]["mape"] > 1.0  # under-trained points pull the law off
    chosen = backtest["recommended"]
    assert chosen["law"] == "chinchilla" and chosen["min_tokens_per_param"] >= 5
    assert chosen["selection_error"] < 1.0  # the best candidate at the cut, chosen on the runs it is scored on
    procedure = backtest["procedure"]
    assert chosen["expected_error"] == procedure["mape"] and chosen["scored"] == procedure["scored"] >= 5
    assert len(procedure["cuts"]) >= 2 and not chosen["weak"]
    assert procedure["mape"] < 3.0 and procedure["max_error"] >= procedure["mape"]
    assert backtest["scored"] >= 0.5 * backtest["held_out"]  # every filter is scored on these same runs
    assert chosen["fit"]["params"]["alpha"] == pytest.approx(LAW["alpha"], abs=0.03)


def test_predict_answers_with_the_recommended_law_and_its_expected_error(document):
    answer = predict(document, compute=1e21)["groups"]["all"]["recommended"]
    chosen = document["groups"]["all"]["backtest"]["recommended"]
    assert answer["law"] == "chinchilla" and answer["source"] == "backtest"
    assert answer["expected_error"] == chosen["expected_error"] and answer["filter"] == chosen["filter"]
    n_opt, _ = chinchilla_allocation(chosen["fit"]["params"], document["compute_convention"], 1e21)
    assert answer["compute"]["N_opt"] == pytest.approx(float(n_opt))


def test_predictions_say_how_far_they_extrapolate_and_warn_past_ten_times_compute(document):
    largest = max(p["C"] for p in document["groups"]["all"]["points"])
    near = predict(document, compute=2 * largest)["groups"]["all"]["compute"]["chinchilla"]["extrapolation"]
    assert near["C_ratio"] == pytest.approx(2.0) and near["warning"] is None
    far = predict(document, compute=1000 * largest)["groups"]["all"]["compute"]["chinchilla"]
    assert far["extrapolation"]["C_ratio"] == pytest.approx(1000.0)
    assert far["extrapolation"]["N_ratio"] == pytest.approx(far["N_opt"] / SIZES.max())
    assert "x1e+03 compute" in far["extrapolation"]["warning"]


def test_the_linear_baseline_is_omitted_outside_its_range_and_never_negative(document):
    inside = predict(document, params=1e8, tokens=2e9)["groups"]["all"]["run"]["linear"]
    assert inside["loss"] > 0
    outside = predict(document, params=1e11, tokens=1e13)["groups"]["all"]["run"]
    assert outside["linear"]["loss"] is None and "outside the fitted range" in outside["linear"]["note"]
    assert outside["chinchilla"]["loss"] > LAW["E"]


def test_cli_backtest_and_predict_warning(tmp_path):
    table = under_trained_table(tmp_path / "runs.csv", SIZES[::2], (10, 20, 40))  # small: two filters to score
    out = tmp_path / "fit.json"
    fitted = scale_in_process(
        "fit", table, "--n-col", "N", "--d-col", "D", "--loss-col", "loss", "--law", "chinchilla",
        "--bootstrap", "0", "--backtest", "--out", out,
    )  # fmt: skip
    assert fitted.returncode == 0, fitted.stderr
    assert (
        "recommended for predict: chinchilla on " in fitted.stdout and "expected extrapolation error" in fitted.stdout
    )
    predicted = scale_in_process("predict", out, "--compute", "1e24")
    assert predicted.returncode == 0, predicted.stderr
    assert predicted.stdout.startswith("verdict: group all: train N = ")
    assert "recommended law chinchilla" in predicted.stdout and "expected error" in predicted.stdout
    assert "warning:" in predicted.stderr and "beyond the largest fitted run" in predicted.stderr


def test_a_recommendation_is_withheld_when_its_law_is_not_identified_on_all_runs():
    from scaling_cli.fit.pipeline import _withhold_unidentified_recommendation

    problem = "alpha's interval [-0.03, 28] reaches 0"
    refit = {"status": "ok", "params": {}, "at_compute": {"C": 1e18, "N_opt": 1e8}}
    group = {
        "laws": {"chinchilla": {"status": "not_identified", "problems": [problem]}},
        "backtest": {"recommended": {"law": "chinchilla", "filter": "all", "fit": refit}},
    }
    _withhold_unidentified_recommendation(group)
    assert refit["status"] == "not_identified" and "at_compute" not in refit
    assert refit["problems"] == ["on all runs: " + problem]

    identified = {"status": "ok", "params": {}, "at_compute": {"C": 1e18}}
    group = {
        "laws": {"chinchilla": {"status": "ok"}},
        "backtest": {"recommended": {"law": "chinchilla", "filter": "all", "fit": identified}},
    }
    _withhold_unidentified_recommendation(group)
    assert identified["status"] == "ok" and "at_compute" in identified
