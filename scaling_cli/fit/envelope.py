"""Approach 1 of Chinchilla: the lowest loss reached at each compute, and the run that reaches it.

Only finished points are eligible: each run's final point (a WSD cooldown branch's endpoint, a trunk's
own cooled-down end, a cosine run's last step), never mid-trunk evaluations, which sit at the peak learning
rate and are not comparable with cooled-down losses (Hägele et al. 2024; Porian et al. 2024). The frontier
is the runs whose final loss beats every run with less compute; power laws N_opt = N0 C^a and
D_opt = D0 C^b are fitted through it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from scaling_cli.errors import FitError
from scaling_cli.fit.powerlaw import allocation_params
from scaling_cli.fit.law import SizeRuleLaw, register

MIN_FRONTIER = 3
ELIGIBLE = "finished runs only: each run's final point (WSD cooldown-branch and trunk endpoints, cosine final points)"


def final_point_frontier(points: pd.DataFrame) -> pd.DataFrame:
    """Runs whose final loss is lower than that of every run with less compute."""
    ordered = points.sort_values(["C", "loss"])
    best_before = ordered["loss"].cummin().shift(fill_value=np.inf)
    return ordered[ordered["loss"] < best_before][["C", "N", "D", "loss", "run_id"]].reset_index(drop=True)


def fit_frontier(frontier: pd.DataFrame, where: str, fixed: dict | None = None) -> dict[str, float]:
    """Power laws through a frontier; FitError when it has too few points or a single size."""
    if len(frontier) < MIN_FRONTIER:
        raise FitError(
            where,
            "envelope",
            f"needs at least {MIN_FRONTIER} frontier points (runs beating every cheaper run), got {len(frontier)}: "
            "add larger budgets or larger models",
        )
    sizes = frontier["N"].nunique()
    if sizes < 2:
        raise FitError(
            where, "envelope", f"needs at least 2 distinct model sizes on the frontier, got {sizes}: add a larger model"
        )
    return allocation_params(frontier["C"], frontier["N"], frontier["D"], where=where, law="envelope", fixed=fixed)


def fit_envelope(points: pd.DataFrame, *, where: str, fixed: dict | None = None) -> dict:
    """Approach 1 on the runs' final points: frontier, power laws (holding `fixed` ones) and settings."""
    frontier = final_point_frontier(points)
    params = fit_frontier(frontier, where, fixed)
    return {
        "frontier": frontier.to_dict(orient="records"),
        "params": params,
        "fixed": dict(fixed or {}),
        "settings": {"source": ELIGIBLE, "eligible_points": len(points)},
        "diagnostics": {"frontier_points": len(frontier), "frontier_sizes": int(frontier["N"].nunique())},
    }


@register
class EnvelopeLaw(SizeRuleLaw):
    """Approach 1: N_opt(C) = N0 C^a through the compute-efficient frontier of the runs."""

    name = "envelope"
    title = "Envelope of training curves (Approach 1): N_opt = N0·C^a, D_opt = D0·C^b"
    label = "Approach 1"
    compute_rank = 2

    def summary(self, fitted) -> str:
        return f"{fitted.diagnostics['frontier_points']} frontier points from {fitted.settings['source']}"

    def fit(self, points, options, where: str) -> dict:
        return fit_envelope(points, where=where, fixed=self.held(options))

    def bootstrap(self, points, fitted: dict, indices, context: dict) -> dict:
        from scaling_cli.fit.bootstrap import bootstrap_envelope

        return bootstrap_envelope(
            points, indices, at_compute=context["at_compute"], where=context["where"], fixed=fitted.get("fixed")
        )
