"""Kaplan's laws as Kaplan wrote them: non-embedding N and C = 6 N D whatever the table's convention, L(N)
from converged (or frontier) runs rather than each size's largest budget, eq. 1.5 plus E named
"Kaplan-form", and bootstrap intervals that contain their point estimates."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scaling_cli.fit import FitOptions, TableOptions, bootstrap, fit_all, kaplan

SIZES = np.array([2e4, 5e4, 1.2e5, 3e5, 8e5, 2e6])
BUDGETS = np.array([1e7, 2e7, 4e7, 8e7, 1.6e8])


def law_loss(n, d):
    """Kaplan's eq. 1.5 with an E: at a fixed size the loss stops falling once D is ample."""
    return 1.5 + ((2e5 / n) ** (0.4 / 0.3) + 5e6 / d) ** 0.3


def runs_table(path, noise=0.0, seed=0):
    """A results-style table: embeddings of a byte vocabulary (256 x d_model) on top of 12 L d^2, and
    Appendix-F-like flops that are not 6 N D."""
    rng = np.random.default_rng(seed)
    n_ne, d = (a.ravel() for a in np.meshgrid(SIZES, BUDGETS))
    embeddings = 256 * np.sqrt(n_ne / 12 / 2)
    loss = law_loss(n_ne, d) * np.exp(rng.normal(0, noise, n_ne.size))
    table = pd.DataFrame(
        {
            "run_id": [f"r{i}" for i in range(n_ne.size)],
            "params": n_ne + embeddings,
            "params_nonembed": n_ne,
            "tokens": d,
            "flops": 7.3 * (n_ne + embeddings) * d,
            "val_loss": loss,
        }
    )
    table.to_csv(path, index=False)
    return path


def test_kaplan_points_use_non_embedding_n_and_six_n_d(tmp_path):
    points, _, _ = _load(runs_table(tmp_path / "runs.csv"))
    converted, conventions = kaplan.kaplan_points(points)
    assert np.allclose(converted["N"], points["N_nonembed"])
    assert not np.allclose(converted["N"], points["N"])
    assert np.allclose(converted["C"], 6 * points["N_nonembed"] * points["D"])
    assert "non-embedding" in conventions["N"] and "6 N D" in conventions["C"]


def test_a_table_without_params_nonembed_says_n_is_as_given(tmp_path):
    path = runs_table(tmp_path / "runs.csv")
    pd.read_csv(path).drop(columns="params_nonembed").to_csv(path, index=False)
    points, _, _ = _load(path)
    converted, conventions = kaplan.kaplan_points(points)
    assert np.allclose(converted["N"], points["N"])
    assert "no params_nonembed" in conventions["N"]


def test_l_n_uses_converged_runs_and_recovers_the_exponent(tmp_path):
    document = fit_all(runs_table(tmp_path / "runs.csv"), TableOptions(), FitOptions(laws=("kaplan",), bootstrap=0))
    law = document["groups"]["all"]["laws"]["kaplan"]
    settings = law["settings"]
    assert settings["L_N"].startswith("converged runs")
    # the two largest sizes are still learning at the largest budget: they are not converged points
    assert max(settings["L_N_sizes"]) < SIZES[-1]
    assert law["L_N"]["params"]["alpha_N"] == pytest.approx(0.4, abs=0.06)
    assert settings["run_prediction"].startswith("Kaplan-form")
    assert "6 N D" in settings["conventions"]["C"]


def test_largest_budget_runs_would_bias_alpha_n_low(tmp_path):
    """The rule this replaces: the undertrained largest models flatten L(N)."""
    points, _, _ = _load(runs_table(tmp_path / "runs.csv"))
    converted, _ = kaplan.kaplan_points(points)
    largest = kaplan.largest_budget_per_size(converted)
    k, alpha, e = kaplan.fit_term(largest["N"], largest["loss"], irreducible=True, where="t", what="L_N")
    converged = kaplan.converged_per_size(converted)
    k2, alpha2, e2 = kaplan.fit_term(converged["N"], converged["loss"], irreducible=True, where="t", what="L_N")
    assert abs(alpha2 - 0.4) < abs(alpha - 0.4)


def test_every_interval_contains_its_point_estimate(tmp_path):
    path = runs_table(tmp_path / "runs.csv", noise=0.03, seed=2)
    document = fit_all(path, TableOptions(), FitOptions(laws=("kaplan",), bootstrap=20, seed=2))
    law = document["groups"]["all"]["laws"]["kaplan"]
    for name in kaplan.VARIABLES:
        for key, value in law[name]["params"].items():
            low, high = law[name]["intervals"][key]
            assert low <= value <= high, (name, key, value, low, high)
    low, high = law["intervals"]["loss_at_C"]
    assert low <= high


def test_interval_widens_to_a_point_outside_the_resamples():
    assert bootstrap.interval([1.0, 2.0, 3.0], point=1e-24)[0] == 1e-24
    assert bootstrap.interval([1.0, 2.0, 3.0], point=2.0) == bootstrap.interval([1.0, 2.0, 3.0])


def _load(path):
    from scaling_cli.fit.table import load_rows

    return load_rows(path, TableOptions())
