"""Approach 2 of Chinchilla: per FLOP budget a parabola of loss in ln N, its vertex N_opt(C), then power laws.

Runs are grouped into budgets by compute: sorted by C, a run joins the current budget while its C is
within a factor (1 + tolerance) of the budget's smallest C. Coefficients are stored highest power first
(numpy.polyval order) in the variable ln N. A vertex outside the sampled sizes, or a lowest observed loss
at the smallest or largest size, is flagged as `edge`; a parabola that opens downward has no minimum
and its budget is left out of the power laws.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from scaling_cli.errors import FitError
from scaling_cli.fit.powerlaw import allocation_params

BUDGET_TOLERANCE = 0.1
MIN_SIZES = 3
MIN_BUDGETS = 3


def budget_labels(c, tolerance: float = BUDGET_TOLERANCE) -> np.ndarray:
    """An integer budget label per point: runs whose compute agrees within a factor (1 + tolerance)."""
    log_c = np.log(np.asarray(c, dtype=float))
    order = np.argsort(log_c, kind="stable")
    labels = np.empty(len(log_c), dtype=int)
    label, start = -1, -np.inf
    for i in order:
        if log_c[i] - start > np.log1p(tolerance):
            label, start = label + 1, log_c[i]
        labels[i] = label
    return labels


def fit_budget(n, d, c, loss, weights=None) -> dict | None:
    """The parabola of one budget and its vertex; None when it has fewer than MIN_SIZES distinct sizes."""
    log_n = np.log(np.asarray(n, dtype=float))
    if len(np.unique(log_n)) < MIN_SIZES:
        return None
    w = None if weights is None else np.sqrt(weights)
    coef = np.polyfit(log_n, loss, 2, w=w)
    budget = float(np.exp(np.average(np.log(c), weights=weights)))
    result = {"C": budget, "coef": [float(v) for v in coef], "N_opt": None, "D_opt": None, "loss_opt": None}
    if coef[0] <= 0:
        result.update(edge=True, convex=False)
        return result
    log_n_opt = -coef[1] / (2 * coef[0])
    slope, intercept = np.polyfit(log_n, np.log(d), 1, w=w)  # ln D is linear in ln N along a budget
    lowest = log_n[np.argmin(loss)]
    edge = not (log_n.min() < log_n_opt < log_n.max()) or lowest in (log_n.min(), log_n.max())
    result.update(
        N_opt=float(np.exp(log_n_opt)),
        D_opt=float(np.exp(intercept + slope * log_n_opt)),
        loss_opt=float(np.polyval(coef, log_n_opt)),
        edge=bool(edge),
        convex=True,
    )
    return result


def fit_budgets(points: pd.DataFrame, tolerance: float, weights=None, with_points: bool = True) -> list[dict]:
    """Parabolas for every budget with enough sizes, smallest budget first."""
    n, d, c, loss = (points[k].to_numpy(dtype=float) for k in ("N", "D", "C", "loss"))
    labels = budget_labels(c, tolerance)
    weights = np.ones(len(points)) if weights is None else np.asarray(weights, dtype=float)
    budgets = []
    for label in np.unique(labels):
        rows = np.flatnonzero((labels == label) & (weights > 0))
        fitted = fit_budget(n[rows], d[rows], c[rows], loss[rows], weights[rows])
        if fitted is not None:
            if with_points:
                fitted["points"] = [{"N": float(size), "loss": float(v)} for size, v in zip(n[rows], loss[rows])]
            budgets.append(fitted)
    return budgets


def allocation_from_budgets(budgets: list[dict], where: str) -> dict[str, float]:
    """Power laws through the vertices of the convex budgets; FitError when there are too few."""
    usable = [b for b in budgets if b["convex"]]
    if len(usable) < MIN_BUDGETS:
        raise FitError(
            where,
            "isoflop",
            f"needs at least {MIN_BUDGETS} budgets with {MIN_SIZES}+ model sizes and a minimum, got {len(usable)}",
        )
    c = [b["C"] for b in usable]
    return allocation_params(c, [b["N_opt"] for b in usable], [b["D_opt"] for b in usable], where=where, law="isoflop")


def fit_isoflop(points: pd.DataFrame, *, where: str, tolerance: float = BUDGET_TOLERANCE) -> dict:
    """Approach 2: budgets, their parabolas and vertices, and N_opt, D_opt power laws."""
    budgets = fit_budgets(points, tolerance)
    params = allocation_from_budgets(budgets, where)
    return {
        "budgets": budgets,
        "params": params,
        "settings": {"budget_tolerance": tolerance, "parabola": "loss = c2 (ln N)^2 + c1 ln N + c0"},
        "diagnostics": {
            "budgets": len(budgets),
            "edge_budgets": int(sum(b["edge"] for b in budgets)),
            "non_convex_budgets": int(sum(not b["convex"] for b in budgets)),
        },
    }
