"""The data-constrained law (Muennighoff et al. 2023): R* recovered from a table made with a known R*, with a
bootstrap interval; repeated data predicts a higher loss than fresh data of the same size."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import scale_in_process

from scaling_cli.errors import FitError
from scaling_cli.fit import FitOptions, TableOptions, fit_all, predict
from scaling_cli.fit.constrained import (
    ConstrainedObjective,
    constrained_loss,
    effective_params,
    effective_tokens,
    log_unique_params,
)

LAW = {"E": 1.8, "A": 400.0, "B": 2000.0, "alpha": 0.34, "beta": 0.36, "R_D_star": 15.0, "R_N_star": 5.3}
COLUMNS = TableOptions(n_col="N", d_col="D", loss_col="loss")


EPOCHS = (0.5, 1, 2, 4, 8, 16, 32, 64)


def repeated_table(path, sizes=(1e6, 3.16e6, 1e7, 3.16e7, 1e8), caps=(1e8, 3e8, 1e9), epochs=EPOCHS, seed=0):
    """Sizes x unique-token caps x epoch counts (0.5 to 64 passes) from LAW, with 0.2% noise."""
    rng = np.random.default_rng(seed)
    n, u, epochs = (a.ravel() for a in np.meshgrid(sizes, caps, epochs))
    d = u * epochs
    loss = constrained_loss(LAW, n, d, u) * np.exp(rng.normal(0, 0.002, n.size))
    pd.DataFrame({"N": n, "D": d, "unique_tokens": u, "loss": loss}).to_csv(path, index=False)
    return path


def test_effective_tokens_are_fresh_up_to_one_epoch_and_saturate_at_u_times_one_plus_r_star():
    assert effective_tokens(5e8, 1e9, 15.0) == pytest.approx(5e8)
    assert effective_tokens(2e9, 1e9, 15.0) == pytest.approx(1e9 + 15e9 * (1 - np.exp(-1 / 15)))
    assert effective_tokens(1e14, 1e9, 15.0) == pytest.approx(16e9, rel=1e-6)


def test_the_analytic_gradient_matches_finite_differences():
    n, u, epochs = (a.ravel() for a in np.meshgrid([1e6, 1e7], [1e8, 1e9], [0.5, 4, 40]))
    objective = ConstrainedObjective(n, u * epochs, u, np.full(n.size, 3.0), delta=0.05)
    x = np.array([0.5, 6.0, 7.5, 0.3, 0.35, np.log(10.0), np.log(4.0)])
    assert (objective.n > np.exp(log_unique_params(*x[1:5], objective.log_u))).any()  # the N' term is exercised
    _, gradient = objective.scalar(x)
    steps = np.eye(7) * 1e-6
    numeric = [(objective.scalar(x + h)[0] - objective.scalar(x - h)[0]) / 2e-6 for h in steps]
    assert np.allclose(gradient, numeric, rtol=1e-4, atol=1e-9)


@pytest.fixture(scope="module")
def document(tmp_path_factory):
    table = repeated_table(tmp_path_factory.mktemp("constrained") / "repeat.csv")
    return fit_all(table, COLUMNS, FitOptions(laws=("constrained",), bootstrap=20))


def test_r_star_is_recovered_with_an_interval(document):
    law = document["groups"]["all"]["laws"]["constrained"]
    assert law["status"] == "ok"
    assert law["params"]["R_D_star"] == pytest.approx(LAW["R_D_star"], rel=0.15)
    assert law["params"]["beta"] == pytest.approx(LAW["beta"], abs=0.03)
    low, high = law["intervals"]["R_D_star"]
    assert low < LAW["R_D_star"] < high and high / low < 2.0
    assert document["columns"]["u"] == "unique_tokens"


def test_repeated_data_predicts_a_higher_loss_than_fresh_data(document):
    fresh = predict(document, params=1e7, tokens=1e10)["groups"]["all"]["run"]["constrained"]
    repeated = predict(document, params=1e7, tokens=1e10, unique_tokens=1e8)["groups"]["all"]["run"]["constrained"]
    assert repeated["loss"] > fresh["loss"] + 0.05 and "100 epochs" in repeated["note"]


def test_a_table_without_repetition_cannot_fit_it_and_does_not_try_by_default(tmp_path):
    table = tmp_path / "fresh.csv"
    n, d = (a.ravel() for a in np.meshgrid([1e6, 1e7, 1e8], [1e9, 1e10, 1e11]))
    loss = constrained_loss(LAW, n, d, d)
    pd.DataFrame({"N": n, "D": d, "unique_tokens": d, "loss": loss}).to_csv(table, index=False)
    with pytest.raises(FitError, match="needs at least 2 runs that repeat their data"):
        fit_all(table, COLUMNS, FitOptions(laws=("constrained",), bootstrap=0))
    assert "constrained" not in fit_all(table, COLUMNS, FitOptions(bootstrap=0))["groups"]["all"]["laws"]


def test_cli_fits_the_constrained_law_and_reports_r_star(tmp_path):
    out = tmp_path / "fit.json"
    args = ("--n-col", "N", "--d-col", "D", "--loss-col", "loss", "--law", "constrained", "--bootstrap", "0")
    table = repeated_table(tmp_path / "repeat.csv", sizes=(1e6, 1e7, 1e8), caps=(1e8, 1e9), epochs=(1, 4, 16, 64))
    result = scale_in_process("fit", table, *args, "--out", out)
    assert result.returncode == 0, result.stderr
    assert "constrained: R_D* = " in result.stdout
    assert json.loads(out.read_text())["groups"]["all"]["laws"]["constrained"]["status"] == "ok"


def test_a_repetition_cost_the_runs_cannot_measure_is_not_identified(tmp_path):
    # Repeating costs nothing in this table (R* = 1e6): no run's repetitions can bound R*.
    table = repeated_table(tmp_path / "free.csv", sizes=(1e6, 1e7, 1e8), caps=(1e8, 1e9), epochs=(1, 4, 16, 64))
    frame = pd.read_csv(table)
    frame["loss"] = constrained_loss({**LAW, "R_D_star": 1e6}, frame["N"], frame["D"], frame["unique_tokens"])
    frame.to_csv(table, index=False)
    law = fit_all(table, COLUMNS, FitOptions(laws=("constrained",), bootstrap=10))["groups"]["all"]["laws"][
        "constrained"
    ]
    assert law["status"] == "not_identified"
    assert any("beyond 10x the most repetitions run" in problem for problem in law["problems"])


def test_excess_parameters_count_less_and_small_models_are_untouched():
    u = 1e8
    u_n = float(np.exp(log_unique_params(np.log(LAW["A"]), np.log(LAW["B"]), LAW["alpha"], LAW["beta"], np.log(u))))
    assert effective_params(0.5 * u_n, u, LAW) == pytest.approx(0.5 * u_n)
    assert effective_params(1e4 * u_n, u, LAW) == pytest.approx(u_n * (1 + LAW["R_N_star"]), rel=1e-6)


def test_fixed_parameters_are_held_reported_and_not_bootstrapped(tmp_path):
    table = repeated_table(tmp_path / "repeat.csv", sizes=(1e6, 1e7, 1e8), caps=(1e8, 1e9), epochs=(1, 4, 16, 64))
    fixed = {key: LAW[key] for key in ("E", "A", "B", "alpha", "beta")}
    law = fit_all(table, COLUMNS, FitOptions(laws=("constrained",), bootstrap=8, fixed=fixed))["groups"]["all"]["laws"][
        "constrained"
    ]
    assert law["fixed"] == fixed
    for key, value in fixed.items():
        assert law["params"][key] == pytest.approx(value)
        assert law["intervals"][key] is None
        column = list(law["params"]).index(key)
        assert all(sample[column] == pytest.approx(value) for sample in law["bootstrap"]["samples"])
    assert law["params"]["R_D_star"] == pytest.approx(LAW["R_D_star"], rel=0.1)
    assert law["intervals"]["R_D_star"] is not None


def test_fix_holds_chinchilla_parameters_too_and_the_cli_reports_them(tmp_path):
    table = tmp_path / "fresh.csv"
    n, d = (a.ravel() for a in np.meshgrid([1e6, 3e6, 1e7, 3e7, 1e8], [1e9, 3e9, 1e10, 3e10]))
    pd.DataFrame({"N": n, "D": d, "loss": constrained_loss(LAW, n, d, d)}).to_csv(table, index=False)
    out = tmp_path / "fit.json"
    args = ("--n-col", "N", "--d-col", "D", "--loss-col", "loss", "--law", "chinchilla", "--bootstrap", "5")
    result = scale_in_process("fit", table, *args, "--fix", "alpha=0.3", "--fix", "E=1.8", "--out", out)
    assert result.returncode == 0, result.stderr
    law = json.loads(out.read_text())["groups"]["all"]["laws"]["chinchilla"]
    assert law["fixed"] == {"alpha": 0.3, "E": 1.8}
    assert law["params"]["alpha"] == pytest.approx(0.3) and law["params"]["E"] == pytest.approx(1.8)
    assert law["intervals"]["alpha"] is None and law["intervals"]["beta"] is not None
    bad = scale_in_process("fit", table, *args, "--fix", "alpha")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "--fix" in bad.stderr
