"""Whether a fitted law is identified by its data: a degenerate fit is an answer ("not identified", with
one-line reasons), not a crash and not a law to extrapolate from.

A law that could not be fitted at all is not judged here: it goes to the group's `skipped` with a reason
that says what to add to the sweep. Each law says which checks apply to it (`Law.problems`, and
`Law.rejudged_with_intervals` for a law whose intervals can show it is not identified); the checks live here.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

E_FLOOR = 0.01  # an irreducible loss below this fraction of the lowest loss ran off towards zero


def problems(name: str, fitted: dict, points: pd.DataFrame) -> list[str]:
    """One-line reasons why `fitted` (a law entry of fit.json) cannot be trusted; empty when it can."""
    from scaling_cli.fit import law as registry  # the law modules import this one

    return registry.get(name).problems(fitted, points)


def mark(name: str, fitted: dict, points: pd.DataFrame) -> dict:
    """Add `status` ("ok" or "not_identified") and, when not identified, `problems` to a law entry."""
    found = problems(name, fitted, points)
    fitted["status"] = "not_identified" if found else "ok"
    if found:
        fitted["problems"] = found
    return fitted


def parametric_problems(fitted: dict, points: pd.DataFrame) -> list[str]:
    """E + A/N^alpha + B/D^beta: exponents that do not make the loss fall, an E that ran off or is too high."""
    params = fitted["params"]
    lowest = float(points["loss"].min())
    found = []
    for exponent, variable, remedy in (
        ("alpha", "N", "add larger models"),
        ("beta", "D", "add larger token budgets"),
    ):
        value = params[exponent]
        if not np.isfinite(value) or value <= 0:
            found.append(f"{exponent} = {value:.3g} <= 0: the loss does not fall with {variable}; {remedy}")
    if not np.isfinite(params["E"]) or params["E"] < E_FLOOR * lowest:
        found.append(
            f"E = {params['E']:.3g} ran off towards 0: the irreducible loss is not identified; "
            "add larger models and longer runs"
        )
    elif params["E"] >= lowest:
        found.append(f"E = {params['E']:.4g} is not below the lowest measured loss {lowest:.4g}")
    for key in ("A", "B"):
        if not np.isfinite(params[key]):
            found.append(f"{key} is not finite")
    return found


def allocation_problems(fitted: dict) -> list[str]:
    """N_opt = N0 C^a (and D_opt): an allocation that does not grow with compute."""
    found = []
    for exponent, what in (("a", "N_opt"), ("b", "D_opt")):
        value = fitted["params"][exponent]
        if not np.isfinite(value) or value <= 0:
            found.append(f"{exponent} = {value:.3g} <= 0: {what} does not grow with compute")
    return found


def kaplan_problems(fitted: dict) -> list[str]:
    """L(N), L(D), L(C): an exponent at zero, or eq. 1.5 worse than the runs' mean."""
    found = []
    for law, exponent in (("L_N", "alpha_N"), ("L_D", "alpha_D"), ("L_C", "alpha_C")):
        value = fitted[law]["params"][exponent]
        if not np.isfinite(value) or value <= 1e-6:
            found.append(f"{law}: {exponent} = {value:.3g}: the loss does not fall along this axis")
    if np.isfinite(fitted.get("r2", 0.0)) and fitted.get("r2", 0.0) < 0:
        found.append(f"eq. 1.5 predicts the runs worse than their mean loss (r2 {fitted['r2']:.3g})")
    return found


def repetition_problems(fitted: dict, points: pd.DataFrame) -> list[str]:
    """R* must lie inside the repetitions the runs made, and so must its interval's upper end once the
    bootstrap has run: beyond them it is a guess, not a measurement."""
    most = float((points["D"] / points["U"] - 1.0).max())
    r_star = fitted["params"]["R_D_star"]
    upper = ((fitted.get("intervals") or {}).get("R_D_star") or [r_star, r_star])[1]
    for what, value in (("R*", r_star), ("the upper end of R*'s interval", upper)):
        if not np.isfinite(value) or value > 10 * most:
            return [
                f"{what} = {value:.3g} beyond 10x the most repetitions run ({most:.3g}): the cost of repeating is "
                "not measured; add runs with more epochs or a source whose repetition hurts"
            ]
    return []


def remark_after_intervals(name: str, fitted: dict, points: pd.DataFrame) -> dict:
    """Judge a law again once its bootstrap intervals are known.

    A point estimate with alpha = 0.35 says little when resampling the same runs moves alpha below zero: the
    runs then cannot tell that loss falls with N at all, and the allocation built on alpha is a guess (its
    N_opt interval spans many decades). Likewise when resampling sends E to zero: the runs cannot tell the
    irreducible loss from a steeper power law, and A, alpha, B and beta trade off against it. Such a law is
    not identified, and its allocation is dropped.
    """
    from scaling_cli.fit import law as registry

    if not registry.get(name).rejudged_with_intervals:
        return fitted
    fitted.pop("problems", None)
    mark(name, fitted, points)
    found = [
        *fitted.get("problems", []),
        *_exponent_interval_problems(fitted),
        *_irreducible_interval_problems(fitted, points),
    ]
    if found:
        fitted["status"] = "not_identified"
        fitted["problems"] = found
        fitted.pop("at_compute", None)
    return fitted


def _exponent_interval_problems(fitted: dict) -> list[str]:
    intervals = fitted.get("intervals") or {}
    found = []
    for exponent, variable, remedy in (
        ("alpha", "N", "add models spanning more sizes"),
        ("beta", "D", "add token budgets spanning more"),
    ):
        low, high = (intervals.get(exponent) or [np.nan, np.nan])[:2]
        if low is not None and np.isfinite(low) and low <= 0:
            found.append(
                f"{exponent}'s interval [{low:.3g}, {high:.3g}] reaches 0: resampling the runs cannot show the "
                f"loss falling with {variable}; {remedy}"
            )
    return found


def _irreducible_interval_problems(fitted: dict, points: pd.DataFrame) -> list[str]:
    low, high = ((fitted.get("intervals") or {}).get("E") or [np.nan, np.nan])[:2]
    lowest = float(points["loss"].min())
    if low is None or not np.isfinite(low) or low >= E_FLOOR * lowest:
        return []
    return [
        f"E's interval [{low:.3g}, {high:.3g}] reaches 0: resampling the runs cannot tell the irreducible loss "
        "from zero; add larger models and longer runs"
    ]
