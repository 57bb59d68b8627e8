"""Closed-form evaluators of every fitted law: loss predictions and compute-optimal allocations.

These are the functions `plot` and `predict` use on the parameters stored in fit.json; they take plain
dicts of parameters and numpy-compatible inputs and never fit anything.
"""

from __future__ import annotations

import numpy as np


def log_sum_exp(*terms) -> np.ndarray:
    """log(sum exp(t)) shifted by the largest term, so that no term overflows or underflows to nothing."""
    stacked = np.stack(np.broadcast_arrays(*(np.asarray(t, dtype=float) for t in terms)))
    top = np.max(stacked, axis=0)
    shift = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore"):
        return shift + np.log(np.sum(np.exp(stacked - shift), axis=0))


def chinchilla_loss(params: dict, n, d) -> np.ndarray:
    """L(N, D) = E + A / N^alpha + B / D^beta, evaluated as exp of a max-shifted log-sum-exp."""
    with np.errstate(divide="ignore"):
        log_e, log_a, log_b = (np.log(np.asarray(params[k], dtype=float)) for k in ("E", "A", "B"))
    log_n = np.log(np.asarray(n, dtype=float))
    log_d = np.log(np.asarray(d, dtype=float))
    terms = (
        log_e,
        log_a - np.asarray(params["alpha"], dtype=float) * log_n,
        log_b - np.asarray(params["beta"], dtype=float) * log_d,
    )
    return np.exp(log_sum_exp(*terms))


def chinchilla_derived(params: dict) -> dict[str, float]:
    """Exponents a, b of N_opt = G (C/6)^a and D_opt = (C/6)^b / G, and the constant G (Hoffmann et al. eq. 4).

    NaN (never a complex number) when alpha or beta is not positive: such a law has no optimum.
    """
    alpha, beta, a_coef, b_coef = (np.asarray(params[k], dtype=float) for k in ("alpha", "beta", "A", "B"))
    valid = (alpha > 0) & (beta > 0) & (a_coef > 0) & (b_coef > 0)
    with np.errstate(all="ignore"):
        total = alpha + beta
        log_g = (np.log(alpha) + np.log(a_coef) - np.log(beta) - np.log(b_coef)) / total
        derived = {"a": beta / total, "b": alpha / total, "G": np.exp(log_g)}
    return {key: _scalar_or_array(np.where(valid, value, np.nan)) for key, value in derived.items()}


def _scalar_or_array(value: np.ndarray):
    return float(value) if np.ndim(value) == 0 else value


def chinchilla_optimum(params: dict, c) -> tuple[np.ndarray, np.ndarray]:
    """(N_opt, D_opt) minimising L(N, D) subject to C = 6 N D (see allocation.py for other conventions)."""
    derived = chinchilla_derived(params)
    c6 = np.asarray(c, dtype=float) / 6.0
    return derived["G"] * c6 ** derived["a"], c6 ** derived["b"] / derived["G"]


def power_law(x, scale: float, exponent: float) -> np.ndarray:
    """scale * x^exponent (N_opt = N0 C^a, D_opt = D0 C^b)."""
    return scale * np.asarray(x, dtype=float) ** exponent


def kaplan_term(x, critical: float, exponent: float, irreducible: float = 0.0) -> np.ndarray:
    """Kaplan's single-variable law E + (X_c / X)^alpha_X."""
    return irreducible + (critical / np.asarray(x, dtype=float)) ** exponent


def kaplan_loss(kaplan: dict, n, d) -> np.ndarray:
    """Kaplan et al. 2020 eq. 1.5 built from the fitted L(N) and L(D):

    L(N, D) = E + [(N_c / N)^(alpha_N / alpha_D) + D_c / D]^alpha_D, with E the mean of the two fits' E.
    Computed in log space from each law's fitted vector when present, so that an exponent near zero
    (with N_c overflowing) still gives a finite prediction.
    """
    ln, ld = kaplan["L_N"], kaplan["L_D"]
    alpha_d = ld["params"]["alpha_D"]
    log_n_term = _log_reducible(ln, "N_c", "alpha_N", n)
    log_d_term = _log_reducible(ld, "D_c", "alpha_D", d)
    inner = np.exp(log_n_term / alpha_d) + np.exp(log_d_term / alpha_d)
    return 0.5 * (ln["params"]["E"] + ld["params"]["E"]) + inner**alpha_d


def _log_reducible(law: dict, critical: str, exponent: str, x) -> np.ndarray:
    """log (X_c / X)^alpha_X, from the fitted (k, alpha, E) vector (k = alpha log X_c) when present."""
    log_x = np.log(np.asarray(x, dtype=float))
    if "vector" in law:
        k, alpha, _ = law["vector"]
        return k - alpha * log_x
    params = law["params"]
    return params[exponent] * (np.log(params[critical]) - log_x)


def linear_loss(params: dict, n, d, c) -> np.ndarray:
    """The baseline L = w0 + wN N + wD D + wC C."""
    return (
        params["w0"]
        + params["wN"] * np.asarray(n, dtype=float)
        + params["wD"] * np.asarray(d, dtype=float)
        + params["wC"] * np.asarray(c, dtype=float)
    )
