"""Approaches 1 and 2, Kaplan's single-variable laws and the linear baseline on tables from known laws."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scaling_cli.errors import FitError
from scaling_cli.fit import envelope, isoflop, kaplan, linear

A_EXP, N0 = 0.5, 0.1  # N_opt = N0 C^a used to build the envelope and isoFLOP tables


def envelope_points(count: int = 9) -> pd.DataFrame:
    """Finished runs: at each C_k the run of N_k = N0 C_k^a is best, and a 2x larger one is worse."""
    rows = []
    for k, c in enumerate(np.logspace(15, 19, count)):
        size = N0 * c**A_EXP
        frontier_loss = 5.0 * c**-0.05
        rows.append({"run_id": f"r{k}", "N": size, "D": c / (6 * size), "C": c, "loss": frontier_loss})
        rows.append({"run_id": f"big{k}", "N": 2 * size, "D": c / (12 * size), "C": c, "loss": frontier_loss + 0.1})
    return pd.DataFrame(rows)


def test_envelope_recovers_a_noiseless_power_law_exactly():
    result = envelope.fit_envelope(envelope_points(), where="t")
    assert [row["run_id"] for row in result["frontier"]] == [f"r{k}" for k in range(9)]
    params = result["params"]
    assert params["a"] == pytest.approx(A_EXP, rel=1e-9)
    assert params["N0"] == pytest.approx(N0, rel=1e-7)
    assert params["b"] == pytest.approx(1 - A_EXP, rel=1e-9)
    assert params["D0"] == pytest.approx(1 / (6 * N0), rel=1e-7)
    assert result["settings"]["eligible_points"] == 18 and "final point" in result["settings"]["source"]


def test_envelope_from_final_points_keeps_runs_beating_all_cheaper_runs():
    points = pd.DataFrame(
        {
            "run_id": list("abcde"),
            "N": [1e6, 2e6, 4e6, 8e6, 16e6],
            "D": [1e8, 1e8, 1e8, 1e8, 1e8],
            "C": [1e15, 2e15, 4e15, 8e15, 16e15],
            "loss": [4.0, 3.5, 3.7, 3.0, 2.9],
        }
    )
    assert envelope.final_point_frontier(points)["run_id"].tolist() == ["a", "b", "d", "e"]


def isoflop_table(shift: float = 1.0) -> pd.DataFrame:
    """Budgets whose loss is an exact parabola in ln N around N_opt = N0 C^a (times `shift`)."""
    rows = []
    for c in (1e16, 1e17, 1e18, 1e19):
        n_opt = N0 * c**A_EXP
        for factor in (0.25, 0.5, 1.0, 2.0, 4.0):
            size = n_opt * factor * shift
            loss = 3.0 - 0.1 * np.log10(c) + 0.05 * np.log(size / n_opt) ** 2
            rows.append({"run_id": f"{c:g}-{factor}", "N": size, "D": c / (6 * size), "C": c, "loss": loss})
    return pd.DataFrame(rows)


def test_isoflop_recovers_a_noiseless_power_law_exactly():
    result = isoflop.fit_isoflop(isoflop_table(), where="t")
    params = result["params"]
    assert params["a"] == pytest.approx(A_EXP, rel=1e-9)
    assert params["N0"] == pytest.approx(N0, rel=1e-7)
    assert params["b"] == pytest.approx(1 - A_EXP, rel=1e-9)
    assert params["D0"] == pytest.approx(1 / (6 * N0), rel=1e-7)
    diagnostics = result["diagnostics"]
    assert (diagnostics["budgets"], diagnostics["edge_budgets"], diagnostics["used_budgets"]) == (4, 0, 4)
    first = result["budgets"][0]
    assert first["C"] == pytest.approx(1e16) and len(first["points"]) == 5


def test_isoflop_flags_a_minimum_at_the_edge_of_the_sampled_sizes():
    edge = isoflop_table(shift=4.0)  # every budget's smallest size is best
    with pytest.raises(FitError, match="got 0 .*lowest loss at the smallest size: add smaller models at C = 1e"):
        isoflop.fit_isoflop(edge, where="t")
    budgets = isoflop.fit_budgets(edge, isoflop.BUDGET_TOLERANCE)
    assert all(b["edge"] and not b["used_in_law"] for b in budgets)


def test_isoflop_budgets_group_runs_within_the_tolerance():
    labels = isoflop.budget_labels([1e15, 1.05e15, 3e15, 3.2e15, 1e16], tolerance=0.1)
    assert labels.tolist() == [0, 0, 1, 1, 2]


def test_isoflop_with_too_few_budgets_says_how_many_it_needs():
    two_budgets = isoflop_table()[lambda t: t["C"] < 1e18]
    with pytest.raises(FitError, match="needs at least 3 budgets .* got 2"):
        isoflop.fit_isoflop(two_budgets, where="t")


@pytest.mark.parametrize("irreducible, e", [(False, 0.0), (True, 1.5)])
def test_kaplan_term_recovers_a_noiseless_power_law(irreducible, e):
    x = np.logspace(6, 9, 7)
    loss = e + (8.8e13 / x) ** 0.076
    k, alpha, fitted_e = kaplan.fit_term(x, loss, irreducible=irreducible, where="t", what="L_N")
    params = kaplan.term_params(k, alpha, fitted_e, "L_N")
    assert params["alpha_N"] == pytest.approx(0.076, rel=1e-4)
    assert params["N_c"] == pytest.approx(8.8e13, rel=1e-2)
    assert params["E"] == pytest.approx(e, abs=1e-4)


def test_kaplan_needs_enough_distinct_points():
    with pytest.raises(FitError, match="needs at least 4 distinct points, got 3"):
        kaplan.fit_term([1e6, 1e7, 1e8], [3.0, 2.5, 2.2], irreducible=True, where="t", what="L_N")


def test_linear_baseline_recovers_a_linear_table_and_extrapolates_it():
    rng = np.random.default_rng(0)
    points = pd.DataFrame({"N": rng.uniform(1e6, 1e8, 20), "D": rng.uniform(1e8, 1e10, 20)})
    points["C"] = 6 * points["N"] * points["D"]
    points["loss"] = 4.0 - 1e-8 * points["N"] - 5e-11 * points["D"] + 1e-19 * points["C"]
    result = linear.fit_linear(points, where="t")
    assert result["params"]["w0"] == pytest.approx(4.0, rel=1e-6)
    assert result["params"]["wN"] == pytest.approx(-1e-8, rel=1e-5)
    assert result["params"]["wC"] == pytest.approx(1e-19, rel=1e-5)
    assert result["r2"] == pytest.approx(1.0)


def test_kaplan_leaves_out_the_irreducible_term_where_a_law_has_only_three_points():
    n, d = (a.ravel() for a in np.meshgrid([1e6, 2e6, 4e6, 8e6], [1e8, 3e8, 1e9]))
    loss = 1.5 + (1e4 / n) ** 0.3 + (1e6 / d) ** 0.3
    points = pd.DataFrame({"run_id": [f"r{i}" for i in range(n.size)], "N": n, "D": d, "C": 6 * n * d, "loss": loss})
    result = kaplan.fit_kaplan(points, envelope.final_point_frontier(points), irreducible=True, where="t")
    assert result["L_N"]["irreducible"] and not result["L_D"]["irreducible"]
    assert result["L_D"]["params"]["E"] == 0.0
