"""Kaplan et al. 2020 single-variable laws: L(N), L(D) and L(C), each E + (X_c / X)^alpha_X.

L(N) uses the largest-budget run of each model size, L(D) the largest model at each token budget, and
L(C) the compute-efficient frontier (from curves when present, else final points). Fits minimise squared
log-loss residuals; with the irreducible term E (default, in each law with 4+ distinct points) E is
bounded to [0, 0.99 min loss), without it the law is a straight line in log-log space.
Runs are predicted by Kaplan's eq. 1.5 (see laws.kaplan_loss).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.optimize import least_squares

from scaling_cli.errors import FitError
from scaling_cli.fit.laws import kaplan_loss
from scaling_cli.fit.powerlaw import add_more, r2
from scaling_cli.fit.law import Law, register
from scaling_cli.fit.laws import kaplan_term

VARIABLES = {"L_N": ("N", "N_c", "alpha_N"), "L_D": ("D", "D_c", "alpha_D"), "L_C": ("C", "C_c", "alpha_C")}
E_FRACTIONS = (0.0, 0.5, 0.9)  # starting E as fractions of the lowest loss
KINDS = {"L_N": "model size", "L_D": "token budget", "L_C": "frontier run"}  # what to add when a law has too few


def largest_budget_per_size(points: pd.DataFrame) -> pd.DataFrame:
    """For L(N): the run with the most tokens at each model size."""
    return points.sort_values("D").groupby("N", sort=True).tail(1).sort_values("N")


def largest_model_per_budget(points: pd.DataFrame) -> pd.DataFrame:
    """For L(D): the largest model at each token budget."""
    return points.sort_values("N").groupby("D", sort=True).tail(1).sort_values("D")


def fit_term(x, loss, *, irreducible: bool, where: str, what: str, starts=()) -> tuple[float, float, float]:
    """(k, alpha, E) of loss = E + exp(k - alpha ln x), by least squares on log loss.

    `starts`, when given, replaces the default starting points (k, alpha, E) (bootstrap refits start
    from the full-data optimum).
    """
    needed = 4 if irreducible else 3
    log_x = np.log(np.asarray(x, dtype=float))
    loss = np.asarray(loss, dtype=float)
    distinct = len(np.unique(np.round(log_x, 12)))
    if distinct < needed:
        fix = add_more(KINDS.get(what, "point"), distinct, needed)
        raise FitError(where, f"kaplan {what}", f"needs at least {needed} distinct points, got {distinct}: {fix}")
    if not irreducible:
        slope, intercept = np.polyfit(log_x, np.log(loss), 1)
        return float(intercept), float(-slope), 0.0
    ceiling = 0.99 * loss.min()

    def residual(theta):
        k, alpha, e = theta
        return np.log(e + np.exp(np.minimum(k - alpha * log_x, 700.0))) - np.log(loss)

    best = None
    for start in list(starts) or list(_default_starts(log_x, loss, ceiling)):
        start = np.clip(start, [-np.inf, 1e-6, 0.0], [np.inf, 10.0, ceiling])
        result = least_squares(residual, start, bounds=([-np.inf, 0.0, 0.0], [np.inf, 10.0, ceiling]))
        if best is None or result.cost < best.cost:
            best = result
    if best.status <= 0:
        raise FitError(where, f"kaplan {what}", f"did not converge: {best.message}")
    k, alpha, e = best.x
    return float(k), float(alpha), float(e)


def _default_starts(log_x, loss, ceiling):
    for fraction in E_FRACTIONS:
        e = fraction * ceiling
        slope, intercept = np.polyfit(log_x, np.log(loss - e), 1)
        yield np.array([intercept, max(-slope, 1e-3), e])


def term_params(k: float, alpha: float, e: float, variable: str) -> dict[str, float]:
    """The fitted (k, alpha, E) as Kaplan's X_c, alpha_X and E."""
    _, critical, exponent = VARIABLES[variable]
    with np.errstate(over="ignore"):
        scale = float(np.exp(k / alpha)) if alpha > 0 else float("inf")
    return {critical: scale, exponent: alpha, "E": e}


def fit_kaplan(
    points: pd.DataFrame, frontier: pd.DataFrame, *, irreducible: bool | dict, where: str, starts=None
) -> dict:
    """All three laws; `starts` maps each law to a (k, alpha, E) vector to start from (bootstrap).

    irreducible=True fits E in every law that has at least 4 distinct points and leaves it out (E = 0)
    in a law with only 3, recording the choice per law; a dict {law: bool} fixes the choice per law.
    """
    subsets = {
        "L_N": largest_budget_per_size(points),
        "L_D": largest_model_per_budget(points),
        "L_C": frontier,
    }
    result = {}
    for name, subset in subsets.items():
        variable = VARIABLES[name][0]
        extra = [starts[name]] if starts else []
        with_e = _with_irreducible(irreducible, name, subset[variable])
        k, alpha, e = fit_term(
            subset[variable], subset["loss"], irreducible=with_e, where=where, what=name, starts=extra
        )
        params = term_params(k, alpha, e, name)
        predicted = e + np.exp(k - alpha * np.log(subset[variable].to_numpy(dtype=float)))
        result[name] = {
            "params": params,
            "vector": [k, alpha, e],
            "irreducible": with_e,
            "r2": r2(np.log(subset["loss"]), np.log(predicted)),
            "points": len(subset),
        }
    result["r2"] = r2(np.log(points["loss"]), np.log(kaplan_loss(result, points["N"], points["D"])))
    result["settings"] = {
        "irreducible": irreducible if isinstance(irreducible, bool) else "per law",
        "loss": "squared residuals of log loss",
        "L_N": "largest-budget run of each model size",
        "L_D": "largest model at each token budget",
        "L_C": "compute-efficient frontier",
        "run_prediction": "Kaplan eq. 1.5 from L_N and L_D, E the mean of their E",
    }
    return result


def _with_irreducible(irreducible: bool | dict, name: str, x) -> bool:
    if isinstance(irreducible, dict):
        return bool(irreducible[name])
    return bool(irreducible) and len(np.unique(np.round(np.log(np.asarray(x, dtype=float)), 12))) >= 4


@register
class KaplanLaw(Law):
    """Kaplan et al. 2020: L(N), L(D) and L(C) on the frontier; a run's loss from eq. 1.5, no allocation."""

    name = "kaplan"
    predicts_loss = recommendable = True

    def fit(self, points, options, where: str) -> dict:
        from scaling_cli.fit.envelope import final_point_frontier

        return fit_kaplan(points, final_point_frontier(points), irreducible=options.irreducible, where=where)

    def bootstrap(self, points, fitted: dict, indices, context: dict) -> dict:
        from scaling_cli.fit.bootstrap import bootstrap_kaplan

        extra = bootstrap_kaplan(points, fitted, indices, at_compute=context["at_compute"], where=context["where"])
        intervals = extra.pop("intervals")
        for law in VARIABLES:
            fitted[law]["intervals"] = intervals.pop(law)
        fitted["intervals"] = intervals
        return extra

    def params_of(self, fitted: dict):
        return fitted

    def samples_of(self, fitted: dict):
        """The samples as one Kaplan law whose parameters are arrays (L_N, L_D, L_C in stored order)."""
        from scaling_cli.fit.law import _complete_samples

        rows = np.asarray(_complete_samples(fitted), dtype=float)
        if rows.ndim != 2 or not len(rows):
            return None
        law, position = {}, 0
        for name in VARIABLES:
            keys = list(fitted[name]["params"])
            law[name] = {"params": {key: rows[:, position + i] for i, key in enumerate(keys)}}
            position += len(keys)
        return law if position == rows.shape[1] else None

    def loss(self, params, n, d, c=None, u=None):
        return kaplan_loss(params, n, d)

    def loss_at_compute(self, params, convention: dict, c):
        law = params["L_C"]["params"]
        return kaplan_term(c, law["C_c"], law["alpha_C"], law["E"])

    def at_compute(self, fitted: dict, convention: dict, c: float) -> dict:
        return {"C": c, "loss": float(self.loss_at_compute(fitted, convention, c))}
