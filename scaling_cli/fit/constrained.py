"""The data-constrained law of Muennighoff et al. 2023: repeated tokens and excess parameters are worth less.

L(N, D, U) = E + A / N'^alpha + B / D'^beta, with U the unique training tokens and
- D' = U_D + U_D R_D* (1 - exp(-R_D / R_D*)), U_D = min(D, U), R_D = max(D / U - 1, 0): repeated epochs;
- N' = U_N + U_N R_N* (1 - exp(-R_N / R_N*)), U_N = min(N, the compute-optimal N for U tokens under the
  law's own E, A, B, alpha, beta), R_N = max(N / U_N - 1, 0): parameters beyond what U tokens can use.
R_D* and R_N* are the "half-lives" of repetition and excess size. The fit is the Chinchilla machinery
(summed Huber loss on log loss, max-shifted log-sum-exp, every start of a grid minimised at once by batched
BFGS, the best polished by L-BFGS-B, analytic gradient) with r_D = ln R_D* and r_N = ln R_N*. Any
parameter can be held at a given value (`fixed`, as the paper's Table 1 holds E, A, B, alpha and beta).
"""

from __future__ import annotations

import itertools

import numpy as np
from scipy.optimize import minimize

from scaling_cli.errors import FitError
from scaling_cli.fit.batched import Held, minimize_batched
from scaling_cli.fit.chinchilla import (
    MIN_DISTINCT,
    MIN_POINTS,
    POLISH_ITERATIONS,
    check_points,
    huber_log_sum_exp,
    screen_starts,
    starts_reaching,
)
from scaling_cli.fit.law import Law, register
from scaling_cli.fit.laws import log_sum_exp
from scaling_cli.fit.powerlaw import r2

ORDER = ("e", "a", "b", "alpha", "beta", "r_d", "r_n")
NAMES = ("E", "A", "B", "alpha", "beta", "R_D_star", "R_N_star")  # the published parameters, in ORDER
LOGGED = (True, True, True, False, False, True, True)  # stored in the vector as their logarithm
# Coarser than Chinchilla's 4,500 starts in the five shared axes, times three R_D* (one R_N*): 2,916 starts.
CONSTRAINED_GRID = {
    "e": [-1.0, 0.0, 1.0],
    "a": [0.0, 5.0, 10.0, 15.0, 20.0, 25.0],
    "b": [0.0, 5.0, 10.0, 15.0, 20.0, 25.0],
    "alpha": [0.0, 0.5, 1.0],
    "beta": [0.0, 0.5, 1.0],
    "r_d": [float(np.log(3.0)), float(np.log(15.0)), float(np.log(60.0))],
    "r_n": [float(np.log(5.0))],
}
MAX_R_STAR = 1e4  # beyond this no run of any sweep repeats its data (or oversizes its model) enough to see R*


def repetitions(d, u) -> np.ndarray:
    """R_D = D / U - 1 epochs beyond the first (0 for runs that see less than one epoch)."""
    return np.maximum(np.asarray(d, dtype=float) / np.asarray(u, dtype=float) - 1.0, 0.0)


def effective_tokens(d, u, r_star) -> np.ndarray:
    """D' = min(D, U) + U R_D* (1 - exp(-R_D / R_D*))."""
    d, u = np.asarray(d, dtype=float), np.asarray(u, dtype=float)
    r_star = np.asarray(r_star, dtype=float)
    return np.minimum(d, u) + u * r_star * -np.expm1(-repetitions(d, u) / r_star)


def log_unique_params(a, b, alpha, beta, log_u):
    """ln of the compute-optimal N for U tokens (Hoffmann et al. eq. 4 solved for N given D = U):
    N = G (G U)^(beta/alpha), G = (alpha A / (beta B))^(1 / (alpha + beta)), from ln A = a, ln B = b."""
    with np.errstate(all="ignore"):
        log_g = (np.log(alpha) + a - np.log(beta) - b) / (alpha + beta)
        return log_g + (beta / alpha) * (log_g + log_u)


def effective_params(n, u, params: dict) -> np.ndarray:
    """N' = U_N + U_N R_N* (1 - exp(-R_N / R_N*)), U_N = min(N, compute-optimal N for U tokens)."""
    n = np.asarray(n, dtype=float)
    alpha, beta = (np.asarray(params[k], dtype=float) for k in ("alpha", "beta"))
    log_a, log_b = (np.log(np.asarray(params[k], dtype=float)) for k in ("A", "B"))
    u_n = np.minimum(n, np.exp(log_unique_params(log_a, log_b, alpha, beta, np.log(np.asarray(u, dtype=float)))))
    u_n = np.where(np.isfinite(u_n) & (u_n > 0), u_n, n)
    return effective_tokens(n, u_n, params["R_N_star"])


def constrained_loss(params: dict, n, d, u) -> np.ndarray:
    """L(N, D, U) = E + A / N'^alpha + B / D'^beta (a stored fit without R_N_star has no N' term)."""
    r_d = params.get("R_D_star", params.get("R_star"))
    d_eff = effective_tokens(d, u, r_d)
    n_eff = effective_params(n, u, params) if "R_N_star" in params else np.asarray(n, dtype=float)
    with np.errstate(divide="ignore"):
        log_e, log_a, log_b = (np.log(np.asarray(params[k], dtype=float)) for k in ("E", "A", "B"))
    terms = (
        log_e,
        log_a - np.asarray(params["alpha"], dtype=float) * np.log(n_eff),
        log_b - np.asarray(params["beta"], dtype=float) * np.log(d_eff),
    )
    return np.exp(log_sum_exp(*terms))


def _saturating(base, repeats, r_star):
    """ln X' and its derivatives for X' = base + base R* (1 - e^(-R/R*)): d ln X'/d r (r = ln R*) and
    d X'/d base at fixed total (R = total/base - 1), returned as (log_x, dlog_dr, dx_dbase)."""
    ratio = repeats / r_star
    decay = np.exp(-ratio)
    grown = -np.expm1(-ratio)
    x = base * (1.0 + r_star * grown)
    dlog_dr = r_star * base * (grown - ratio * decay) / x
    dx_dbase = 1.0 + r_star * grown - (repeats + 1.0) * decay
    return np.log(x), dlog_dr, dx_dbase


class ConstrainedObjective:
    """Summed Huber loss of log-space residuals and its gradient for many vectors (ORDER) at once."""

    def __init__(self, n, d, u, loss, delta: float, weights: np.ndarray | None = None):
        self.log_n = np.log(np.asarray(n, dtype=float))
        self.n = np.asarray(n, dtype=float)
        self.u = np.asarray(u, dtype=float)
        self.log_u = np.log(self.u)
        self.fresh = np.minimum(np.asarray(d, dtype=float), self.u)
        self.repeats = repetitions(d, u)
        self.log_loss = np.log(np.asarray(loss, dtype=float))
        self.delta = float(delta)
        self.weights = weights

    def __call__(self, x: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        e, a, b, alpha, beta, r_d, r_n = (x[:, i : i + 1] for i in range(7))
        log_d, dlog_d_dr, _ = _saturating(self.fresh, self.repeats, np.exp(r_d))
        log_n, dlog_n = self._log_params(a, b, alpha, beta, r_n)
        term_e = np.broadcast_to(e, (len(x), self.log_n.size))
        weights = None if self.weights is None else self.weights[rows]
        huber, (share_e, share_n, share_d) = huber_log_sum_exp(
            (term_e, a - alpha * log_n, b - beta * log_d), self.log_loss, self.delta, weights
        )
        # term_n = a - alpha ln N'(a, b, alpha, beta, r_n): the chain rule through N' adds -alpha dlnN'
        grad = np.column_stack(
            [
                share_e.sum(1),
                share_n.sum(1) - (share_n * alpha * dlog_n[0]).sum(1),
                share_d.sum(1) - (share_n * alpha * dlog_n[1]).sum(1),
                -(share_n * (log_n + alpha * dlog_n[2])).sum(1),
                -(share_d * log_d).sum(1) - (share_n * alpha * dlog_n[3]).sum(1),
                -(share_d * beta * dlog_d_dr).sum(1),
                -(share_n * alpha * dlog_n[4]).sum(1),
            ]
        )
        return huber, grad

    def _log_params(self, a, b, alpha, beta, r_n):
        """ln N' per point and its derivatives by (a, b, alpha, beta, r_n); zero where N <= U_N (N' = N)."""
        log_opt = log_unique_params(a, b, alpha, beta, self.log_u)
        excess = np.isfinite(log_opt) & (self.log_n > log_opt)
        base = np.exp(np.where(excess, log_opt, self.log_n))
        repeats = np.where(excess, self.n / base - 1.0, 0.0)
        log_n, dlog_dr, dx_dbase = _saturating(base, repeats, np.exp(r_n))
        dlog_dbase = np.where(excess, base * dx_dbase / np.exp(log_n), 0.0)  # d ln N' / d ln U_N
        with np.errstate(all="ignore"):
            total = alpha + beta
            ratio = beta / alpha
            log_g = (np.log(alpha) + a - np.log(beta) - b) / total
            dlog_g = (1.0 / total, -1.0 / total, (1.0 / alpha - log_g) / total, (-1.0 / beta - log_g) / total)
            # ln U_N = (1 + beta/alpha) ln G + (beta/alpha) ln U
            d_opt = [
                (1.0 + ratio) * dlog_g[0],
                (1.0 + ratio) * dlog_g[1],
                (1.0 + ratio) * dlog_g[2] - ratio / alpha * (log_g + self.log_u),
                (1.0 + ratio) * dlog_g[3] + (log_g + self.log_u) / alpha,
            ]
        derivatives = [np.where(excess, dlog_dbase * v, 0.0) for v in d_opt]
        return log_n, [*derivatives, np.where(excess, dlog_dr, 0.0)]

    def scalar(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        f, g = self(np.asarray(x, dtype=float)[None, :], np.zeros(1, dtype=int))
        return float(f[0]), g[0]


def fixed_coordinates(fixed: dict | None, where: str) -> dict[int, float]:
    """{vector index: value} from {published name: value}; FitError for an unknown name or a bad value."""
    coordinates = {}
    for name, value in (fixed or {}).items():
        if name not in NAMES:
            raise FitError(where, f"--fix {name}", f"not a parameter of constrained; choose from {', '.join(NAMES)}")
        i = NAMES.index(name)
        if not np.isfinite(value) or (LOGGED[i] and value <= 0):
            raise FitError(where, f"--fix {name}", f"must be {'positive' if LOGGED[i] else 'finite'}, got {value}")
        coordinates[i] = float(np.log(value)) if LOGGED[i] else float(value)
    return coordinates


def grid_starts(grid: dict = CONSTRAINED_GRID) -> np.ndarray:
    return np.array(list(itertools.product(*(grid[name] for name in ORDER))), dtype=float)


def to_params(x) -> dict[str, float]:
    """The vector as the published parameters (E, A, B, R_D*, R_N* from their logarithms)."""
    return {name: float(np.exp(v)) if logged else float(v) for name, v, logged in zip(NAMES, x, LOGGED)}


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


def fit_constrained(
    n,
    d,
    u,
    loss,
    *,
    delta: float = 1e-3,
    grid=CONSTRAINED_GRID,
    where: str = "fit",
    fixed: dict | None = None,
    screened: int | None = None,
) -> dict:
    """Fit the data-constrained law from every start of `grid` (or the `screened` best of them, as Approach 3
    does), holding the `fixed` parameters ({published name: value}); FitError when the table cannot support it."""
    check_repetition(n, d, u, loss, where)
    held = Held(ConstrainedObjective(n, d, u, loss, delta), fixed_coordinates(fixed, where), len(ORDER))
    starts = np.unique(grid_starts(grid)[:, held.free], axis=0)
    with np.errstate(all="ignore"):  # wild starts send R* to 0 or infinity; their objective is NaN and they stall
        batch = minimize_batched(held, screen_starts(held, starts, screened))
    usable = batch.converged & np.isfinite(batch.f)
    if not usable.any():
        raise FitError(where, "constrained", f"no start of {len(batch.f)} converged")
    best = _polish(held, batch.x[np.flatnonzero(usable)[np.argmin(batch.f[usable])]])
    best_f, best_g = held.scalar(best)
    vector = held.full(best)[0]
    params = to_params(vector)
    predicted = constrained_loss(params, n, d, u)
    u_n = np.minimum(n, np.exp(log_unique_params(vector[1], vector[2], vector[3], vector[4], np.log(u))))
    return {
        "params": params,
        "vector": [float(v) for v in vector],
        "fixed": {name: float(value) for name, value in (fixed or {}).items()},
        "r2": r2(np.log(np.asarray(loss, dtype=float)), np.log(predicted)),
        "settings": {
            "delta": delta,
            "loss": "Huber on log loss, summed over points",
            "law": "L = E + A/N'^alpha + B/D'^beta; D' = U_D + U_D R_D* (1 - exp(-R_D/R_D*)), U_D = min(D, U), "
            "R_D = max(D/U - 1, 0); N' = U_N + U_N R_N* (1 - exp(-R_N/R_N*)), U_N = min(N, compute-optimal N for "
            "U tokens under the law's E, A, B, alpha, beta), R_N = N/U_N - 1 (Muennighoff et al. 2023)",
            "optimizer": "batched BFGS from every grid start, best polished by scipy L-BFGS-B (analytic gradient)",
            "grid": {name: list(grid[name]) for name in ORDER},
            "grid_size": len(batch.f),
            "min_points": MIN_POINTS,
            "min_distinct": MIN_DISTINCT,
            "fixed": "held at the given values, not fitted and not bootstrapped" if fixed else None,
        },
        "diagnostics": {
            "objective": best_f,
            "grad_norm": float(np.abs(best_g).max()) if best_g.size else 0.0,
            "starts_converged": int(batch.converged.sum()),
            "starts_at_optimum": starts_reaching(batch, best_f),
            "repeated_runs": int((repetitions(d, u) > 0).sum()),
            "excess_parameter_runs": int((np.asarray(n, dtype=float) > u_n * (1 + 1e-9)).sum()),
        },
    }


def _polish(held: Held, start: np.ndarray) -> np.ndarray:
    """L-BFGS-B from the best start, R* kept within [0.1, MAX_R_STAR]."""
    limits = (np.log(0.1), np.log(MAX_R_STAR))
    bounds = [limits if ORDER[i].startswith("r_") else (None, None) for i in held.free]
    start = np.clip(
        start,
        [b[0] if b[0] is not None else -np.inf for b in bounds],
        [b[1] if b[1] is not None else np.inf for b in bounds],
    )
    if not len(start):
        return start
    with np.errstate(all="ignore"):
        polished = minimize(
            held.scalar,
            start,
            jac=True,
            method="L-BFGS-B",
            bounds=bounds,
            options={"ftol": 1e-15, "gtol": 1e-10, "maxiter": POLISH_ITERATIONS},
        )
    return polished.x if np.isfinite(polished.fun) and polished.fun <= held.scalar(start)[0] else start


def refit_resamples(
    n, d, u, loss, weights: np.ndarray, starts: np.ndarray, delta: float, fixed: dict | None = None
) -> np.ndarray:
    """(B, 7) vectors: each resample (rows of point multiplicities) refitted from each of `starts` (full
    vectors), the `fixed` parameters held, best kept."""
    b, s = len(weights), len(starts)
    owner = np.repeat(np.arange(b), s)
    held = Held(
        ConstrainedObjective(n, d, u, loss, delta, weights=weights[owner]),
        fixed_coordinates(fixed, "bootstrap"),
        len(ORDER),
    )
    with np.errstate(all="ignore"):
        batch = minimize_batched(held, np.tile(np.asarray(starts)[:, held.free], (b, 1)), ftol=1e-12, gtol=1e-7)
    f = np.where(batch.converged, batch.f, np.inf).reshape(b, s)
    pick = np.argmin(f, axis=1)
    x = held.full(batch.x).reshape(b, s, len(ORDER))[np.arange(b), pick]
    x[~np.isfinite(f[np.arange(b), pick])] = np.nan
    return x


@register
class ConstrainedLaw(Law):
    """The data-constrained law: Approach 3 with repeated tokens worth less (Muennighoff et al. 2023).

    Fitted by default only where some run repeats its data (it needs unique-token counts).
    """

    name = "constrained"
    title = "Data-constrained law (Muennighoff et al. 2023): repeated data counted as D′"
    label = "data-constrained law"
    predicts_loss = recommendable = rejudged_with_intervals = True

    def applies_to(self, points) -> bool:
        return "U" in points and bool((points["D"] > points["U"]).any())

    def fit(self, points, options, where: str) -> dict:
        if "U" not in points:
            raise FitError(
                where, "constrained", "needs unique training tokens per run: a unique_tokens column (--u-col)"
            )
        return fit_constrained(
            points["N"],
            points["D"],
            points["U"],
            points["loss"],
            delta=options.delta,
            where=where,
            fixed=self.held(options),
            screened=options.screened_starts,
        )

    def bootstrap(self, points, fitted: dict, indices, context: dict) -> dict:
        from scaling_cli.fit.bootstrap import bootstrap_constrained

        return bootstrap_constrained(points, fitted, indices, delta=context["options"].delta, fixed=fitted.get("fixed"))

    def fixable(self) -> tuple[str, ...]:
        return NAMES

    def summary(self, fitted) -> str:
        r_star, span = fitted.params["R_D_star"], fitted.intervals.get("R_D_star")
        shown = f"[{span[0]:.4g}, {span[1]:.4g}]" if span else ""
        return (
            f"R_D* = {r_star:.3g} {shown}: one more epoch is worth half a fresh one after {r_star * 0.693:.2g} "
            f"repeats; R_N* = {fitted.params['R_N_star']:.3g}; r2(log) {fitted.r2:.4f}; "
            f"{fitted.diagnostics['repeated_runs']} runs repeat their data"
        )

    def problems(self, fitted: dict, points) -> list[str]:
        from scaling_cli.fit.identify import parametric_problems, repetition_problems

        return parametric_problems(fitted, points) + repetition_problems(fitted, points)

    def run_note(self, tokens: float, unique_tokens: float | None) -> str | None:
        unique = tokens if unique_tokens is None else unique_tokens
        fresh = " (fresh data; give --unique-tokens)" if unique_tokens is None else ""
        return f"U = {unique:.3g} unique tokens, {tokens / unique:.3g} epochs{fresh}"

    def loss(self, params, n, d, c=None, u=None):
        return constrained_loss(params, n, d, d if u is None else u)
