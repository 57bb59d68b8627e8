"""Approach 2 on wide IsoFLOP slices: 11 budgets of 12 sizes spanning 1000x in N, where the large models at
small budgets are barely trained. One parabola over a whole slice misplaces the minimum; the windowed
parabola around the measured minimum recovers the exponent of N_opt(C)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scaling_cli.fit import isoflop
from scaling_cli.fit.pipeline import FitOptions, fit_group

LAW = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}
BUDGETS = np.logspace(17, 21, 11)
SPAN = 1000.0  # each slice's largest model is 1000x its smallest
SIZES_PER_BUDGET = 12


def true_loss(n, d):
    """Chinchilla's law plus an under-training penalty that grows with parameters per token."""
    base = LAW["E"] + LAW["A"] / n ** LAW["alpha"] + LAW["B"] / d ** LAW["beta"]
    return base + (n / d) ** 0.5


def true_optimum(c: float) -> float:
    grid = np.exp(np.linspace(np.log(1e5), np.log(1e13), 40_001))
    return float(grid[np.argmin(true_loss(grid, c / (6 * grid)))])


def wide_slices(noise: float = 0.0, seed: int = 0) -> tuple[pd.DataFrame, float]:
    """The table and the true exponent a of N_opt = N0 C^a.

    The sampled sizes move relative to the optimum from budget to budget (from 2.5x below it to 2.5x below
    the largest size), as in real sweeps that reuse one set of sizes: the slice shape changes with C.
    """
    rng = np.random.default_rng(seed)
    rows, optima = [], []
    for i, c in enumerate(BUDGETS):
        optimum = true_optimum(c)
        optima.append(optimum)
        below = 2.5 * (SPAN / 6.25) ** (i / (len(BUDGETS) - 1))
        for n in optimum / below * np.logspace(0, np.log10(SPAN), SIZES_PER_BUDGET):
            d = c / (6 * n)
            loss = true_loss(n, d) * (1 + noise * rng.standard_normal())
            rows.append({"run_id": f"{c:.3g}-{n:.3g}", "N": n, "D": d, "C": c, "loss": loss, "n_runs": 1})
    a_true = np.polyfit(np.log(BUDGETS), np.log(optima), 1)[0]
    return pd.DataFrame(rows), float(a_true)


def global_parabola_exponent(table: pd.DataFrame) -> float:
    """The previous method: one parabola of loss in ln N over each whole slice, a power law through vertices."""
    vertices = []
    for _, budget in table.groupby("C"):
        c2, c1, _ = np.polyfit(np.log(budget["N"]), budget["loss"], 2)
        vertices.append(np.exp(-c1 / (2 * c2)))
    return float(np.polyfit(np.log(sorted(table["C"].unique())), np.log(vertices), 1)[0])


def test_the_slices_are_as_wide_and_as_under_trained_as_real_ones():
    table, _ = wide_slices()
    for _, budget in table.groupby("C"):
        assert budget["N"].max() / budget["N"].min() >= 100
        assert budget["loss"].max() >= 1.5 * budget["loss"].min()


def test_windowed_parabola_recovers_the_exponent_where_a_global_parabola_does_not():
    table, a_true = wide_slices()
    assert abs(global_parabola_exponent(table) - a_true) > 0.1
    result = isoflop.fit_isoflop(table, where="t")
    assert result["params"]["a"] == pytest.approx(a_true, abs=0.03)
    assert result["diagnostics"]["used_budgets"] == len(BUDGETS)
    for budget in result["budgets"]:
        used = [p for p in budget["points"] if p["used"]]
        # the far, under-trained sizes leave the parabola: the window chosen from the data stops short of them
        assert 3 <= len(used) < SIZES_PER_BUDGET
        assert "leaves the parabola" in budget["window_reason"]
        assert budget["window"][0] <= budget["N_opt"] <= budget["window"][1]


def test_noisy_slices_with_bootstrap_within_budgets_cover_the_truth():
    table, a_true = wide_slices(noise=0.003, seed=1)
    group = fit_group(table, FitOptions(laws=("isoflop",), bootstrap=60, seed=2), "t")
    law = group["laws"]["isoflop"]
    assert law["status"] == "ok"
    assert law["params"]["a"] == pytest.approx(a_true, abs=0.03)
    low, high = law["intervals"]["a"]
    assert low <= law["params"]["a"] <= high and high - low < 0.1


def test_budgets_with_the_minimum_at_an_edge_are_listed_and_left_out():
    table, a_true = wide_slices()
    first = table["C"] == BUDGETS[0]
    smallest_half = table["N"] < table.loc[first, "N"].median()
    cut = table[~(first & smallest_half)]  # the smallest budget keeps only sizes above its optimum
    result = isoflop.fit_isoflop(cut, where="t")
    excluded = result["diagnostics"]["excluded_budgets"]
    assert len(excluded) == 1 and excluded[0]["C"] == pytest.approx(BUDGETS[0])
    assert "add smaller models" in excluded[0]["reason"]
    assert result["params"]["a"] == pytest.approx(a_true, abs=0.03)
