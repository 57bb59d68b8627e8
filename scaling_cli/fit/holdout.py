"""Extrapolation check: fit on all but the highest-compute runs and score the predictions of the rest.

`--holdout` is a count (hold out that many runs with the most compute) or a FLOP threshold (hold out every
run with C at or above it): an integer below 10,000 written without a decimal point or exponent is a
count, anything else a threshold. Only laws that predict a run's loss are scored (chinchilla, kaplan,
linear); Approaches 1 and 2 predict allocations, not losses.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from scaling_cli.errors import FitError
from scaling_cli.fit import law as registry
from scaling_cli.fit.results import LawFit

MAX_COUNT = 10_000


def parse_holdout(text: str) -> tuple[str, float]:
    """('count', k) or ('flops', threshold) from the option's text."""
    text = str(text).strip()
    try:
        value = float(text)
    except ValueError:
        raise FitError("--holdout", text, "must be a run count (5) or a FLOP threshold (1e15)") from None
    if not np.isfinite(value) or value <= 0:
        raise FitError("--holdout", text, "must be positive")
    if text.isdigit() and value < MAX_COUNT:
        return "count", value
    return "flops", value


def split(points: pd.DataFrame, rule: tuple[str, float], where: str = "--holdout") -> tuple[pd.DataFrame, pd.DataFrame]:
    """(kept, held out) by the rule; FitError when either side would be empty."""
    kind, value = rule
    if kind == "count":
        order = points["C"].rank(method="first", ascending=False)
        held = order <= value
    else:
        held = points["C"] >= value
    if not held.any():
        raise FitError(where, f"{value:g}", "holds out no run")
    if held.all():
        raise FitError(where, f"{value:g}", f"holds out every run ({len(points)})")
    return points[~held], points[held]


def predict_runs(law: str, entry: dict, runs: pd.DataFrame) -> np.ndarray:
    """Each run's loss as predicted by one law's fresh fit (its entry, read as a LawFit)."""
    predictor, fitted = registry.get(law), LawFit.of(entry)
    return np.asarray(predictor.run_loss(predictor.params_of(fitted), fitted, runs), dtype=float)


def scored_laws() -> tuple[str, ...]:
    """The registered laws that predict a run's loss (Approaches 1 and 2 predict allocations only)."""
    return tuple(name for name, law in registry.registered().items() if law.predicts_loss)


def score(held: pd.DataFrame, fits: dict[str, dict], rule: tuple[str, float], kept: int, skipped: dict) -> dict:
    """Per held-out run predictions and relative errors, and each law's MAPE in percent."""
    predictions = {law: predict_runs(law, fitted, held) for law, fitted in fits.items()}
    loss = held["loss"].to_numpy(dtype=float)
    runs = []
    for i, (_, row) in enumerate(held.iterrows()):
        runs.append(
            {
                "run_id": row["run_id"],
                "N": float(row["N"]),
                "D": float(row["D"]),
                "C": float(row["C"]),
                "loss": float(row["loss"]),
                "pred": {law: float(p[i]) for law, p in predictions.items()},
                "rel_err": {law: float((p[i] - loss[i]) / loss[i]) for law, p in predictions.items()},
            }
        )
    mape = {law: float(100.0 * np.mean(np.abs(p - loss) / loss)) for law, p in predictions.items()}
    return {
        "rule": {"kind": rule[0], "value": rule[1]},
        "fitted_on": kept,
        "held_out": len(held),
        "runs": runs,
        "mape": mape,
        "skipped": skipped,
    }
