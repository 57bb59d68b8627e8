"""The data-constrained law of Muennighoff et al. 2023: repeated tokens are worth less than fresh ones.

L(N, D, U) = E + A / N^alpha + B / D'^beta, with U the unique training tokens, R = max(D / U - 1, 0) the
repetitions beyond the first epoch and D' = min(D, U) + U R* (1 - exp(-R / R*)) the effective data: up to
a few epochs D' is about D, after many it saturates at U (1 + R*). R* is the repetition "half-life".
The fit is the Chinchilla machinery (summed Huber loss on log loss, max-shifted log-sum-exp, every start
of a grid minimised at once by batched BFGS, the best polished by L-BFGS-B) with one more parameter,
r = ln R*.
"""

from __future__ import annotations

import itertools

import numpy as np
from scipy.optimize import minimize

from scaling_cli.errors import FitError
from scaling_cli.fit.batched import minimize_batched
from scaling_cli.fit.chinchilla import MIN_DISTINCT, MIN_POINTS, POLISH_ITERATIONS, check_points, starts_reaching
from scaling_cli.fit.laws import log_sum_exp
from scaling_cli.fit.powerlaw import r2
from scaling_cli.fit.law import Law, register

ORDER = ("e", "a", "b", "alpha", "beta", "r")
# Coarser than Chinchilla's 4,500 starts in the five shared axes, times three values of R*: 2,916 starts.
CONSTRAINED_GRID = {
    "e": [-1.0, 0.0, 1.0],
    "a": [0.0, 5.0, 10.0, 15.0, 20.0, 25.0],
    "b": [0.0, 5.0, 10.0, 15.0, 20.0, 25.0],
    "alpha": [0.0, 0.5, 1.0],
    "beta": [0.0, 0.5, 1.0],
    "r": [float(np.log(3.0)), float(np.log(15.0)), float(np.log(60.0))],
}
MAX_R_STAR = 1e4  # beyond this no run of any sweep repeats its data enough to see R*


def repetitions(d, u) -> np.ndarray:
    """R = D / U - 1 epochs beyond the first (0 for runs that see less than one epoch)."""
    return np.maximum(np.asarray(d, dtype=float) / np.asarray(u, dtype=float) - 1.0, 0.0)


def effective_tokens(d, u, r_star) -> np.ndarray:
    """D' = min(D, U) + U R* (1 - exp(-R / R*))."""
    d, u = np.asarray(d, dtype=float), np.asarray(u, dtype=float)
    r_star = np.asarray(r_star, dtype=float)
    return np.minimum(d, u) + u * r_star * -np.expm1(-repetitions(d, u) / r_star)


def constrained_loss(params: dict, n, d, u) -> np.ndarray:
    """L(N, D, U) = E + A / N^alpha + B / D'^beta."""
    d_eff = effective_tokens(d, u, params["R_star"])
    with np.errstate(divide="ignore"):
        log_e, log_a, log_b = (np.log(np.asarray(params[k], dtype=float)) for k in ("E", "A", "B"))
    terms = (
        log_e,
        log_a - np.asarray(params["alpha"], dtype=float) * np.log(np.asarray(n, dtype=float)),
        log_b - np.asarray(params["beta"], dtype=float) * np.log(d_eff),
    )
    return np.exp(log_sum_exp(*terms))


class ConstrainedObjective:
    """Summed Huber loss of log-space residuals and its gradient for many (e, a, b, alpha, beta, r) at once."""

    def __init__(self, n, d, u, loss, delta: float, weights: np.ndarray | None = None):
        self.log_n = np.log(np.asarray(n, dtype=float))
        self.d = np.asarray(d, dtype=float)
        self.u = np.asarray(u, dtype=float)
        self.fresh = np.minimum(self.d, self.u)
        self.repeats = repetitions(self.d, self.u)
        self.log_loss = np.log(np.asarray(loss, dtype=float))
        self.delta = float(delta)
        self.weights = weights

    def __call__(self, x: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        e, a, b, alpha, beta, r = (x[:, i : i + 1] for i in range(6))
        r_star = np.exp(r)
        ratio = self.repeats / r_star
        decay = np.exp(-ratio)
        d_eff = self.fresh + self.u * r_star * -np.expm1(-ratio)
        log_d = np.log(d_eff)
        # d ln D' / d r = R* dD'/dR* / D', with dD'/dR* = U (1 - e^(-R/R*) - (R/R*) e^(-R/R*))
        dlog_d_dr = r_star * self.u * (-np.expm1(-ratio) - ratio * decay) / d_eff
        term_e = np.broadcast_to(e, (len(x), self.log_n.size))
        term_n = a - alpha * self.log_n
        term_d = b - beta * log_d
        top = np.maximum(np.maximum(term_e, term_n), term_d)  # max-shifted log-sum-exp
        share_e, share_n, share_d = np.exp(term_e - top), np.exp(term_n - top), np.exp(term_d - top)
        total = share_e + share_n + share_d
        residual = top + np.log(total) - self.log_loss
        size = np.abs(residual)
        huber = np.where(size <= self.delta, 0.5 * residual * residual, self.delta * (size - 0.5 * self.delta))
        slope = np.clip(residual, -self.delta, self.delta)
        if self.weights is not None:
            huber *= self.weights[rows]
            slope *= self.weights[rows]
        scale = slope / total
        share_e, share_n, share_d = share_e * scale, share_n * scale, share_d * scale
        grad = np.column_stack(
            [
                share_e.sum(1),
                share_n.sum(1),
                share_d.sum(1),
                -(share_n @ self.log_n),
                -(share_d * log_d).sum(1),
                -(share_d * beta * dlog_d_dr).sum(1),
            ]
        )
        return huber.sum(1), grad

    def scalar(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        f, g = self(np.asarray(x, dtype=float)[None, :], np.zeros(1, dtype=int))
        return float(f[0]), g[0]


def grid_starts(grid: dict = CONSTRAINED_GRID) -> np.ndarray:
    return np.array(list(itertools.product(*(grid[name] for name in ORDER))), dtype=float)


def to_params(x) -> dict[str, float]:
    e, a, b, alpha, beta, r = (float(v) for v in x)
    return {
        "E": float(np.exp(e)),
        "A": float(np.exp(a)),
        "B": float(np.exp(b)),
        "alpha": alpha,
        "beta": beta,
        "R_star": float(np.exp(r)),
    }


def check_repetition(n, d, u, loss, where: str) -> None:
    """FitError unless the table can separate R* from beta: enough points, sizes, budgets and repeated runs."""
    check_points(n, d, loss, where)
    repeated = repetitions(d, u) > 0
    if repeated.sum() < 2:
        raise FitError(
            where,
            "constrained",
            f"needs at least 2 runs that repeat their data (D > U), got {int(repeated.sum())}: "
            "add runs with a smaller unique-token cap",
        )
    levels = len(np.unique(np.round(np.log(np.asarray(u, dtype=float)[repeated]), 9)))
    epochs = len(np.unique(np.round(repetitions(d, u)[repeated], 9)))
    if max(levels, epochs) < 2:
        raise FitError(
            where, "constrained", "needs repeated runs at 2+ different repetition counts: add another unique-token cap"
        )


def fit_constrained(n, d, u, loss, *, delta: float = 1e-3, grid=CONSTRAINED_GRID, where: str = "fit") -> dict:
    """Fit the data-constrained law from every start of `grid`; FitError when the table cannot support it."""
    check_repetition(n, d, u, loss, where)
    objective = ConstrainedObjective(n, d, u, loss, delta)
    with np.errstate(all="ignore"):  # wild starts send R* to 0 or infinity; their objective is NaN and they stall
        batch = minimize_batched(objective, grid_starts(grid))
    usable = batch.converged & np.isfinite(batch.f)
    if not usable.any():
        raise FitError(where, "constrained", f"no start of {len(batch.f)} converged")
    start = batch.x[np.flatnonzero(usable)[np.argmin(batch.f[usable])]]
    bounds = [(None, None)] * 5 + [(np.log(0.1), np.log(MAX_R_STAR))]
    start[5] = np.clip(start[5], *bounds[5])
    with np.errstate(all="ignore"):
        polished = minimize(
            objective.scalar,
            start,
            jac=True,
            method="L-BFGS-B",
            bounds=bounds,
            options={"ftol": 1e-15, "gtol": 1e-10, "maxiter": POLISH_ITERATIONS},
        )
    best = polished.x if np.isfinite(polished.fun) and polished.fun <= objective.scalar(start)[0] else start
    best_f, best_g = objective.scalar(best)
    params = to_params(best)
    predicted = constrained_loss(params, n, d, u)
    return {
        "params": params,
        "vector": [float(v) for v in best],
        "r2": r2(np.log(np.asarray(loss, dtype=float)), np.log(predicted)),
        "settings": {
            "delta": delta,
            "loss": "Huber on log loss, summed over points",
            "law": "L = E + A/N^alpha + B/D'^beta, D' = min(D, U) + U R* (1 - exp(-R/R*)), R = max(D/U - 1, 0)",
            "optimizer": "batched BFGS from every grid start, best polished by scipy L-BFGS-B (analytic gradient)",
            "grid": {name: list(grid[name]) for name in ORDER},
            "grid_size": len(batch.f),
            "min_points": MIN_POINTS,
            "min_distinct": MIN_DISTINCT,
        },
        "diagnostics": {
            "objective": best_f,
            "grad_norm": float(np.abs(best_g).max()),
            "starts_converged": int(batch.converged.sum()),
            "starts_at_optimum": starts_reaching(batch, best_f),
            "repeated_runs": int((repetitions(d, u) > 0).sum()),
        },
    }


def refit_resamples(n, d, u, loss, weights: np.ndarray, starts: np.ndarray, delta: float) -> np.ndarray:
    """(B, 6) vectors: each resample (rows of point multiplicities) refitted from each of `starts`, best kept."""
    b, s = len(weights), len(starts)
    owner = np.repeat(np.arange(b), s)
    objective = ConstrainedObjective(n, d, u, loss, delta, weights=weights[owner])
    with np.errstate(all="ignore"):
        batch = minimize_batched(objective, np.tile(starts, (b, 1)), ftol=1e-12, gtol=1e-7)
    f = np.where(batch.converged, batch.f, np.inf).reshape(b, s)
    pick = np.argmin(f, axis=1)
    x = batch.x.reshape(b, s, len(ORDER))[np.arange(b), pick]
    x[~np.isfinite(f[np.arange(b), pick])] = np.nan
    return x


@register
class ConstrainedLaw(Law):
    """The data-constrained law: Approach 3 with repeated tokens worth less (Muennighoff et al. 2023).

    Fitted by default only where some run repeats its data (it needs unique-token counts).
    """

    name = "constrained"
    predicts_loss = recommendable = True

    def applies_to(self, points) -> bool:
        return "U" in points and bool((points["D"] > points["U"]).any())

    def fit(self, points, options, where: str) -> dict:
        if "U" not in points:
            raise FitError(
                where, "constrained", "needs unique training tokens per run: a unique_tokens column (--u-col)"
            )
        return fit_constrained(points["N"], points["D"], points["U"], points["loss"], delta=options.delta, where=where)

    def bootstrap(self, points, fitted: dict, indices, context: dict) -> dict:
        from scaling_cli.fit.bootstrap import bootstrap_constrained

        return bootstrap_constrained(points, fitted, indices, delta=context["options"].delta)

    def loss(self, params, n, d, c=None, u=None):
        return constrained_loss(params, n, d, d if u is None else u)
