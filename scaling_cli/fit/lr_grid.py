"""The learning rate chosen per model size, and whether it sits at the edge of the grid tried.

Runs that tried several learning rates are reduced to the best seed-mean loss per (N, D) by `table`; this
module says, per size, which lr won where the size ran its fullest grid, and warns when that lr is the
smallest or largest tried: the optimum may lie outside the grid.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# Axes tuned per (N, D): the best seed-mean loss is kept. Shape columns vary only where two shapes share an N.
SELECT_AXES = ("lr", "n_layer", "d_model", "n_head")


def cell_keys(frame: pd.DataFrame) -> list[str]:
    """What makes two runs the same experiment point: group, N, D (and U, the unique tokens, when known)."""
    return ["group", "N", "D", "U"] if "U" in frame.columns else ["group", "N", "D"]


def lr_by_size(frame: pd.DataFrame, diverged: pd.DataFrame | None = None) -> dict[str, dict]:
    """{group: the learning rate chosen per model size}, for the groups whose runs tried more than one lr.

    A size's lr is chosen where it ran its fullest lr grid: among its (N, D[, U]) cells with the most
    distinct lrs, the largest budget (the run closest to what the fit extrapolates to). There the best
    seed-mean loss wins (the best over any selected shape at equal lr). `edge` is "low" or "high" when that lr
    is the smallest or largest of two or more tried, and each edge gives a warning: the optimum may lie outside.
    `diverged` runs (infinite loss, null in fit.json) of the sizes used count as tried: an lr that diverged
    bounds the grid, so the best lr below it is not at an open edge.
    """
    if "lr" not in frame.columns:
        return {}
    if diverged is not None and not diverged.empty:
        used = frame[["group", "N"]].drop_duplicates()
        frame = pd.concat([frame, diverged.merge(used, on=["group", "N"])], ignore_index=True)
    rows = frame.assign(lr=pd.to_numeric(frame["lr"], errors="coerce")).dropna(subset=["lr"])
    keys = cell_keys(rows)
    summaries = {}
    for group, runs in rows.groupby("group", sort=True):
        if runs["lr"].nunique() < 2:
            continue
        shapes = [axis for axis in SELECT_AXES if axis != "lr" and axis in runs.columns]
        seed_means = runs.groupby(keys + ["lr", *shapes], sort=True, dropna=False)["loss"].mean()
        per_lr = seed_means.groupby(level=keys + ["lr"], sort=True).min().reset_index()
        sizes = [_size_choice(cells) for _, cells in per_lr.groupby("N", sort=True)]
        summaries[str(group)] = {
            "chosen_at": "largest budget among a size's runs with the most lrs tried; best seed-mean loss",
            "sizes": sizes,
            "warnings": [_edge_warning(size) for size in sizes if size["edge"]],
        }
    return summaries


def _size_choice(cells: pd.DataFrame) -> dict:
    """The lr chosen for one size from its per-(cell, lr) losses (see lr_by_size)."""
    cell_columns = [column for column in ("D", "U") if column in cells.columns]
    cells = cells[cells.groupby(cell_columns)["loss"].transform("min") < np.inf]  # not every lr diverged
    tried_per_cell = cells.groupby(cell_columns)["lr"].nunique()
    fullest = tried_per_cell[tried_per_cell == tried_per_cell.max()].index.max()
    fullest = fullest if isinstance(fullest, tuple) else (fullest,)
    at = cells[np.logical_and.reduce([cells[c] == v for c, v in zip(cell_columns, fullest)])]
    at = at.sort_values("lr")
    tried = [float(lr) for lr in at["lr"]]
    best = float(at.loc[at["loss"].idxmin(), "lr"])
    edge = None
    if len(tried) >= 2 and best == tried[0]:
        edge = "low"
    elif len(tried) >= 2 and best == tried[-1]:
        edge = "high"
    choice = {"N": float(cells["N"].iloc[0]), **{c: float(v) for c, v in zip(cell_columns, fullest)}}
    choice.update({"lr": best, "tried": tried, "losses": [float(v) for v in at["loss"]], "edge": edge})
    return choice


def _edge_warning(size: dict) -> str:
    extreme, direction = ("smallest", "downward") if size["edge"] == "low" else ("largest", "upward")
    tried = ", ".join(f"{lr:g}" for lr in size["tried"])
    return f"N={size['N']:.3g}: best lr {size['lr']:g} is the {extreme} tried ({tried}); extend the lr grid {direction}"
