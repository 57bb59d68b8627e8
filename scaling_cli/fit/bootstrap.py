"""Bootstrap over runs: refit every law on resamples drawn with replacement, seeded; percentile intervals.

Approach 3 refits all resamples in one batch (each resample is a vector of point multiplicities) from the
full-data optimum and its nearest grid starts instead of the whole grid: a resample moves the optimum
a little, so a start at the old optimum lies in the basin of the new one. Other laws are cheap and refit
one resample at a time. Approach 2 resamples points within each budget, so every budget keeps its size.
Allocations of the samples use the document's compute convention (allocation.py).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from scaling_cli.errors import FitError
from scaling_cli.fit import chinchilla, constrained, envelope, isoflop, kaplan, kaplan_terms, linear
from scaling_cli.fit.allocation import chinchilla_allocation
from scaling_cli.fit.laws import chinchilla_derived, chinchilla_loss, kaplan_term, power_law

LEVEL = 0.95
NEIGHBOURS = 2  # grid starts nearest the full-data optimum that each resample also starts from
SEARCHED = 4  # each resample's own best-scoring grid starts and full-data local optima


def resample_indices(n: int, b: int, seed: int) -> np.ndarray:
    """(b, n) indices drawn with replacement."""
    return np.random.default_rng(seed).integers(0, n, size=(b, n))


def multiplicities(indices: np.ndarray, n: int) -> np.ndarray:
    """(b, n) counts of each point in each resample."""
    counts = np.zeros((len(indices), n))
    np.add.at(counts, (np.arange(len(indices))[:, None], indices), 1.0)
    return counts


def interval(samples, level: float = LEVEL, point: float | None = None) -> list[float] | None:
    """Percentile interval of the finite samples; None when there are none. Given the `point` estimate, the
    interval is widened to contain it: where the resamples all fall to one side of the estimate (a
    parameter at a bound), the estimate is still a value the data allow."""
    values = np.asarray(samples, dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None
    tail = 50.0 * (1.0 - level)
    low, high = float(np.percentile(values, tail)), float(np.percentile(values, 100.0 - tail))
    if point is not None and np.isfinite(point):
        low, high = min(low, float(point)), max(high, float(point))
    return [low, high]


def nearest_grid_starts(x: np.ndarray, grid: dict, count: int = NEIGHBOURS) -> np.ndarray:
    """The `count` grid starts closest to x, distances measured in grid steps of each axis."""
    starts = chinchilla.grid_starts(grid)
    distance = (((starts - x) / chinchilla.grid_steps(grid)) ** 2).sum(axis=1)
    return starts[np.argsort(distance)[:count]]


def resample_starts(points, fitted: dict, weights: np.ndarray, *, delta: float, grid: dict) -> np.ndarray:
    """(B, 1 + NEIGHBOURS + SEARCHED, 5) starts: the full-data optimum and its nearest grid starts for
    every resample, then each resample's own SEARCHED best candidates, scored by that resample's objective.

    Candidates are every grid start and the distinct local optima the full-data grid search ended in, so a
    resample whose best basin is another one than the full data's starts there too.
    """
    best = np.asarray(fitted["vector"], dtype=float)
    shared = np.vstack([best, nearest_grid_starts(best, grid)])
    optima = np.asarray((fitted.get("diagnostics") or {}).get("local_optima") or np.empty((0, 5)), dtype=float)
    candidates = np.vstack([optima.reshape(-1, 5), chinchilla.grid_starts(grid)])
    objective = chinchilla.HuberLogObjective(points["N"], points["D"], points["loss"], delta)
    with np.errstate(all="ignore"):
        scores = np.nan_to_num(objective.pointwise(candidates) @ weights.T, nan=np.inf)  # (candidates, B)
    picked = np.argsort(scores, axis=0)[:SEARCHED].T  # (B, SEARCHED)
    return np.concatenate([np.broadcast_to(shared, (len(weights), *shared.shape)), candidates[picked]], axis=1)


def stratified_indices(labels, b: int, seed: int) -> np.ndarray:
    """(b, n) indices drawn with replacement within each label's rows: every stratum keeps its count."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    indices = np.empty((b, len(labels)), dtype=int)
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        indices[:, rows] = rows[rng.integers(0, len(rows), size=(b, len(rows)))]
    return indices


def bootstrap_chinchilla(
    points: pd.DataFrame,
    fitted: dict,
    indices: np.ndarray,
    *,
    delta: float,
    grid: dict,
    at_compute: float,
    convention: dict | None = None,
) -> dict:
    """Intervals of E, A, B, alpha, beta, a, b, G and of N_opt, D_opt, loss at `at_compute` (C = 6 N D unless
    another compute `convention` is given)."""
    convention = convention or {"kind": "6ND"}
    weights = multiplicities(indices, len(points))
    starts = resample_starts(points, fitted, weights, delta=delta, grid=grid)
    fixed = fitted.get("fixed") or {}
    vectors = chinchilla.refit_resamples(points["N"], points["D"], points["loss"], weights, starts, delta, fixed=fixed)
    with np.errstate(over="ignore"):
        finite = np.all(np.isfinite(vectors), axis=1) & np.all(np.isfinite(np.exp(vectors[:, :3])), axis=1)
    samples = [chinchilla.to_params(v) for v in vectors[finite]]
    columns = {name: [s[name] for s in samples] for name in ("E", "A", "B", "alpha", "beta")}
    stacked = {name: np.asarray(values, dtype=float) for name, values in columns.items()}
    columns.update(chinchilla_derived(stacked) if samples else {"a": [], "b": [], "G": []})
    if fitted.get("status", "ok") == "ok" and samples:
        n_opt, d_opt = chinchilla_allocation(stacked, convention, at_compute)
        columns.update(N_opt=n_opt, D_opt=d_opt, loss_opt=chinchilla_loss(stacked, n_opt, d_opt))
    return {
        "intervals": {name: None if name in fixed else interval(values) for name, values in columns.items()},
        "bootstrap": _summary(
            indices, vectors, finite, [[s[k] for k in ("E", "A", "B", "alpha", "beta")] for s in samples]
        ),
    }


def _summary(indices, vectors, finite, samples) -> dict:
    return {"resamples": len(indices), "failed": int((~finite).sum()), "samples": samples}


def _allocation_columns(samples: np.ndarray, at_compute: float) -> dict:
    a, n0, b, d0 = samples.T
    return {
        "a": a,
        "N0": n0,
        "b": b,
        "D0": d0,
        "N_opt": power_law(at_compute, n0, a) if len(samples) else [],
        "D_opt": power_law(at_compute, d0, b) if len(samples) else [],
    }


def _refit_each(indices, refit) -> tuple[np.ndarray, np.ndarray]:
    """Apply refit(rows) -> vector to every resample; NaN rows where a resample cannot be fitted."""
    rows = []
    for picked in indices:
        try:
            rows.append(refit(picked))
        except (FitError, np.linalg.LinAlgError, ValueError):
            rows.append(None)
    width = max((len(r) for r in rows if r is not None), default=1)
    vectors = np.array([r if r is not None else [np.nan] * width for r in rows], dtype=float)
    return vectors, np.all(np.isfinite(vectors), axis=1)


def bootstrap_envelope(points, indices, *, at_compute: float, where: str, fixed: dict | None = None) -> dict:
    """Approach 1 refitted on resampled runs, the `fixed` parameters held."""
    keys = ("a", "N0", "b", "D0")
    vectors, finite = _refit_each(
        indices,
        lambda rows: _vector(
            envelope.fit_frontier(envelope.final_point_frontier(points.iloc[rows]), where, fixed), keys
        ),
    )
    return _allocation_result(indices, vectors, finite, at_compute, fixed)


def bootstrap_isoflop(
    points, b: int, seed: int, *, tolerance: float, at_compute: float, where: str, fixed: dict | None = None
) -> dict:
    """Approach 2 refitted with points resampled within their budget (multiplicities as parabola weights)."""
    indices = stratified_indices(isoflop.budget_labels(points["C"], tolerance), b, seed)
    weights = multiplicities(indices, len(points))
    keys = ("a", "N0", "b", "D0")
    vectors, finite = _refit_each(
        range(len(weights)),
        lambda i: _vector(
            isoflop.allocation_from_budgets(
                isoflop.fit_budgets(points, tolerance, weights[i], with_points=False), where, fixed
            ),
            keys,
        ),
    )
    return _allocation_result(indices, vectors, finite, at_compute, fixed)


def _allocation_result(indices, vectors, finite, at_compute, fixed: dict | None = None) -> dict:
    columns = _allocation_columns(vectors[finite], at_compute)
    return {
        "intervals": {name: None if name in (fixed or {}) else interval(values) for name, values in columns.items()},
        "bootstrap": _summary(indices, vectors, finite, vectors[finite].tolist()),
    }


def _vector(params: dict, keys) -> list[float]:
    return [params[k] for k in keys]


def bootstrap_kaplan(points, fitted: dict, indices, *, at_compute: float, where: str) -> dict:
    """Every Kaplan law refitted on resampled runs, in the full fit's conventions and with its held parameters:
    each resample's rows for L(N), L(D) and L(C) are chosen as the full fit chose them, then all resamples of a
    law are fitted together from their own starts and the full fit's optimum (kaplan_terms.fit_terms).
    L(C) also at `at_compute`. Each interval contains its point estimate; a held parameter has none."""
    converted = "Kaplan" in fitted["settings"]["conventions"]["C"]
    base = (kaplan.kaplan_points(points)[0] if converted else points).reset_index(drop=True)
    masks = kaplan.subset_masks(base, indices)
    fixed = fitted.get("fixed") or {}
    columns = []
    for name, (variable, _, _) in kaplan.VARIABLES.items():
        with_e = bool(fitted[name]["irreducible"])
        log_x = np.log(base[variable].to_numpy(dtype=float))
        theta, cost = kaplan_terms.fit_terms(
            log_x,
            base["loss"],
            masks[name],
            irreducible=with_e,
            starts=[fitted[name]["vector"]],
            held=kaplan.part_held(name, fixed),
        )
        enough = _distinct_per_mask(log_x, masks[name]) >= (4 if with_e else 3)
        theta[~(enough & np.isfinite(cost))] = np.nan
        k, alpha, e = theta.T
        with np.errstate(all="ignore"):
            columns += [np.where(alpha > 0, np.exp(k / alpha), np.inf), alpha, e]  # X_c, alpha_X, E as stored
    vectors = np.column_stack(columns)
    finite = np.all(np.isfinite(vectors), axis=1)
    intervals, position = {}, 0
    for name in kaplan.VARIABLES:
        params = fitted[name]["params"]
        held = {kaplan.VARIABLES[name][1] if k == "log_scale" else k for k in kaplan.part_held(name, fixed)}
        held = {kaplan.VARIABLES[name][2] if k == "alpha" else k for k in held}
        intervals[name] = {
            key: None if key in held else interval(vectors[finite, position + i], point=params[key])
            for i, key in enumerate(params)
        }
        position += len(params)
    critical, exponent, irreducible = vectors[finite, -3:].T  # L_C's C_c, alpha_C, E
    c_law = fitted["L_C"]["params"]
    point = kaplan_term(at_compute, c_law["C_c"], c_law["alpha_C"], c_law["E"])
    intervals["loss_at_C"] = interval(kaplan_term(at_compute, critical, exponent, irreducible), point=point)
    return {"intervals": intervals, "bootstrap": _summary(indices, vectors, finite, vectors[finite].tolist())}


def _distinct_per_mask(log_x: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """How many distinct x values each mask's rows have."""
    _, code = np.unique(np.round(log_x, 12), return_inverse=True)
    one_hot = np.zeros((len(log_x), code.max() + 1))
    one_hot[np.arange(len(log_x)), code] = 1.0
    return ((masks.astype(float) @ one_hot) > 0).sum(axis=1)


def bootstrap_linear(points, indices, *, where: str, fixed: dict | None = None) -> dict:
    """The linear baseline refitted on resampled points, the `fixed` weights held."""
    vectors, finite = _refit_each(
        indices, lambda rows: list(linear.fit_linear(points.iloc[rows], where=where, fixed=fixed)["params"].values())
    )
    held = fixed or {}
    intervals = {name: None if name in held else interval(vectors[finite, i]) for i, name in enumerate(linear.NAMES)}
    return {"intervals": intervals, "bootstrap": _summary(indices, vectors, finite, vectors[finite].tolist())}


def bootstrap_constrained(
    points: pd.DataFrame, fitted: dict, indices: np.ndarray, *, delta: float, fixed: dict | None = None
) -> dict:
    """Intervals of the data-constrained law's parameters, refitted from its optimum and a few nearby starts
    with the `fixed` parameters held: those have no interval (null), their samples repeat the held value."""
    best = np.array(fitted["vector"])
    steps = np.array([0.5, 2.0, 2.0, 0.1, 0.1, 0.7, 0.7])  # a few nearby starts, as for Approach 3
    starts = np.vstack([best, best + steps * np.array([[1, 0, 0, 0, 0, 1, 1], [-1, 0, 0, 0, 0, -1, -1]])])
    weights = multiplicities(indices, len(points))
    n, d, u, loss = (points[k] for k in ("N", "D", "U", "loss"))
    vectors = constrained.refit_resamples(n, d, u, loss, weights, starts, delta, fixed=fixed)
    finite = np.all(np.isfinite(vectors), axis=1)
    samples = [constrained.to_params(v) for v in vectors[finite]]
    keys = constrained.NAMES
    held = set(fixed or ())
    return {
        "intervals": {key: None if key in held else interval([s[key] for s in samples]) for key in keys},
        "bootstrap": _summary(indices, vectors, finite, [[s[k] for k in keys] for s in samples]),
    }
