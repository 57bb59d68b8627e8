"""Approach 2 of Chinchilla: per FLOP budget the loss minimum over model size, then power laws through them.

Runs are grouped into budgets by compute: sorted by C, a run joins the current budget while its C is
within a factor (1 + tolerance) of the budget's smallest C. Per budget a parabola of loss in ln N is fitted
through a window of sizes around the lowest measured loss, and the window is chosen from the data: it
starts at the lowest-loss size and WINDOW_SIDE sizes on either side, then grows one size at a time (the
neighbour with the lower loss first) for as long as a parabola still describes every point within noise
(a cubic term is not significant at LACK_OF_FIT_P). Wide slices (100-1000x in N, the far sizes shaped by
under-training, not by the bowl) stop near the minimum; narrow, dense slices whose points all lie on the
bowl use all of them, where a fixed small window would be needlessly noisy. A budget whose lowest loss is
at its smallest or largest size, whose parabola opens downward, or whose vertex leaves the window has no
measured minimum: it is listed with the reason and left out of the power laws. Coefficients are stored
highest power first (numpy.polyval order) in the variable ln N.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from scipy.stats import f as f_dist

from scaling_cli.errors import FitError
from scaling_cli.fit.powerlaw import allocation_params
from scaling_cli.fit.law import SizeRuleLaw, register

BUDGET_TOLERANCE = 0.1
MIN_SIZES = 3
MIN_BUDGETS = 3
WINDOW_SIDE = 2  # sizes on each side of the lowest measured loss in the starting window
LACK_OF_FIT_P = 0.01  # a window stops growing when a cubic term is significant at this level
METHOD = (
    f"parabola of loss in ln N through a window grown from the lowest-loss size and {WINDOW_SIDE} sizes on each "
    f"side while the parabola describes every point within noise (cubic term not significant at p = {LACK_OF_FIT_P})"
)


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
    (first, last), why = choose_window(log_n, loss, weights, sizes, mean_loss, lowest)
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
        "window_reason": why,
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


def choose_window(log_n, loss, weights, sizes, mean_loss, lowest: int) -> tuple[tuple[int, int], str]:
    """(first, last) size indices of the parabola's window and why it ends there (see the module docstring)."""
    first = min(max(lowest - WINDOW_SIDE, 0), max(len(sizes) - MIN_SIZES, 0))
    last = max(min(lowest + WINDOW_SIDE, len(sizes) - 1), MIN_SIZES - 1)
    while first > 0 or last < len(sizes) - 1:
        grow_left = last == len(sizes) - 1 or (first > 0 and mean_loss[first - 1] <= mean_loss[last + 1])
        trial = (first - 1, last) if grow_left else (first, last + 1)
        p = _cubic_p(log_n, loss, weights, sizes[trial[0]], sizes[trial[1]])
        if p < LACK_OF_FIT_P:
            added = np.exp(sizes[trial[0] if grow_left else trial[1]])
            return (first, last), f"adding N = {added:.3g} leaves the parabola (cubic term p = {p:.2g})"
        first, last = trial
    return (first, last), "every size: the parabola describes the whole budget within noise"


def _cubic_p(log_n, loss, weights, low: float, high: float) -> float:
    """p-value of a cubic term in a weighted polynomial fit of loss in ln N over [low, high] (F test)."""
    inside = (log_n >= low) & (log_n <= high) & (weights > 0)
    count = int(inside.sum())
    if count <= 4:
        return 1.0
    x, y, w = log_n[inside], loss[inside], weights[inside]
    centre = x - x.mean()  # conditioning: ln N spans a narrow range far from 0
    rss = [float(np.sum(w * (y - np.polyval(np.polyfit(centre, y, k, w=np.sqrt(w)), centre)) ** 2)) for k in (2, 3)]
    dof = float(w.sum()) - 4.0
    if dof <= 0 or rss[1] <= 0:
        return 0.0 if rss[0] > rss[1] else 1.0
    return float(f_dist.sf((rss[0] - rss[1]) / (rss[1] / dof), 1, dof))


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


def allocation_from_budgets(budgets: list[dict], where: str, fixed: dict | None = None) -> dict[str, float]:
    """Power laws through the minima of the budgets that have one; FitError when there are too few."""
    usable = [b for b in budgets if b["used_in_law"]]
    if len(usable) < MIN_BUDGETS:
        raise FitError(where, "isoflop", _too_few(budgets, len(usable)))
    c = [b["C"] for b in usable]
    n, d = [b["N_opt"] for b in usable], [b["D_opt"] for b in usable]
    return allocation_params(c, n, d, where=where, law="isoflop", fixed=fixed)


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


def fit_isoflop(
    points: pd.DataFrame, *, where: str, tolerance: float = BUDGET_TOLERANCE, fixed: dict | None = None
) -> dict:
    """Approach 2: budgets, their windowed parabolas and minima, and N_opt, D_opt power laws (`fixed` held)."""
    budgets = fit_budgets(points, tolerance)
    params = allocation_from_budgets(budgets, where, fixed)
    return {
        "budgets": budgets,
        "params": params,
        "fixed": dict(fixed or {}),
        "settings": {
            "budget_tolerance": tolerance,
            "parabola": "loss = c2 (ln N)^2 + c1 ln N + c0",
            "method": METHOD,
            "window_side": WINDOW_SIDE,
            "lack_of_fit_p": LACK_OF_FIT_P,
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
class IsoflopLaw(SizeRuleLaw):
    """Approach 2: N_opt(C) = N0 C^a through the minima of each budget's parabola."""

    name = "isoflop"
    title = "IsoFLOP parabolas (Approach 2): N_opt = N0·C^a, D_opt = D0·C^b"
    label = "Approach 2"
    compute_rank = 1

    def summary(self, fitted) -> str:
        diagnostics = fitted.diagnostics
        text = f"{diagnostics['used_budgets']} of {diagnostics['budgets']} budgets have a minimum inside their sizes"
        reasons: dict[str, int] = {}
        for budget in diagnostics.get("excluded_budgets", []):
            reason = budget["reason"].split(":")[0]
            reasons[reason] = reasons.get(reason, 0) + 1
        excluded = "; ".join(f"{count} with {reason}" for reason, count in reasons.items())
        return text + (f"; left out (see fit.json): {excluded}" if excluded else "")

    def fit(self, points, options, where: str) -> dict:
        return fit_isoflop(points, where=where, tolerance=options.budget_tolerance, fixed=self.held(options))

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
            fixed=fitted.get("fixed"),
        )
