"""Does the suggested design help? Simulate the loop fit -> suggest -> "train" -> refit on known laws.

Each simulated law is drawn near the published Chinchilla fits (Hoffmann et al. 2022; Besiroglu et al.
2024). A first sweep is a small grid (4 sizes x 5 token budgets) whose losses are the law's times
exp(noise), noise ~ N(0, sigma). With extra compute equal to a fraction of that sweep's, each strategy picks
new runs, they are "trained" by sampling the law the same way, and Approach 3 is refitted on everything.
The score of a strategy is the 95% interval of ln N_opt at a target 100x beyond the largest run, as `scale
fit` reports it (bootstrap over runs of the refit, fit.bootstrap.bootstrap_chinchilla), and its actual error
against the true law. A run's noise depends only on (law, N, D), so two strategies that pick the same run see
the same measurement.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from scaling_cli.errors import FitError
from scaling_cli.fit import bootstrap, chinchilla
from scaling_cli.fit.design import (
    additive_cost,
    bootstrap_vectors,
    greedy_design,
    identification_problem,
    linearisations,
    low_edge_misfit,
    residual_sigma,
    target_values,
)
from scaling_cli.fit.laws import chinchilla_optimum

STRATEGIES = ("design", "extend_budget", "grid_extension", "compute_optimal")
NAIVE = ("extend_budget", "grid_extension", "compute_optimal")


@dataclass(frozen=True)
class SimulationOptions:
    laws: int = 20
    seed: int = 0
    noise: float = 0.01  # standard deviation of ln loss: 1% of the loss
    sizes: tuple[float, ...] = (1e7, 2e7, 4e7, 8e7)
    budgets: tuple[float, ...] = (1e8, 2e8, 4e8, 8e8, 1.6e9)
    extra_compute: float = 0.5  # of the first sweep's compute
    target_factor: float = 100.0  # target compute / largest run's compute
    extension: float = 4.0  # candidates reach this factor beyond the largest N and D
    below: float = 1.0  # and this factor below the smallest, when the low edges fit the law (`scale suggest --below`)
    resamples: int = 100  # bootstrap resamples for the interval
    scenarios: int = 30  # bootstrap refits of the first sweep that the design averages over
    reweightings: int = 16  # bootstrap reweightings of the runs per linearisation (fit/design.py)
    weights: tuple[float, ...] = (1.0, 0.0)  # of ln N_opt and ln loss in the design's criterion
    strategies: tuple[str, ...] = STRATEGIES  # "design" and any of NAIVE
    grid: dict = field(default_factory=lambda: dict(chinchilla.CHINCHILLA_GRID))


def draw_laws(count: int, seed: int) -> list[dict]:
    """Laws around Chinchilla's (E 1.69, A 406, B 411, 0.34, 0.28) and Epoch's (1.82, 482, 2085, 0.35, 0.37)."""
    rng = np.random.default_rng(seed)
    return [
        {
            "E": float(rng.uniform(1.6, 1.95)),
            "A": float(np.exp(rng.uniform(np.log(300), np.log(700)))),
            "B": float(np.exp(rng.uniform(np.log(350), np.log(2500)))),
            "alpha": float(rng.uniform(0.28, 0.40)),
            "beta": float(rng.uniform(0.26, 0.40)),
        }
        for _ in range(count)
    ]


def measure(law: dict, law_index: int, n, d, noise: float, seed: int) -> np.ndarray:
    """Losses of runs at (n, d): the law times exp(noise), the noise a function of (seed, law, N, D) only."""
    out = []
    for ni, di in zip(np.atleast_1d(n), np.atleast_1d(d)):
        key = zlib.crc32(f"{seed}:{law_index}:{float(ni):.6e}:{float(di):.6e}".encode())
        draw = np.random.default_rng(key).normal(0.0, noise)
        truth = law["E"] + law["A"] / ni ** law["alpha"] + law["B"] / di ** law["beta"]
        out.append(truth * np.exp(draw))
    return np.array(out)


def vector_of(law: dict) -> np.ndarray:
    return np.array([np.log(law["E"]), np.log(law["A"]), np.log(law["B"]), law["alpha"], law["beta"]])


def log_grid(low: float, high: float, step: float = np.sqrt(2.0)) -> np.ndarray:
    count = int(np.floor(np.log(high / low) / np.log(step) + 1e-9)) + 1
    return low * step ** np.arange(count)


def candidate_grid(options: SimulationOptions) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sizes and budgets on sqrt(2)-spaced log grids from the smallest (/ `below`) to `extension` x the largest, and
    which (size, budget) pairs the first sweep already ran (len(sizes), len(budgets))."""
    sizes = log_grid(min(options.sizes) / options.below, options.extension * max(options.sizes))
    budgets = log_grid(min(options.budgets) / options.below, options.extension * max(options.budgets))
    known_n = np.isclose(np.log(sizes)[:, None], np.log(options.sizes)[None, :]).any(axis=1)
    known_d = np.isclose(np.log(budgets)[:, None], np.log(options.budgets)[None, :]).any(axis=1)
    return sizes, budgets, known_n[:, None] & known_d[None, :]


def first_sweep(options: SimulationOptions) -> tuple[np.ndarray, np.ndarray]:
    n, d = np.meshgrid(options.sizes, options.budgets, indexing="ij")
    return n.ravel(), d.ravel()


# ---- the strategies: each returns the (N, D) of its new runs ----


def take_in_order(n, d, budget: float) -> tuple[np.ndarray, np.ndarray]:
    """The runs in the given order, skipping any that no longer fit the budget."""
    keep, spent = [], 0.0
    for i, cost in enumerate(6.0 * np.asarray(n) * np.asarray(d)):
        if spent + cost <= budget:
            keep.append(i)
            spent += cost
    return np.asarray(n)[keep], np.asarray(d)[keep]


def extend_budget(options: SimulationOptions, x: np.ndarray, budget: float):
    """Naive (a): train every size of the sweep to the next larger token budgets (2x, 4x), smallest first."""
    sizes = sorted(options.sizes)
    d_max = max(options.budgets)
    n = [s for factor in (2, 4) for s in sizes]
    d = [factor * d_max for factor in (2, 4) for _ in sizes]
    return take_in_order(n, d, budget)


def grid_extension(options: SimulationOptions, x: np.ndarray, budget: float):
    """Naive (b): extend the grid by one size (2x the largest) at every budget and one budget (2x the
    largest) at every size, cheapest runs first."""
    sizes, budgets = list(options.sizes), list(options.budgets)
    new_size, new_budget = 2 * max(sizes), 2 * max(budgets)
    pairs = [(new_size, b) for b in budgets] + [(s, new_budget) for s in sizes + [new_size]]
    pairs.sort(key=lambda p: p[0] * p[1])
    return take_in_order([p[0] for p in pairs], [p[1] for p in pairs], budget)


def compute_optimal(options: SimulationOptions, x: np.ndarray, budget: float):
    """Naive (c), what the `chinchilla` package's step does: one run at the whole budget, allocated by the
    current fit."""
    n_opt, d_opt = chinchilla_optimum(chinchilla.to_params(x), budget)
    return np.array([float(n_opt)]), np.array([float(d_opt)])


def suggested(options: SimulationOptions, x: np.ndarray, budget: float, n0, d0, loss0, target: float):
    """The design `scale suggest` proposes (scaling_cli.fit.design): any runs of the candidate grid not run yet,
    as its next spec can list them."""
    sigma = residual_sigma(x, n0, d0, loss0)
    sizes, budgets, known = candidate_grid(options)
    n, d = (a.ravel() for a in np.meshgrid(sizes, budgets, indexing="ij"))
    fresh = np.flatnonzero(~known.ravel())
    vectors = [x, *bootstrap_vectors(n0, d0, loss0, x, options.scenarios, options.seed, options.grid)]
    design = greedy_design(
        linearisations(vectors, n0, d0, n, d, sigma, target, reweightings=options.reweightings, seed=options.seed),
        sigma,
        budget,
        additive_cost(6.0 * n * d),
        moves=lambda chosen: [(int(c),) for c in fresh if c not in chosen],
        weights=options.weights,
    )
    rows = design.rows
    return n[rows], d[rows]


# ---- scoring ----


def interval_width(n, d, loss, fitted: dict, target: float, options: SimulationOptions, seed: int) -> float:
    """Width ln hi - ln lo of the 95% interval of N_opt(target) that `scale fit` reports for these runs: the
    percentile interval of the bootstrap refits of resampled runs (bootstrap.bootstrap_chinchilla)."""
    points = pd.DataFrame({"N": n, "D": d, "loss": loss})
    indices = bootstrap.resample_indices(len(loss), options.resamples, seed)
    result = bootstrap.bootstrap_chinchilla(points, fitted, indices, delta=1e-3, grid=options.grid, at_compute=target)
    low, high = result["intervals"].get("N_opt") or (np.nan, np.nan)
    return float(np.log(high) - np.log(low)) if low > 0 else np.inf


def simulate_law(law: dict, index: int, options: SimulationOptions) -> dict:
    """One law through the loop; per strategy its extra compute, interval width and error of ln N_opt."""
    n0, d0 = first_sweep(options)
    loss0 = measure(law, index, n0, d0, options.noise, options.seed)
    first_compute = float(np.sum(6.0 * n0 * d0))
    target = options.target_factor * float(np.max(6.0 * n0 * d0))
    budget = options.extra_compute * first_compute
    truth = float(target_values(vector_of(law), target)[0])
    fit0 = chinchilla.fit_chinchilla(n0, d0, loss0, grid=options.grid)
    x0 = np.array(fit0["vector"])
    result = {"law": law, "target": target, "budget": budget, "strategies": {}}
    problem = identification_problem(x0, n0, d0)
    if problem:
        result["skipped"] = problem
        return result
    result["before"] = _score(n0, d0, loss0, target, truth, options, index)
    # as `scale suggest` does: no candidates below the first sweep when its low edges leave the fitted law
    result["below_refused"] = low_edge_misfit(n0, d0, loss0, residual_sigma(x0, n0, d0, loss0), options.grid)
    design_options = replace(options, below=1.0) if result["below_refused"] else options
    for name in options.strategies:
        if name == "design":
            n1, d1 = suggested(design_options, x0, budget, n0, d0, loss0, target)
        else:
            n1, d1 = globals()[name](options, x0, budget)
        loss1 = measure(law, index, n1, d1, options.noise, options.seed)
        score = _score(np.r_[n0, n1], np.r_[d0, d1], np.r_[loss0, loss1], target, truth, options, index)
        score["runs"] = len(n1)
        score["extra_compute"] = float(np.sum(6.0 * n1 * d1))
        result["strategies"][name] = score
    return result


def _score(n, d, loss, target, truth, options, index) -> dict:
    try:
        fitted = chinchilla.fit_chinchilla(n, d, loss, grid=options.grid)
    except FitError as exc:
        return {"width": np.nan, "error": np.nan, "failed": exc.problem}
    estimate = float(target_values(np.array(fitted["vector"]), target)[0])
    width = interval_width(n, d, loss, fitted, target, options, options.seed + index)
    return {"width": width, "error": abs(estimate - truth)}


def summarize(results: list[dict]) -> dict:
    """Per strategy the mean interval width and error over the laws, and the ratio best naive / design."""
    used = [r for r in results if "skipped" not in r]
    names = list(used[0]["strategies"]) if used else []
    widths = {s: np.array([r["strategies"][s]["width"] for r in used]) for s in names}
    errors = {s: np.array([r["strategies"][s]["error"] for r in used]) for s in names}
    mean_width = {s: float(np.nanmean(w)) for s, w in widths.items()}
    best_naive = min((s for s in names if s in NAIVE), key=lambda s: mean_width[s])
    per_law = widths[best_naive] / widths["design"]
    return {
        "laws": len(results),
        "laws_used": len(used),
        "mean_width": mean_width,
        "mean_width_before": float(np.nanmean([r["before"]["width"] for r in used])),
        "rms_error": {s: float(np.sqrt(np.nanmean(e**2))) for s, e in errors.items()},
        "mean_compute": {s: float(np.mean([r["strategies"][s]["extra_compute"] for r in used])) for s in names},
        "mean_budget": float(np.mean([r["budget"] for r in used])),
        "best_naive": best_naive,
        "ratio": mean_width[best_naive] / mean_width["design"],
        "ratio_median_per_law": float(np.nanmedian(per_law)),
        "ratio_per_law": [float(r) for r in per_law],
        "design_narrower_in": int(np.sum(per_law > 1.0)),
        "below_refused_in": int(sum(bool(r.get("below_refused")) for r in used)),
    }


def simulate(options: SimulationOptions | None = None, on_law=None) -> dict:
    """Run every law through the loop and summarise; on_law(index, result) is called after each law."""
    options = options or SimulationOptions()
    results = []
    for i, law in enumerate(draw_laws(options.laws, options.seed)):
        results.append(simulate_law(law, i, options))
        if on_law is not None:
            on_law(i, results[-1])
    return {"summary": summarize(results), "results": results}
