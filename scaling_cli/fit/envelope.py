"""Approach 1 of Chinchilla: the lowest loss reached at each compute value and the run that reaches it.

With training curves, every run's loss is interpolated (linearly in log C) at log-spaced FLOP values and
the lowest run wins each value. Without curves, the frontier is the runs whose final loss beats every
run with less compute. Power laws N_opt = N0 C^a and D_opt = D0 C^b are fitted through the frontier.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from scaling_cli.errors import FitError
from scaling_cli.fit.powerlaw import allocation_params

FLOP_VALUES = 200  # Chinchilla used 1,500; 200 keeps fit.json small and moves a, b by far less than their intervals
MIN_FRONTIER = 3


def flop_grid(c_min: float, c_max: float, count: int) -> np.ndarray:
    """`count` log-spaced FLOP values from c_min to c_max inclusive."""
    return np.exp(np.linspace(np.log(c_min), np.log(c_max), count))


class CurveMatrix:
    """Every run's loss interpolated at shared FLOP values: rows are runs, columns FLOP values (NaN outside a run)."""

    def __init__(self, curves: pd.DataFrame, count: int = FLOP_VALUES):
        self.runs = []
        ordered = curves.sort_values(["run_id", "C"])
        self.flops = flop_grid(ordered["C"].min(), ordered["C"].max(), count)
        log_grid = np.log(self.flops)
        rows, sizes, tokens_per_flop = [], [], []
        for run_id, run in ordered.groupby("run_id", sort=True):
            log_c = np.log(run["C"].to_numpy(dtype=float))
            rows.append(np.interp(log_grid, log_c, run["loss"].to_numpy(dtype=float), left=np.nan, right=np.nan))
            self.runs.append(run_id)
            sizes.append(float(run["N"].iloc[0]))
            tokens_per_flop.append(float((run["D"] / run["C"]).median()))
        self.loss = np.array(rows)
        self.sizes = np.array(sizes)
        self.tokens_per_flop = np.array(tokens_per_flop)

    def frontier(self, rows: np.ndarray | None = None) -> pd.DataFrame:
        """The lowest loss at each FLOP value among `rows` (default all runs) and the run reaching it."""
        rows = np.arange(len(self.runs)) if rows is None else np.unique(rows)
        loss = self.loss[rows]
        reached = np.isfinite(loss).any(axis=0)
        winner = rows[np.nanargmin(np.where(np.isfinite(loss), loss, np.inf)[:, reached], axis=0)]
        flops = self.flops[reached]
        return pd.DataFrame(
            {
                "C": flops,
                "N": self.sizes[winner],
                "D": flops * self.tokens_per_flop[winner],
                "loss": self.loss[winner, np.flatnonzero(reached)],
                "run_id": [self.runs[i] for i in winner],
            }
        )


def final_point_frontier(points: pd.DataFrame) -> pd.DataFrame:
    """Runs whose final loss is lower than that of every run with less compute."""
    ordered = points.sort_values(["C", "loss"])
    best_before = ordered["loss"].cummin().shift(fill_value=np.inf)
    return ordered[ordered["loss"] < best_before][["C", "N", "D", "loss", "run_id"]].reset_index(drop=True)


def fit_frontier(frontier: pd.DataFrame, where: str) -> dict[str, float]:
    """Power laws through a frontier; FitError when it has too few points or a single size."""
    if len(frontier) < MIN_FRONTIER:
        raise FitError(where, "envelope", f"needs at least {MIN_FRONTIER} frontier points, got {len(frontier)}")
    sizes = frontier["N"].nunique()
    if sizes < 2:
        raise FitError(where, "envelope", f"needs at least 2 distinct model sizes on the frontier, got {sizes}")
    return allocation_params(frontier["C"], frontier["N"], frontier["D"], where=where, law="envelope")


def fit_envelope(points: pd.DataFrame, curves: pd.DataFrame | None, *, where: str, count: int = FLOP_VALUES) -> dict:
    """Approach 1 on curves when given (else final points): frontier, power laws and settings."""
    with_curves = curves is not None and len(curves) > 0
    if with_curves:
        frontier = CurveMatrix(curves, count).frontier()
        source = f"training curves interpolated at {count} log-spaced FLOP values"
    else:
        frontier = final_point_frontier(points)
        source = "final points (no curves): runs beating every run with less compute"
    params = fit_frontier(frontier, where)
    return {
        "frontier": frontier.to_dict(orient="records"),
        "params": params,
        "settings": {"source": source, "flop_values": count if with_curves else None},
        "diagnostics": {"frontier_points": len(frontier), "frontier_sizes": int(frontier["N"].nunique())},
    }
