"""Straight-line fits in log-log space: y = scale * x^exponent, as used for N_opt(C) and D_opt(C)."""

from __future__ import annotations

import numpy as np

from scaling_cli.errors import FitError


def fit_power_law(
    x, y, *, weights=None, where: str = "fit", what: str = "power law", scale=None, exponent=None
) -> tuple[float, float]:
    """(scale, exponent) of the least-squares line log y = log scale + exponent log x; a given `scale` or
    `exponent` is held and only the other is fitted (both given: nothing is fitted).

    Needs two distinct x values; raises FitError otherwise.
    """
    log_x = np.log(np.asarray(x, dtype=float))
    log_y = np.log(np.asarray(y, dtype=float))
    distinct = len(np.unique(np.round(log_x, 12)))
    if distinct < 2:
        raise FitError(where, what, f"needs at least 2 distinct x values, got {distinct}")
    w = np.ones_like(log_x) if weights is None else np.asarray(weights, dtype=float)
    if scale is not None and exponent is not None:
        return float(scale), float(exponent)
    if exponent is not None:
        return float(np.exp(np.average(log_y - exponent * log_x, weights=w))), float(exponent)
    if scale is not None:
        shifted = log_y - np.log(scale)
        return float(scale), float(np.sum(w * shifted * log_x) / np.sum(w * log_x * log_x))
    slope, intercept = np.polyfit(log_x, log_y, 1, w=np.sqrt(w))
    return float(np.exp(intercept)), float(slope)


def r2(observed, predicted) -> float:
    """Coefficient of determination; NaN when the observations do not vary."""
    observed = np.asarray(observed, dtype=float)
    spread = ((observed - observed.mean()) ** 2).sum()
    if spread <= 0:
        return float("nan")
    return float(1.0 - ((observed - np.asarray(predicted, dtype=float)) ** 2).sum() / spread)


ALLOCATION_NAMES = ("a", "N0", "b", "D0")


def allocation_params(c, n, d, *, weights=None, where: str, law: str, fixed: dict | None = None) -> dict[str, float]:
    """N_opt = N0 C^a and D_opt = D0 C^b through compute-optimal points, holding any of a, N0, b, D0 in `fixed`."""
    fixed = fixed or {}
    for name, value in fixed.items():
        if not np.isfinite(value) or (name in ("N0", "D0") and value <= 0):
            raise FitError(where, f"--fix {name}", f"must be {'positive' if name in ('N0', 'D0') else 'finite'}")
    n0, a = fit_power_law(
        c, n, weights=weights, where=where, what=f"{law} N_opt(C)", scale=fixed.get("N0"), exponent=fixed.get("a")
    )
    d0, b = fit_power_law(
        c, d, weights=weights, where=where, what=f"{law} D_opt(C)", scale=fixed.get("D0"), exponent=fixed.get("b")
    )
    return {"a": a, "N0": n0, "b": b, "D0": d0}


ORDINALS = {2: "second", 3: "third", 4: "fourth", 5: "fifth", 6: "sixth"}


def add_more(what: str, have: int, need: int) -> str:
    """How to fix a too-small grid: 'add a third token budget', 'add 2 more model sizes'."""
    missing = need - have
    if missing == 1 and need in ORDINALS:
        return f"add a {ORDINALS[need]} {what}"
    return f"add {missing} more {what}s"
