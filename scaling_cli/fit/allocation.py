"""The compute-optimal split of a FLOP budget, under the compute convention the table's C column obeys.

One convention per fit.json (`compute_convention`):
- "6ND": C = 6 N D (the table has no C column, or its C is 6 N D within 0.1%);
- "ratio_fit": C = k(N) N D with k(N) = c0 + c1 N^-p fitted to the rows' C / (N D);
- "model_formula": the same fitted k(N), for a `scale` results directory whose C is the model's
  Appendix F FLOPs: k depends on N through the embedding and attention terms.
`optimal_allocation` is what fit.json's `at_compute`, `scale predict` and `scale plot` all call, so the three
give the same N_opt at the same C by construction.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from scaling_cli.errors import FitError
from scaling_cli.fit.laws import chinchilla_derived, chinchilla_loss, power_law

SIX_ND_TOLERANCE = 1e-3
RATIO_EXPONENTS = (0.25, 0.5, 0.75, 1.0)  # candidate p of k(N) = c0 + c1 N^-p
SEARCH_HALF_WIDTH = 12.0  # ln N searched this far either side of the 6ND optimum (a factor 1.6e5)
GOLDEN_STEPS = 90  # golden-section steps: the bracket shrinks by 0.618^90, far below float precision
ALLOCATION_LAWS = ("chinchilla", "envelope", "isoflop")


def compute_convention(frame: pd.DataFrame, info: dict) -> dict:
    """The convention the rows (columns N, D, C) obey, with k(N)'s coefficients when it is fitted."""
    columns = info["columns"]
    if columns["c"] is None or columns["d"] is None:
        derived = "D = C / (6 N)" if columns["d"] is None else "C = 6 N D"
        return {"kind": "6ND", "description": f"C = 6 N D ({derived}: the table has one of C and D)"}
    n = frame["N"].to_numpy(dtype=float)
    ratio = frame["C"].to_numpy(dtype=float) / (n * frame["D"].to_numpy(dtype=float))
    if np.all(np.abs(ratio / 6.0 - 1.0) <= SIX_ND_TOLERANCE):
        return {"kind": "6ND", "description": f"C = 6 N D: the {columns['c']} column equals 6 N D on every row"}
    c0, c1, p = fit_ratio(n, ratio)
    fitted = ratio_of({"kind": "ratio_fit", "c0": c0, "c1": c1, "p": p}, n)
    from_model = columns["c"] == "flops" and str(info.get("table", "")).endswith("runs.parquet")
    kind = "model_formula" if from_model else "ratio_fit"
    what = "the model's Appendix F FLOPs" if kind == "model_formula" else f"the {columns['c']} column"
    return {
        "kind": kind,
        "description": f"C = k(N) N D, C being {what}; k(N) = c0 + c1 N^-p fitted to the rows' C / (N D)",
        "c0": c0,
        "c1": c1,
        "p": p,
        "ratio_range": [float(ratio.min()), float(ratio.max())],
        "max_rel_error": float(np.max(np.abs(fitted / ratio - 1.0))),
    }


def fit_ratio(n: np.ndarray, ratio: np.ndarray) -> tuple[float, float, float]:
    """(c0, c1, p) of ratio = c0 + c1 N^-p by relative least squares, p from RATIO_EXPONENTS.

    A single size, or a fit whose k would turn negative at large N, gives the constant mean ratio.
    """
    constant = (float(np.exp(np.mean(np.log(ratio)))), 0.0, 1.0)
    if len(np.unique(n)) < 2:
        return constant
    best, best_error = constant, np.inf
    for p in RATIO_EXPONENTS:
        design = np.column_stack([np.ones_like(n), n**-p]) / ratio[:, None]
        (c0, c1), *_ = np.linalg.lstsq(design, np.ones_like(n), rcond=None)
        error = float(np.sum((design @ [c0, c1] - 1.0) ** 2))
        if c0 > 0 and error < best_error:
            best, best_error = (float(c0), float(c1), float(p)), error
    return best


def ratio_of(convention: dict, n) -> np.ndarray:
    """k(N) = C / (N D) under the convention."""
    n = np.asarray(n, dtype=float)
    if convention["kind"] == "6ND":
        return np.full_like(n, 6.0)
    return convention["c0"] + convention["c1"] * n ** -convention["p"]


def tokens_for(convention: dict, n, c) -> np.ndarray:
    """D such that a model of N parameters trained on D tokens costs C."""
    n = np.asarray(n, dtype=float)
    return np.asarray(c, dtype=float) / (ratio_of(convention, n) * n)


def compute_of(convention: dict, n, d) -> np.ndarray:
    """C of N parameters trained on D tokens."""
    n = np.asarray(n, dtype=float)
    return ratio_of(convention, n) * n * np.asarray(d, dtype=float)


def minimise_on_budget(loss_of, convention: dict, c, log_n_guess) -> tuple[np.ndarray, np.ndarray]:
    """(N, D) minimising loss_of(N, D) subject to C = k(N) N D, by golden-section search in ln N.

    Vectorised: c and log_n_guess broadcast together with whatever arrays loss_of closes over.
    Non-finite guesses give NaN.
    """
    guess = np.asarray(log_n_guess, dtype=float)
    lo, hi = guess - SEARCH_HALF_WIDTH, guess + SEARCH_HALF_WIDTH
    shrink = (np.sqrt(5.0) - 1.0) / 2.0

    def value(log_n):
        n = np.exp(log_n)
        loss = loss_of(n, tokens_for(convention, n, c))
        return np.where(np.isfinite(loss), loss, np.inf)

    x1, x2 = hi - shrink * (hi - lo), lo + shrink * (hi - lo)
    f1, f2 = value(x1), value(x2)
    for _ in range(GOLDEN_STEPS):
        left = f1 <= f2  # the minimum lies in [lo, x2]: x1 becomes the new x2
        hi = np.where(left, x2, hi)
        lo = np.where(left, lo, x1)
        probe = np.where(left, hi - shrink * (hi - lo), lo + shrink * (hi - lo))
        f_probe = value(probe)
        x1, f1, x2, f2 = (
            np.where(left, probe, x2),
            np.where(left, f_probe, f2),
            np.where(left, x1, probe),
            np.where(left, f1, f_probe),
        )
    n = np.exp(0.5 * (lo + hi))
    return n, tokens_for(convention, n, c)


def chinchilla_allocation(params: dict, convention: dict, c) -> tuple[np.ndarray, np.ndarray]:
    """(N_opt, D_opt) of L = E + A/N^alpha + B/D^beta at compute C under the convention.

    params' values may be arrays (bootstrap samples) broadcasting with c. NaN where alpha or beta <= 0
    (no optimum) instead of complex numbers or errors.
    """
    alpha = np.asarray(params["alpha"], dtype=float)
    beta = np.asarray(params["beta"], dtype=float)
    valid = (alpha > 0) & (beta > 0)
    with np.errstate(all="ignore"):
        safe = {**params, "alpha": np.where(valid, alpha, 1.0), "beta": np.where(valid, beta, 1.0)}
        derived = chinchilla_derived(safe)
        c6 = np.asarray(c, dtype=float) / 6.0
        log_n6 = np.log(derived["G"]) + derived["a"] * np.log(c6)  # exact when C = 6 N D
        if convention["kind"] == "6ND":
            n = np.exp(log_n6)
            d = c6 / n
        else:
            n, d = minimise_on_budget(lambda nn, dd: chinchilla_loss(safe, nn, dd), convention, c, log_n6)
    nan = np.where(valid, 1.0, np.nan)
    return n * nan, d * nan


def optimal_allocation(fit_doc: dict, group: str, law: str, c) -> tuple[np.ndarray, np.ndarray]:
    """(N_opt, D_opt) at compute C (scalar or array) from one law of one group of a fit.json.

    Raises FitError when the group or law is missing or the law was not identified.
    """
    entry = _law_entry(fit_doc, group, law)
    if law == "chinchilla":
        convention = fit_doc.get("compute_convention") or {"kind": "6ND"}
        return chinchilla_allocation(entry["params"], convention, c)
    p = entry["params"]
    return power_law(c, p["N0"], p["a"]), power_law(c, p["D0"], p["b"])


def _law_entry(fit_doc: dict, group: str, law: str) -> dict:
    groups = fit_doc.get("groups") or {}
    if group not in groups:
        raise FitError("--group", str(group), f"no such group; have: {', '.join(sorted(groups))}")
    if law not in ALLOCATION_LAWS:
        raise FitError("allocation", law, f"gives no allocation; choose from {', '.join(ALLOCATION_LAWS)}")
    laws = groups[group].get("laws") or {}
    if law not in laws:
        why = (groups[group].get("skipped") or {}).get(law, "not fitted")
        raise FitError(str(group), law, f"not fitted: {why}")
    entry = laws[law]
    if entry.get("status", "ok") != "ok":
        raise FitError(str(group), law, "not identified: " + "; ".join(entry.get("problems") or []))
    return entry
