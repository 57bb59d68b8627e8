"""Approach 3 of Chinchilla: fit L(N, D) = E + A/N^alpha + B/D^beta by a summed Huber loss on log loss.

The objective is written in log-sum-exp form, log L = LSE(a - alpha log N, b - beta log D, e) with
E = exp(e), A = exp(a), B = exp(b), as in Hoffmann et al. 2022 and Besiroglu et al. 2024. It is
minimised from every point of a grid of starts at once (see batched.py) and the best point is polished
by scipy's L-BFGS-B with the analytic gradient. Huber losses are summed, never averaged: averaging
shrinks the gradient by the number of points and stops L-BFGS early (the replication's finding).
"""

from __future__ import annotations

import itertools

import numpy as np
from scipy.optimize import minimize

from scaling_cli.errors import FitError
from scaling_cli.fit.batched import BatchResult, Held, minimize_batched
from scaling_cli.fit.laws import chinchilla_loss, log_sum_exp
from scaling_cli.fit.powerlaw import add_more, r2
from scaling_cli.fit.law import Law, register

ORDER = ("e", "a", "b", "alpha", "beta")  # internal parameter vector order
ORDER_NAMES = ("E", "A", "B", "alpha", "beta")  # the published parameters, in ORDER
MIN_POINTS = 6
MIN_DISTINCT = 3
# Enough for a true minimum; where E -> 0 the objective keeps falling along e -> -inf and this stops it.
POLISH_ITERATIONS = 300
LOCAL_OPTIMA = 8  # distinct end points of the grid kept in diagnostics, as bootstrap starts
DISTINCT_STEPS = 0.5  # end points this many grid steps apart (in some axis) count as distinct local optima

# Chinchilla's grid (Hoffmann et al. 2022, Appendix D.2): 5 * 6 * 6 * 5 * 5 = 4,500 starts.
CHINCHILLA_GRID = {
    "e": [-1.0, -0.5, 0.0, 0.5, 1.0],
    "a": [0.0, 5.0, 10.0, 15.0, 20.0, 25.0],
    "b": [0.0, 5.0, 10.0, 15.0, 20.0, 25.0],
    "alpha": [0.0, 0.5, 1.0, 1.5, 2.0],
    "beta": [0.0, 0.5, 1.0, 1.5, 2.0],
}


def grid_starts(grid: dict[str, list[float]] = CHINCHILLA_GRID) -> np.ndarray:
    """Every combination of the grid's axes as rows (e, a, b, alpha, beta)."""
    return np.array(list(itertools.product(*(grid[name] for name in ORDER))), dtype=float)


def huber_log_sum_exp(terms, log_loss, delta: float, weights=None):
    """The fitting objective of every E + A/X^alpha + ... law (Approach 3 and the data-constrained law):
    the Huber loss of ln(sum exp(term)) - ln L, summed over points (rows: parameter vectors), and its
    derivative by each term at each point.

    The log-sum-exp is shifted by the largest term, so no term overflows; `weights` are each row's point
    multiplicities (bootstrap resamples).
    """
    top = np.maximum.reduce(terms)
    shares = [np.exp(term - top) for term in terms]
    total = sum(shares)
    residual = top + np.log(total) - log_loss
    size = np.abs(residual)
    huber = np.where(size <= delta, 0.5 * residual * residual, delta * (size - 0.5 * delta))
    slope = np.clip(residual, -delta, delta)
    if weights is not None:
        huber = huber * weights
        slope = slope * weights
    scale = slope / total  # d huber / d term_i = slope * share_i / total
    return huber.sum(1), [share * scale for share in shares]


class HuberLogObjective:
    """Summed Huber loss of log-space residuals and its gradient, for many parameter vectors at once.

    `weights` (k, n) gives start k's multiplicity of each point (bootstrap resamples); None means 1.
    """

    def __init__(self, n, d, loss, delta: float, weights: np.ndarray | None = None):
        self.log_n = np.log(np.asarray(n, dtype=float))
        self.log_d = np.log(np.asarray(d, dtype=float))
        self.log_loss = np.log(np.asarray(loss, dtype=float))
        self.delta = float(delta)
        self.weights = weights

    def __call__(self, x: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        e, a, b, alpha, beta = (x[:, i : i + 1] for i in range(5))
        term_e = np.broadcast_to(e, (len(x), self.log_n.size))
        weights = None if self.weights is None else self.weights[rows]
        huber, (share_e, share_n, share_d) = huber_log_sum_exp(
            (term_e, a - alpha * self.log_n, b - beta * self.log_d), self.log_loss, self.delta, weights
        )
        grad = np.column_stack(
            [share_e.sum(1), share_n.sum(1), share_d.sum(1), -(share_n @ self.log_n), -(share_d @ self.log_d)]
        )
        return huber, grad

    def scalar(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """One parameter vector, for scipy: (value, gradient)."""
        f, g = self(np.asarray(x, dtype=float)[None, :], np.zeros(1, dtype=int))
        return float(f[0]), g[0]

    def pointwise(self, x: np.ndarray) -> np.ndarray:
        """(k, n) unweighted Huber loss of every point at each of the k vectors; a resample's objective at
        them is this times its multiplicities, so many resamples are scored with one matrix product."""
        e, a, b, alpha, beta = (x[:, i : i + 1] for i in range(5))
        term_e = np.broadcast_to(e, (len(x), self.log_n.size))
        predicted = log_sum_exp(term_e, a - alpha * self.log_n, b - beta * self.log_d)
        size = np.abs(predicted - self.log_loss)
        return np.where(size <= self.delta, 0.5 * size * size, self.delta * (size - 0.5 * self.delta))


def fixed_coordinates(fixed: dict | None, where: str) -> dict[int, float]:
    """{vector index: value} from {E, A, B, alpha, beta: value}; names of other laws' parameters are left to
    them. FitError for a value the law cannot take."""
    coordinates = {}
    for i, name in enumerate(ORDER_NAMES):
        if name not in (fixed or {}):
            continue
        value = float(fixed[name])
        if not np.isfinite(value) or (i < 3 and value <= 0):
            raise FitError(where, f"--fix {name}", f"must be {'positive' if i < 3 else 'finite'}, got {value}")
        coordinates[i] = float(np.log(value)) if i < 3 else value
    return coordinates


def to_params(x: np.ndarray) -> dict[str, float]:
    """The fitted vector (e, a, b, alpha, beta) as the published parameters E, A, B, alpha, beta."""
    e, a, b, alpha, beta = (float(v) for v in x)
    return {"E": float(np.exp(e)), "A": float(np.exp(a)), "B": float(np.exp(b)), "alpha": alpha, "beta": beta}


def check_points(n, d, loss, where: str) -> None:
    """Raise FitError when the table cannot identify the five parameters."""
    if len(loss) < MIN_POINTS:
        raise FitError(
            where,
            "chinchilla",
            f"needs at least {MIN_POINTS} points, got {len(loss)}: {add_more('run', len(loss), MIN_POINTS)}",
        )
    for name, values, what in (("N", n, "model size"), ("D", d, "token budget")):
        distinct = len(np.unique(np.round(np.log(values), 9)))
        if distinct < MIN_DISTINCT:
            fix = add_more(what, distinct, MIN_DISTINCT)
            raise FitError(where, "chinchilla", f"needs at least {MIN_DISTINCT} distinct {name}, got {distinct}: {fix}")


def fit_chinchilla(
    n,
    d,
    loss,
    *,
    delta: float = 1e-3,
    grid=CHINCHILLA_GRID,
    where: str = "fit",
    fixed: dict | None = None,
    screened: int | None = None,
) -> dict:
    """Fit Approach 3 from every start of `grid` (or, with `screened`, from that many of its starts with the
    lowest objective on these points), holding the `fixed` parameters ({E, A, B, alpha, beta: value});
    return params, r2, settings and diagnostics.

    Raises FitError when the table is too small or when no start converges.
    """
    check_points(n, d, loss, where)
    objective = Held(HuberLogObjective(n, d, loss, delta), fixed_coordinates(fixed, where), len(ORDER))
    starts = np.unique(grid_starts(grid)[:, objective.free], axis=0)
    batch = minimize_batched(objective, screen_starts(objective, starts, screened))
    best_x = objective.full(_polish(objective, batch, where))[0]
    batch.x = objective.full(batch.x)
    best_f, best_g = objective.objective.scalar(best_x)
    params = to_params(best_x)
    return {
        "params": params,
        "vector": best_x.tolist(),
        "fixed": {name: float(value) for name, value in (fixed or {}).items()},
        "r2": log_r2(params, n, d, loss),
        "settings": {
            "delta": delta,
            "loss": "Huber on log loss, summed over points",
            "optimizer": "batched BFGS from every grid start, best polished by scipy L-BFGS-B (analytic gradient)",
            "grid": {name: list(grid[name]) for name in ORDER},
            "grid_size": len(starts),
            "starts": len(batch.f),
            "optimum_convention": "N_opt, D_opt minimise L subject to C = 6 N D",
        },
        "diagnostics": {
            "objective": best_f,
            "grad_norm": float(np.abs(best_g).max()),
            "starts_converged": int(batch.converged.sum()),
            "starts_at_optimum": starts_reaching(batch, best_f),
            "grid_edge": on_grid_edge(best_x, grid),
            "local_optima": local_optima(batch, grid),
        },
    }


def screen_starts(objective, starts: np.ndarray, keep: int | None) -> np.ndarray:
    """The `keep` starts with the lowest objective (all of them when keep is None or not smaller).

    Refits inside the backtest and the error model use this: on the Chinchilla runs and four cuts of them,
    the best 128 of the 4,500 grid starts reached the full grid's optimum to 2e-8 of its objective in 1/20
    of the time (docs/benchmarks.md), while a start's objective costs one evaluation to screen."""
    if keep is None or keep >= len(starts):
        return starts
    values, _ = objective(starts, np.arange(len(starts)))
    order = np.argsort(np.where(np.isfinite(values), values, np.inf), kind="stable")
    return starts[order[:keep]]


def _polish(objective: HuberLogObjective, batch: BatchResult, where: str) -> np.ndarray:
    """Refine the best converged start with scipy L-BFGS-B at tight tolerances."""
    usable = batch.converged & np.isfinite(batch.f)
    if not usable.any():
        raise FitError(where, "chinchilla", f"no start of {len(batch.f)} converged")
    start = batch.x[np.flatnonzero(usable)[np.argmin(batch.f[usable])]]
    result = minimize(
        objective.scalar,
        start,
        jac=True,
        method="L-BFGS-B",
        options={"ftol": 1e-15, "gtol": 1e-10, "maxiter": POLISH_ITERATIONS},
    )
    polished = result.x if np.isfinite(result.fun) and result.fun <= objective.scalar(start)[0] else start
    if not np.all(np.isfinite(polished)):
        raise FitError(where, "chinchilla", "the optimum is not finite")
    return np.asarray(polished, dtype=float)


def starts_reaching(batch: BatchResult, best_f: float, rel: float = 1e-4) -> int:
    """How many converged starts ended with an objective within `rel` (relative) of the optimum's.

    Judged by the objective, not the parameters: where a parameter is not identified (E -> 0 sends e
    towards -inf) starts that reach the same fit stop at different parameter values.
    """
    return int((batch.converged & (batch.f <= best_f + rel * abs(best_f))).sum())


def local_optima(batch: BatchResult, grid: dict, count: int = LOCAL_OPTIMA) -> list[list[float]]:
    """The `count` lowest distinct end points of the grid's starts (vectors, best first): the basins a
    bootstrap resample may fall into. Distinct means DISTINCT_STEPS grid steps apart in some axis."""
    steps = grid_steps(grid)
    order = np.flatnonzero(batch.converged & np.isfinite(batch.f))
    kept: list[np.ndarray] = []
    for i in order[np.argsort(batch.f[order])]:
        if all(np.abs((batch.x[i] - x) / steps).max() > DISTINCT_STEPS for x in kept):
            kept.append(batch.x[i])
            if len(kept) == count:
                break
    return [[float(v) for v in x] for x in kept]


def grid_steps(grid: dict) -> np.ndarray:
    """Each axis's grid spacing (1 where an axis has one value): the unit distances are measured in."""
    return np.array([np.ptp(grid[name]) / max(len(grid[name]) - 1, 1) or 1.0 for name in ORDER])


def on_grid_edge(x: np.ndarray, grid: dict[str, list[float]]) -> list[str]:
    """Names of parameters that lie at or beyond the outermost values of the grid."""
    return [name for name, value in zip(ORDER, x) if value <= min(grid[name]) or value >= max(grid[name])]


def log_r2(params: dict, n, d, loss) -> float:
    """Coefficient of determination of log loss."""
    return r2(np.log(np.asarray(loss, dtype=float)), np.log(chinchilla_loss(params, n, d)))


def refit_resamples(
    n, d, loss, weights: np.ndarray, starts: np.ndarray, delta: float, fixed: dict | None = None
) -> np.ndarray:
    """Refit every resample (rows of `weights`, multiplicities of each point) from each of `starts`:
    (S, 5) shared by every resample, or (B, S, 5) each resample's own.

    Returns (B, 5) vectors: per resample the best of its starts. Resamples where no start converged get NaN.
    """
    b = len(weights)
    starts = np.broadcast_to(np.asarray(starts, dtype=float), (b, *np.shape(starts)[-2:]))
    s = starts.shape[1]
    owner = np.repeat(np.arange(b), s)
    objective = Held(
        HuberLogObjective(n, d, loss, delta, weights=weights[owner]), fixed_coordinates(fixed, "bootstrap"), 5
    )
    batch = minimize_batched(objective, starts.reshape(b * s, 5)[:, objective.free], ftol=1e-12, gtol=1e-7)
    batch.x = objective.full(batch.x)
    f = np.where(batch.converged, batch.f, np.inf).reshape(b, s)
    best = np.argmin(f, axis=1)
    x = batch.x.reshape(b, s, 5)[np.arange(b), best]
    x[~np.isfinite(f[np.arange(b), best])] = np.nan
    return x


@register
class ChinchillaLaw(Law):
    """Approach 3: L(N, D) = E + A/N^alpha + B/D^beta, and the allocation that minimises it on a budget."""

    name = "chinchilla"
    title = "Chinchilla parametric law (Approach 3): L = E + A/N^α + B/D^β"
    label = "Approach 3"
    predicts_loss = allocates = recommendable = True
    compute_rank = run_rank = 0
    rejudged_with_intervals = True

    def problems(self, fitted: dict, points) -> list[str]:
        from scaling_cli.fit.identify import parametric_problems

        return parametric_problems(fitted, points)

    def fit(self, points, options, where: str) -> dict:
        from scaling_cli.fit.laws import chinchilla_derived

        result = fit_chinchilla(
            points["N"],
            points["D"],
            points["loss"],
            delta=options.delta,
            grid=options.grid,
            where=where,
            fixed=self.held(options),
            screened=options.screened_starts,
        )
        result["derived_6ND"] = chinchilla_derived(result["params"])
        return result

    def bootstrap(self, points, fitted: dict, indices, context: dict) -> dict:
        from scaling_cli.fit.bootstrap import bootstrap_chinchilla

        options = context["options"]
        return bootstrap_chinchilla(
            points,
            fitted,
            indices,
            delta=options.delta,
            grid=options.grid,
            at_compute=context["at_compute"],
            convention=context["convention"],
        )

    def fixable(self) -> tuple[str, ...]:
        return ORDER_NAMES

    def formula(self, fitted) -> str | None:
        if fitted is None:
            return "L(N, D) = E + A/N^alpha + B/D^beta"
        p = fitted.params
        return f"L(N, D) = {p['E']:.3g} + {p['A']:.3g}/N^{p['alpha']:.3g} + {p['B']:.3g}/D^{p['beta']:.3g}"

    def summary(self, fitted) -> str:
        diagnostics = fitted.diagnostics
        edge = ", ".join(diagnostics["grid_edge"]) or "none"
        reached = f"{diagnostics['starts_at_optimum']}/{fitted.settings['grid_size']}"
        return (
            f"r2(log) {fitted.r2:.4f}; {reached} starts reached "
            f"the optimum; |grad| {diagnostics['grad_norm']:.1e}; at grid edge: {edge}"
        )

    def loss(self, params, n, d, c=None, u=None):
        return chinchilla_loss(params, n, d)

    def allocate(self, params, convention: dict, c):
        from scaling_cli.fit.allocation import chinchilla_allocation

        return chinchilla_allocation(params, convention, c)
