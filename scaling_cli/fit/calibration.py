"""Prediction intervals that widen with distance the way real errors do, and the error model behind them.

The error of a predicted loss, in log space, is modelled as

    ln(L_observed / L_predicted) ~ Normal(0, sigma_param^2 + sigma_run^2 + (s * r)^2),  r = max(0, ln(C / C_max))

- sigma_param: the law's parameter uncertainty at the query (spread of the bootstrap samples' predictions);
- sigma_run: the noise of one run (robust scale of the fit's own residuals);
- s: how fast the error grows per e-fold of compute beyond the largest fitted run, estimated by maximum
  likelihood from rolling backtests: the law is refitted (and bootstrapped) on the runs below several
  compute cuts inside the data and scored on the runs above each cut.
Allocations get the same treatment in ln N_opt: s_N from how far each cut's N_opt at the largest compute lies
from the full fit's. The scored runs are few: `scored` says how many, and fewer than MIN_SCORED is weak.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from scaling_cli.errors import FitError
from scaling_cli.fit.isoflop import budget_labels
from scaling_cli.fit.results import LawFit

ERROR_MODEL = (
    "ln(L_observed / L_predicted) ~ Normal(0, sigma_param^2 + sigma_run^2 + (s r)^2), r = max(0, ln(C / C_max)); "
    "ln N_opt likewise with sigma_param from the bootstrap and s_N r"
)
Z95 = 1.959964
HELD_OUT_SHARES = (0.15, 0.25, 0.35)  # rolling cuts: the top budgets holding about these shares of the runs
MIN_BELOW_SHARE = 0.5  # a cut keeps at least half of the runs to fit on
INNER_RESAMPLES = 20  # bootstrap resamples of each cut's refit (parameter uncertainty of the scored runs)
MIN_SCORED = 5  # fewer scored runs than this make the estimate of s weak
S_GRID = np.concatenate([[0.0], np.geomspace(1e-4, 2.0, 600)])


def rolling_cuts(points: pd.DataFrame, tolerance: float) -> list[float]:
    """Compute cuts at budget boundaries holding out about HELD_OUT_SHARES of the runs, smallest share first."""
    c = points["C"].to_numpy(dtype=float)
    labels = budget_labels(c, tolerance)
    starts = sorted({float(c[labels == label].min()) for label in np.unique(labels)}, reverse=True)
    cuts: list[float] = []
    for share in HELD_OUT_SHARES:
        for start in starts:
            held = int((c >= start).sum())
            if held >= max(1, round(share * len(c))):
                if len(c) - held >= MIN_BELOW_SHARE * len(c) and start not in cuts:
                    cuts.append(start)
                break
    return cuts


def robust_scale(values) -> float:
    """1.4826 x the median absolute deviation from zero (the standard deviation for Gaussian values)."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    return float(1.4826 * np.median(np.abs(values))) if values.size else float("nan")


def spread_of_logs(samples) -> float:
    """Standard deviation of ln(samples) from its central 95% (robust to the bootstrap's runaway samples)."""
    values = np.asarray(samples, dtype=float)
    values = np.log(values[np.isfinite(values) & (values > 0)])
    if values.size < 2:
        return 0.0
    low, high = np.percentile(values, [2.5, 97.5])
    return float((high - low) / (2 * Z95))


def run_noise(law, fitted: LawFit, points: pd.DataFrame) -> float:
    """sigma_run: robust scale of the law's log residuals on the points it was fitted on."""
    predicted = _loss(law, fitted, law.params_of(fitted), points)
    return robust_scale(np.log(points["loss"].to_numpy(dtype=float) / predicted))


def calibrate(law, fitted: LawFit, points: pd.DataFrame, fit_at_cut, bootstrap_at_cut, tolerance: float) -> dict:
    """The error model's s (and s_N for allocating laws) from rolling backtests, with what it rests on.

    fit_at_cut(points) -> fitted entry; bootstrap_at_cut(points, entry) -> the same with bootstrap samples.
    """
    top = float(points["C"].max())
    scored, shifts, cuts = [], [], []
    for cut in rolling_cuts(points, tolerance):
        below, above = points[points["C"] < cut], points[points["C"] >= cut]
        try:
            entry = fit_at_cut(below.reset_index(drop=True))
        except FitError:
            continue
        at_cut = LawFit.of(entry)
        cuts.append(cut)
        reach = float(np.log(top / below["C"].max()))
        if law.allocates and fitted.identified and at_cut.identified:
            shifts.append((_log_n_opt(law, at_cut, top) - _log_n_opt(law, fitted, top), reach))
        if law.predicts_loss:
            with_samples = LawFit.of(bootstrap_at_cut(below.reset_index(drop=True), entry))
            scored += _scored_errors(law, with_samples, below, above)
    result = {"model": ERROR_MODEL, "cuts": cuts, "scored": len(scored)}
    if law.predicts_loss:
        result.update(sigma_run=run_noise(law, fitted, points), **_loss_scale(scored))
    if law.allocates:
        result.update(_allocation_scale(shifts))
    result["weak"] = len(scored) < MIN_SCORED if law.predicts_loss else len(shifts) < 2
    return result


def _scored_errors(law, fitted: LawFit, below: pd.DataFrame, above: pd.DataFrame) -> list[dict]:
    params, samples = law.params_of(fitted), law.samples_of(fitted)
    noise = run_noise(law, fitted, below)
    predicted = _loss(law, fitted, params, above)
    top = float(below["C"].max())
    rows = []
    for i, (_, run) in enumerate(above.iterrows()):
        sample_losses = _loss(law, fitted, samples, run.to_frame().T, samples=True) if samples is not None else []
        rows.append(
            {
                "run_id": str(run["run_id"]),
                "r": float(np.log(run["C"] / top)),
                "error": float(np.log(run["loss"] / predicted[i])),
                "sigma_param": spread_of_logs(np.ravel(sample_losses)),
                "sigma_run": noise,
            }
        )
    return [row for row in rows if np.isfinite(row["error"])]


def _loss(law, fitted: LawFit, params, runs: pd.DataFrame, samples: bool = False) -> np.ndarray:
    """Loss of each run; with `samples` (params of arrays), one row per sample."""
    if samples:
        params = _column_params(params)
    with np.errstate(all="ignore"):
        return np.asarray(law.run_loss(params, fitted, runs.astype({k: float for k in ("N", "D", "C")})), dtype=float)


def _column_params(tree):
    """Sample arrays as (samples, 1) columns, so they broadcast against a row of runs."""
    return {
        k: _column_params(v) if isinstance(v, dict) else np.asarray(v, dtype=float)[:, None] for k, v in tree.items()
    }


def _log_n_opt(law, fitted: LawFit, c: float) -> float:
    n, _ = law.allocate(law.params_of(fitted), {"kind": "6ND"}, c)
    return float(np.log(n))


def _loss_scale(scored: list[dict]) -> dict:
    """s by maximum likelihood over the scored runs, and the share of them inside their 95% intervals."""
    if not scored:
        return {"s": None, "backtest_coverage": None, "errors": []}
    e = np.array([row["error"] for row in scored])
    r = np.array([row["r"] for row in scored])
    base = np.array([row["sigma_param"] ** 2 + row["sigma_run"] ** 2 for row in scored])
    variance = base[None, :] + (S_GRID[:, None] * r[None, :]) ** 2
    variance = np.maximum(variance, 1e-12)
    nll = 0.5 * np.sum(np.log(variance) + e**2 / variance, axis=1)
    s = float(S_GRID[int(np.argmin(nll))])
    sigma = np.sqrt(np.maximum(base + (s * r) ** 2, 1e-12))
    return {
        "s": s,
        "backtest_coverage": float(np.mean(np.abs(e) <= Z95 * sigma)),
        "mean_error": float(np.mean(e)),
        "errors": scored,
    }


def _allocation_scale(shifts: list[tuple[float, float]]) -> dict:
    if not shifts:
        return {"s_N": None}
    ratios = [shift / reach for shift, reach in shifts if reach > 0]
    return {"s_N": float(np.sqrt(np.mean(np.square(ratios)))) if ratios else None}


def loss_interval(calibration: dict | None, predicted: float, sample_losses, reach: float) -> list[float] | None:
    """The 95% prediction interval of one run's loss `reach` e-folds of compute beyond the data."""
    if not calibration or calibration.get("s") is None or not np.isfinite(predicted):
        return None
    sigma = total_sigma(spread_of_logs(sample_losses), calibration["sigma_run"], calibration["s"], reach)
    return [float(predicted * np.exp(-Z95 * sigma)), float(predicted * np.exp(Z95 * sigma))]


def size_interval(calibration: dict | None, n_opt: float, sample_sizes, reach: float) -> list[float] | None:
    """The 95% interval of N_opt: the bootstrap's spread and s_N per e-fold of extrapolation."""
    if not calibration or calibration.get("s_N") is None or not np.isfinite(n_opt):
        return None
    sigma = total_sigma(spread_of_logs(sample_sizes), 0.0, calibration["s_N"], reach)
    return [float(n_opt * np.exp(-Z95 * sigma)), float(n_opt * np.exp(Z95 * sigma))]


def total_sigma(sigma_param: float, sigma_run: float, s: float, reach: float) -> float:
    return float(np.sqrt(sigma_param**2 + sigma_run**2 + (s * max(reach, 0.0)) ** 2))
