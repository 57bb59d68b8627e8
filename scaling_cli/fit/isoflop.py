"""Approach 2 of Chinchilla: per FLOP budget the loss minimum over model size, then power laws through them.

Runs are grouped into budgets by compute: sorted by C, a run joins the current budget while its C is
within a factor (1 + tolerance) of the budget's smallest C. Real slices span 100-1000x in N, and far from
the minimum the loss is shaped by under-training, not by the bowl around the optimum, so one parabola over
a whole slice puts the vertex in the wrong place. Per budget we therefore fit a parabola of loss in ln N
only through the WINDOW_SIDE sizes on either side of the size with the lowest measured loss (a local
quadratic around the minimum). A budget whose lowest loss is at its smallest or largest size, whose
parabola opens downward, or whose vertex leaves the window has no measured minimum: it is listed with the
reason and left out of the power laws. Coefficients are stored highest power first (numpy.polyval order)
in the variable ln N.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from scaling_cli.errors import FitError
from scaling_cli.fit.powerlaw import allocation_params
from scaling_cli.fit.law import Law, register
from scaling_cli.fit.allocation import split_from_size

BUDGET_TOLERANCE = 0.1
MIN_SIZES = 3
MIN_BUDGETS = 3
WINDOW_SIDE = 2  # sizes on each side of the lowest measured loss that the parabola goes through
METHOD = f"parabola of loss in ln N through the lowest-loss size and up to {WINDOW_SIDE} sizes on each side"


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
    """The windowed parabola of one budget and its vertex; None when it has fewer than MIN_SIZES sizes."""
    log_n = np.log(np.asarray(n, dtype=float))
    loss = np.asarray(loss, dtype=float)
    weights = np.ones(len(loss)) if weights is None else np.asarray(weights, dtype=float)
    sizes = np.unique(log_n)
    if len(sizes) < MIN_SIZES:
        return None
    mean_loss = np.array([np.average(loss[log_n == s], weights=weights[log_n == s]) for s in sizes])
    lowest = int(np.argmin(mean_loss))
    first = min(max(lowest - WINDOW_SIDE, 0), len(sizes) - MIN_SIZES)
    last = max(min(lowest + WINDOW_SIDE, len(sizes) - 1), MIN_SIZES - 1)
    used = (log_n >= sizes[first]) & (log_n <= sizes[last])
    coef = np.polyfit(log_n[used], loss[used], 2, w=np.sqrt(weights[used]))
    result = {
        "C": float(np.exp(np.average(np.log(c), weights=weights))),
        "coef": [float(v) for v in coef],
        "N_opt": None,
        "D_opt": None,
        "loss_opt": None,
        "edge": lowest in (0, len(sizes) - 1),
        "convex": bool(coef[0] > 0),
        "window": [float(np.exp(sizes[first])), float(np.exp(sizes[last]))],
        "method": "window",
        "used": used,
    }
    if result["convex"]:
        log_n_opt = -coef[1] / (2 * coef[0])
        slope, intercept = np.polyfit(log_n[used], np.log(np.asarray(d, dtype=float)[used]), 1)
        result.update(
            N_opt=float(np.exp(log_n_opt)),
            D_opt=float(np.exp(intercept + slope * log_n_opt)),
            loss_opt=float(np.polyval(coef, log_n_opt)),
        )
        inside = sizes[first] <= log_n_opt <= sizes[last]
        result["edge"] = bool(result["edge"] or not (sizes[0] < log_n_opt < sizes[-1]))
        result["vertex_in_window"] = bool(inside)
    result["reason"] = _exclusion(result, lowest == 0)
    result["used_in_law"] = result["reason"] is None
    return result


def _exclusion(budget: dict, lowest_at_smallest: bool) -> str | None:
    """Why a budget has no measured minimum (and how to give it one), or None when it has one."""
    if budget["edge"]:
        side = "smallest" if lowest_at_smallest else "largest"
        more = "smaller" if lowest_at_smallest else "larger"
        return f"lowest loss at the {side} size: add {more} models at C = {budget['C']:.3g}"
    if not budget["convex"]:
        return f"the losses around the minimum do not curve upward: add sizes near the minimum at C = {budget['C']:.3g}"
    if not budget.get("vertex_in_window", True):
        return "the parabola's vertex lies outside the sizes it was fitted to"
    return None


def fit_budgets(points: pd.DataFrame, tolerance: float, weights=None, with_points: bool = True) -> list[dict]:
    """Windowed parabolas for every budget with enough sizes, smallest budget first."""
    n, d, c, loss = (points[k].to_numpy(dtype=float) for k in ("N", "D", "C", "loss"))
    labels = budget_labels(c, tolerance)
    weights = np.ones(len(points)) if weights is None else np.asarray(weights, dtype=float)
    budgets = []
    for label in np.unique(labels):
        rows = np.flatnonzero((labels == label) & (weights > 0))
        fitted = fit_budget(n[rows], d[rows], c[rows], loss[rows], weights[rows])
        if fitted is None:
            continue
        used = fitted.pop("used")
        if with_points:
            fitted["points"] = [
                {"N": float(size), "loss": float(v), "used": bool(u)} for size, v, u in zip(n[rows], loss[rows], used)
            ]
        budgets.append(fitted)
    return budgets


def allocation_from_budgets(budgets: list[dict], where: str) -> dict[str, float]:
    """Power laws through the minima of the budgets that have one; FitError when there are too few."""
    usable = [b for b in budgets if b["used_in_law"]]
    if len(usable) < MIN_BUDGETS:
        raise FitError(where, "isoflop", _too_few(budgets, len(usable)))
    c = [b["C"] for b in usable]
    return allocation_params(c, [b["N_opt"] for b in usable], [b["D_opt"] for b in usable], where=where, law="isoflop")


def _too_few(budgets: list[dict], usable: int) -> str:
    """The skip reason, with what to add to the sweep."""
    text = f"needs at least {MIN_BUDGETS} budgets with {MIN_SIZES}+ model sizes and a minimum inside them, got {usable}"
    excluded = [b for b in budgets if not b["used_in_law"]]
    if excluded:
        text += " (" + "; ".join(b["reason"] for b in excluded) + ")"
    missing = MIN_BUDGETS - usable - len(excluded)
    if missing > 0:
        plural = "s" if missing > 1 else ""
        text += f": add {missing} more compute budget{plural}, each {MIN_SIZES}+ model sizes at the same compute"
    return text


def fit_isoflop(points: pd.DataFrame, *, where: str, tolerance: float = BUDGET_TOLERANCE) -> dict:
    """Approach 2: budgets, their windowed parabolas and minima, and N_opt, D_opt power laws."""
    budgets = fit_budgets(points, tolerance)
    params = allocation_from_budgets(budgets, where)
    return {
        "budgets": budgets,
        "params": params,
        "settings": {
            "budget_tolerance": tolerance,
            "parabola": "loss = c2 (ln N)^2 + c1 ln N + c0",
            "method": METHOD,
            "window_side": WINDOW_SIDE,
            "excluded": "budgets with the lowest loss at an edge size, a parabola opening downward, or the vertex "
            "outside the window",
            "bootstrap": "points resampled within each budget",
        },
        "diagnostics": {
            "budgets": len(budgets),
            "edge_budgets": int(sum(b["edge"] for b in budgets)),
            "non_convex_budgets": int(sum(not b["convex"] for b in budgets)),
            "used_budgets": int(sum(b["used_in_law"] for b in budgets)),
            "excluded_budgets": [{"C": b["C"], "reason": b["reason"]} for b in budgets if not b["used_in_law"]],
        },
    }


@register
class IsoflopLaw(Law):
    """Approach 2: N_opt(C) = N0 C^a through the minima of each budget's parabola.

    D_opt follows from the budget: C / (k(N_opt) N_opt), so the allocation spends exactly C (the fitted
    D_opt(C) = D0 C^b is kept in fit.json for comparison only).
    """

    name = "isoflop"
    allocates = True

    def fit(self, points, options, where: str) -> dict:
        return fit_isoflop(points, where=where, tolerance=options.budget_tolerance)

    def bootstrap(self, points, fitted: dict, indices, context: dict) -> dict:
        from scaling_cli.fit.bootstrap import bootstrap_isoflop

        options = context["options"]
        return bootstrap_isoflop(
            points,
            options.bootstrap,
            options.seed,
            tolerance=options.budget_tolerance,
            at_compute=context["at_compute"],
            where=context["where"],
        )

    def allocate(self, params, convention: dict, c):
        return split_from_size(params, convention, c)
