"""Read a fit.json for drawing: pick the group, evaluate its laws on grids, and express its uncertainty."""

from __future__ import annotations

import numpy as np


def primary_group(fit: dict | None) -> tuple[str, dict] | None:
    """The group a single-panel figure draws: 'all' when present, else the one fitted on the most points."""
    groups = (fit or {}).get("groups") or {}
    if not groups:
        return None
    if "all" in groups:
        return "all", groups["all"]
    name = max(groups, key=lambda key: groups[key].get("n_points") or 0)
    return name, groups[name]


def law(group: dict | None, name: str) -> dict | None:
    """One law's entry of a group, or None when it was not fitted."""
    laws = (group or {}).get("laws") or {}
    entry = laws.get(name)
    return entry if isinstance(entry, dict) and entry else None


def skipped_reason(group: dict | None, name: str) -> str:
    """Why the fit left a law out, as the fit recorded it."""
    return str(((group or {}).get("skipped") or {}).get(name) or "")


def chinchilla_loss(params: dict, sizes, tokens):
    """L(N, D) of the fitted parametric law (evaluated by the fitting module itself)."""
    from scaling_cli.fit.laws import chinchilla_loss as evaluate

    return np.asarray(evaluate(params, np.asarray(sizes, dtype=float), np.asarray(tokens, dtype=float)))


def chinchilla_optimum(params: dict, compute) -> tuple[np.ndarray, np.ndarray]:
    """(N_opt, D_opt) of the parametric law at compute C, under C = 6ND."""
    from scaling_cli.fit.laws import chinchilla_optimum as optimum

    sizes, tokens = optimum(params, np.asarray(compute, dtype=float))
    return np.asarray(sizes, dtype=float), np.asarray(tokens, dtype=float)


def kaplan_compute_loss(kaplan: dict, compute) -> np.ndarray | None:
    """Kaplan's L(C) = E + (C_c / C)^alpha_C on the frontier, or None when it was not fitted."""
    from scaling_cli.fit.laws import kaplan_term

    params = ((kaplan or {}).get("L_C") or {}).get("params")
    if not params:
        return None
    return np.asarray(kaplan_term(compute, params["C_c"], params["alpha_C"], params.get("E", 0.0)))


def power_law(prefactor: float, exponent: float, compute) -> np.ndarray:
    """`prefactor * C**exponent`, the form of N_opt(C) and D_opt(C) in fit.json."""
    return float(prefactor) * np.asarray(compute, dtype=float) ** float(exponent)


def exponent_band(
    line: np.ndarray, compute: np.ndarray, interval, exponent: float, pivot: float
) -> tuple[np.ndarray, np.ndarray] | None:
    """The spread of a power law whose exponent lies in `interval`, pivoting where the data are densest.

    fit.json stores percentile intervals of each exponent, not the bootstrap fits themselves. Slope
    and intercept of a log-log fit are nearly uncorrelated at the data's centre in log C, so turning
    the slope about that point reproduces the bootstrap band: narrow in the data, fanning out beyond.
    """
    if not interval or len(interval) != 2 or not np.all(np.isfinite(interval)):
        return None
    ratio = np.asarray(compute, dtype=float) / pivot
    ends = [line * ratio ** (float(bound) - float(exponent)) for bound in interval]
    return np.minimum(*ends), np.maximum(*ends)


def isoflop_curve(coef, sizes) -> np.ndarray:
    """Loss of an IsoFLOP parabola at `sizes` (coefficients highest power first, in natural log N)."""
    return np.polyval(np.asarray(coef, dtype=float), np.log(np.asarray(sizes, dtype=float)))
