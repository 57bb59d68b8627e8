"""The compute-optimal split of a FLOP budget, under the compute convention the table's C column obeys.

One convention per fit.json (`compute_convention`); every allocation spends exactly the C asked for under it,
C = k(N_opt) N_opt D_opt:
- "6ND": k = 6 (the table has no C column, or its C is 6 N D within 0.1%);
- "model_formula": a `scale` results directory: k(N) is the model's own Appendix F FLOPs per parameter-token
  along the sweep's shape rule (flop_rule.py), tabulated, not fitted;
- "ratio_fit": another table with a C column: k(N) = c0 + c1 N^-p fitted to the rows' C / (N D), with the
  limit c0 held at 6 or above when the rows count at least 6 FLOPs per parameter-token (Appendix F or
  6ND-style counting cannot go below it at any size).
`optimal_allocation` is what fit.json's `at_compute`, `scale predict` and `scale plot` all call, so the three
give the same N_opt at the same C by construction.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from scaling_cli.errors import FitError
from scaling_cli.fit.flop_rule import model_formula_table
from scaling_cli.fit.laws import chinchilla_derived, chinchilla_loss, power_law

SIX_ND_TOLERANCE = 1e-3
RATIO_EXPONENTS = (0.25, 0.5, 0.75, 1.0)  # candidate p of k(N) = c0 + c1 N^-p
SEARCH_HALF_WIDTH = 12.0  # ln N searched this far either side of the 6ND optimum (a factor 1.6e5)
GOLDEN_STEPS = 90  # golden-section steps: the bracket shrinks by 0.618^90, far below float precision
PHYSICAL_LIMIT = 6.0  # FLOPs per parameter-token of forward + backward matmuls: no counting goes below it


def compute_convention(frame: pd.DataFrame, info: dict) -> dict:
    """The convention the rows (columns N, D, C) obey, with k(N) tabulated or fitted when C is not 6 N D."""
    columns = info["columns"]
    if columns["c"] is None or columns["d"] is None:
        derived = "D = C / (6 N)" if columns["d"] is None else "C = 6 N D"
        return {"kind": "6ND", "description": f"C = 6 N D ({derived}: the table has one of C and D)"}
    n = frame["N"].to_numpy(dtype=float)
    ratio = frame["C"].to_numpy(dtype=float) / (n * frame["D"].to_numpy(dtype=float))
    if np.all(np.abs(ratio / 6.0 - 1.0) <= SIX_ND_TOLERANCE):
        return {"kind": "6ND", "description": f"C = 6 N D: the {columns['c']} column equals 6 N D on every row"}
    summary = {"ratio_range": [float(ratio.min()), float(ratio.max())]}
    table_path = Path(str(info.get("table", "")))
    if columns["c"] == "flops" and table_path.name == "runs.parquet":
        table = model_formula_table(table_path.parent, frame, columns["n"])
        if table is not None:
            return {
                "kind": "model_formula",
                "description": "C = k(N) N D, k(N) the model's Appendix F FLOPs per parameter-token on the "
                f"sweep's shape rule ({table['rule']}), tabulated to N = {table['N'][-1]:.3g}",
                **summary,
                "limit": table["k"][-1],
                "N": table["N"],
                "k": table["k"],
            }
    return _ratio_convention(n, ratio, columns["c"], summary)


def _ratio_convention(n: np.ndarray, ratio: np.ndarray, column: str, summary: dict) -> dict:
    c0, c1, p = fit_ratio(n, ratio)
    fitted = ratio_of({"kind": "ratio_fit", "c0": c0, "c1": c1, "p": p}, n)
    counts_matmuls = bool(ratio.min() >= PHYSICAL_LIMIT * (1 - SIX_ND_TOLERANCE))
    limit = (
        f"the limit c0 = {c0:.4g} is held at {PHYSICAL_LIMIT:g} or above: the rows count at least 6 FLOPs per "
        "parameter-token (Appendix F or 6ND-style), which no model goes below at any size"
        if counts_matmuls
        else f"the rows count fewer than {PHYSICAL_LIMIT:g} FLOPs per parameter-token: another convention, "
        "so the limit is not held"
    )
    return {
        "kind": "ratio_fit",
        "description": f"C = k(N) N D, k(N) = c0 + c1 N^-p fitted to the {column} column's C / (N D); {limit}",
        **summary,
        "c0": c0,
        "c1": c1,
        "p": p,
        "limit": c0,
        "max_rel_error": float(np.max(np.abs(fitted / ratio - 1.0))),
    }


def fit_ratio(n: np.ndarray, ratio: np.ndarray) -> tuple[float, float, float]:
    """(c0, c1, p) of ratio = c0 + c1 N^-p by relative least squares, p from RATIO_EXPONENTS.

    When every ratio is at least PHYSICAL_LIMIT, c0 (the ratio at infinite N) is held at PHYSICAL_LIMIT or
    above. A single size, or a fit whose k would turn negative at large N, gives the constant mean ratio.
    """
    constant = (float(np.exp(np.mean(np.log(ratio)))), 0.0, 1.0)
    if len(np.unique(n)) < 2:
        return constant
    floor = PHYSICAL_LIMIT if ratio.min() >= PHYSICAL_LIMIT * (1 - SIX_ND_TOLERANCE) else 0.0
    best, best_error = constant, np.inf
    for p in RATIO_EXPONENTS:
        c0, c1 = _ratio_coefficients(n, ratio, p)
        if c0 < floor:
            c0 = floor  # the free fit dips below the limit: refit c1 with c0 held there
            c1 = float(np.sum((ratio - c0) * n**-p / ratio**2) / np.sum(n ** (-2 * p) / ratio**2))
        error = float(np.sum(((c0 + c1 * n**-p) / ratio - 1.0) ** 2))
        if c0 > 0 and error < best_error:
            best, best_error = (float(c0), float(c1), float(p)), error
    return best


def _ratio_coefficients(n: np.ndarray, ratio: np.ndarray, p: float) -> tuple[float, float]:
    design = np.column_stack([np.ones_like(n), n**-p]) / ratio[:, None]
    (c0, c1), *_ = np.linalg.lstsq(design, np.ones_like(n), rcond=None)
    return float(c0), float(c1)


def ratio_of(convention: dict, n) -> np.ndarray:
    """k(N) = C / (N D) under the convention."""
    n = np.asarray(n, dtype=float)
    if convention["kind"] == "6ND":
        return np.full_like(n, 6.0)
    if "k" in convention:  # tabulated from the model's formula; the last entry holds beyond the table
        return np.interp(np.log(n), np.log(convention["N"]), convention["k"])
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


def split_from_size(params: dict, convention: dict, c) -> tuple[np.ndarray, np.ndarray]:
    """Approaches 1 and 2: N_opt = N0 C^a from the fit, D_opt = C / (k(N_opt) N_opt) from the budget.

    Two independent power laws for N_opt and D_opt would not multiply back to C (their exponents need not
    sum to 1), and extrapolation magnifies the mismatch: the budget fixes D once N is chosen.
    """
    n = power_law(c, params["N0"], params["a"])
    return n, tokens_for(convention, n, c)


def optimal_allocation(fit, group: str, law: str, c) -> tuple[np.ndarray, np.ndarray]:
    """(N_opt, D_opt) at compute C (scalar or array) from one law of one group of a fit (FitResult or document).

    Raises FitError when the group or law is missing, gives no allocation, or was not identified.
    """
    from scaling_cli.fit import law as registry  # the law modules import this one
    from scaling_cli.fit.results import FitResult

    fit = FitResult.of(fit)
    entry = _law_entry(fit, group, law)
    fitted_law = registry.get(law)
    return fitted_law.allocate(fitted_law.params_of(entry), fit.compute_convention, c)


def allocating_laws() -> tuple[str, ...]:
    """The registered laws that split a budget into N_opt and D_opt."""
    from scaling_cli.fit import law as registry

    return tuple(name for name, fitted_law in registry.registered().items() if fitted_law.allocates)


def _law_entry(fit, group: str, law: str):
    fitted_group = fit.group(group)
    if law not in allocating_laws():
        raise FitError("allocation", law, f"gives no allocation; choose from {', '.join(allocating_laws())}")
    if law not in fitted_group.laws:
        raise FitError(str(group), law, f"not fitted: {fitted_group.skipped.get(law, 'not fitted')}")
    entry = fitted_group.laws[law]
    if not entry.identified:
        raise FitError(str(group), law, "not identified: " + "; ".join(entry.problems))
    return entry
