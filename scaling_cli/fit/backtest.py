"""Backtest: fit each loss-predicting law on the runs below a compute cut, predict the runs above it.

Each law is tried with every point filter (all points, or only runs trained on at least t tokens per
parameter: under-trained runs follow a different curve and pull a law off). The law and filter with the
lowest error on the held-out runs is `recommended`, and the law refitted with that filter on every point
is what predict uses. The linear baseline is scored for comparison and never recommended.

The lowest of many errors scored on the same few runs is a winner's-curse estimate, so the expected error
that predict quotes is the error of the whole selection procedure (`procedure`): below each of several
rolling compute cuts, the selection is run again on those runs alone (with its own inner cut), and the law
and filter it picks are scored on the runs above the cut, which it never saw. The count of runs scored that
way is reported, and fewer than MIN_SCORED makes the estimate weak.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from scaling_cli.errors import FitError
from scaling_cli.fit import law as registry
from scaling_cli.fit.calibration import MIN_SCORED, rolling_cuts
from scaling_cli.fit.holdout import predict_runs
from scaling_cli.fit.isoflop import budget_labels

MIN_TOKENS_PER_PARAM = (1.0, 2.0, 5.0, 10.0, 20.0, 50.0)  # candidate filters
HELD_OUT_SHARE = 0.15  # the default cut holds out the top compute budgets until this share of points
MIN_COVERAGE = 0.6  # a filter must keep at least this share of the held-out runs to be scored

# fit_law(law, points) -> a law entry with "status" (raises FitError when the law cannot be fitted)
FitLaw = Callable[[str, pd.DataFrame], dict]


def default_cut(points: pd.DataFrame, tolerance: float) -> float:
    """The smallest compute of the top budgets that together hold at least HELD_OUT_SHARE of the points."""
    c = points["C"].to_numpy(dtype=float)
    labels = budget_labels(c, tolerance)
    wanted = max(1, int(np.ceil(HELD_OUT_SHARE * len(c))))
    held = np.zeros(len(c), dtype=bool)
    for label in sorted(np.unique(labels), reverse=True):
        held |= labels == label
        if held.sum() >= wanted:
            break
    return float(c[held].min())


def split(points: pd.DataFrame, cut: float, where: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(runs below the cut, runs at or above it); FitError when either side is empty."""
    above = points["C"] >= cut
    if not above.any() or above.all():
        raise FitError(
            where,
            "--backtest-cut",
            f"{cut:.3g} must leave runs on both sides (C from {points['C'].min():.3g} to {points['C'].max():.3g})",
        )
    return points[~above].reset_index(drop=True), points[above].reset_index(drop=True)


def candidate_filters(points: pd.DataFrame) -> list[float | None]:
    """None (all points) and each minimum tokens per parameter that leaves out some but not all runs."""
    ratio = (points["D"] / points["N"]).to_numpy(dtype=float)
    filters: list[float | None] = [None]
    kept_before = len(ratio)
    for threshold in MIN_TOKENS_PER_PARAM:
        kept = int((ratio >= threshold).sum())
        if 0 < kept < kept_before:
            filters.append(threshold)
            kept_before = kept
    return filters


def filter_name(threshold: float | None) -> str:
    return "all" if threshold is None else f"tokens_per_param >= {threshold:g}"


def passes(points: pd.DataFrame, threshold: float | None) -> np.ndarray:
    if threshold is None:
        return np.ones(len(points), dtype=bool)
    return (points["D"] / points["N"]).to_numpy(dtype=float) >= threshold


def run_backtest(
    points: pd.DataFrame, fit_law: FitLaw, laws, cut: float | None, tolerance: float, where: str, refit: FitLaw
) -> dict:
    """Errors of every law x filter on the held-out runs, the recommendation and its refit on all points
    (`refit`: the full fit a user acts on; `fit_law` may be a cheaper search for the scored cuts).

    Every candidate is scored on the same held-out runs, so their errors compare like with like: the runs
    that pass the strictest filter still keeping MIN_COVERAGE of them (the well-trained large runs a law
    is used to predict). Stricter filters are skipped.
    """
    result = select(points, fit_law, laws, cut, tolerance, where)
    best = result.pop("best")
    result["procedure"] = procedure_error(points, fit_law, laws, tolerance, where)
    if best is not None:
        result["recommended"] = _recommend(points, best, refit, result["procedure"])
    return result


def select(points: pd.DataFrame, fit_law: FitLaw, laws, cut: float | None, tolerance: float, where: str) -> dict:
    """Every law x filter scored at one cut, and the best (candidate, law, score) under "best"."""
    cut = default_cut(points, tolerance) if cut is None else float(cut)
    below, above = split(points, cut, where)
    laws = [law for law in laws if registry.get(law).predicts_loss]
    filters = candidate_filters(below)
    covered = [t for t in filters if passes(above, t).sum() >= MIN_COVERAGE * len(above)]
    strictest = max(covered, key=lambda t: -np.inf if t is None else t)
    test = above[passes(above, strictest)].reset_index(drop=True)
    candidates = []
    for threshold in filters:
        if threshold in covered:
            candidates.append(_score_filter(below, test, threshold, fit_law, laws))
        else:
            kept = int(passes(above, threshold).sum())
            candidates.append(
                _skipped_filter(below, threshold, laws, f"keeps only {kept} of {len(above)} held-out runs")
            )
    result = {
        "cut": cut,
        "rule": "fit on runs with C < cut, predict runs with C >= cut",
        "fitted_on": len(below),
        "held_out": len(above),
        "scored_on": f"held-out runs with {filter_name(strictest)}" if strictest is not None else "every held-out run",
        "scored": len(test),
        "C_ratio": float(above["C"].max() / below["C"].max()),
        "candidates": candidates,
        "recommended": None,
        "best": _best(candidates),
    }
    return result


def procedure_error(points: pd.DataFrame, fit_law: FitLaw, laws, tolerance: float, where: str) -> dict:
    """The selection procedure's own error: selected below each rolling cut, scored on the runs above it."""
    runs, cuts = [], []
    for cut in rolling_cuts(points, tolerance):
        below = points[points["C"] < cut].reset_index(drop=True)
        above = points[points["C"] >= cut].reset_index(drop=True)
        try:
            inner = select(below, fit_law, laws, None, tolerance, where)
        except FitError:
            continue
        if inner["best"] is None:
            continue
        candidate, law, _ = inner["best"]
        threshold = candidate["min_tokens_per_param"]
        try:
            fitted = fit_law(law, below[passes(below, threshold)].reset_index(drop=True))
        except FitError:
            continue
        test = above[passes(above, threshold)] if passes(above, threshold).sum() >= MIN_COVERAGE * len(above) else above
        predicted = np.asarray(predict_runs(law, fitted, test.reset_index(drop=True)), dtype=float)
        errors = 100.0 * np.abs(predicted - test["loss"].to_numpy(dtype=float)) / test["loss"].to_numpy(dtype=float)
        cuts.append(
            {"cut": cut, "law": law, "filter": candidate["filter"], "scored": len(test), "mape": float(np.mean(errors))}
        )
        runs += [float(e) for e in errors]
    finite = [e for e in runs if np.isfinite(e)]
    return {
        "rule": "below each rolling cut, select the law and filter as the backtest does (with an inner cut); "
        "score that choice on the runs above the cut",
        "cuts": cuts,
        "scored": len(finite),
        "mape": float(np.mean(finite)) if finite else None,
        "max_error": float(np.max(finite)) if finite else None,
        "weak": len(finite) < MIN_SCORED,
    }


def _filter_entry(below, threshold) -> dict:
    return {
        "filter": filter_name(threshold),
        "min_tokens_per_param": threshold,
        "fitted_on": int(passes(below, threshold).sum()),
        "laws": {},
        "skipped": {},
    }


def _skipped_filter(below, threshold, laws, why: str) -> dict:
    entry = _filter_entry(below, threshold)
    entry["skipped"] = {law: why for law in laws}
    return entry


def _score_filter(below, test, threshold, fit_law: FitLaw, laws) -> dict:
    train = below[passes(below, threshold)].reset_index(drop=True)
    entry = _filter_entry(below, threshold)
    for law in laws:
        try:
            fitted = fit_law(law, train)
        except FitError as exc:
            entry["skipped"][law] = exc.problem
            continue
        # A law that is not identified is still scored, so the table shows what it would have predicted,
        # but it is never recommended.
        predicted = np.asarray(predict_runs(law, fitted, test), dtype=float)
        error = np.abs(predicted - test["loss"].to_numpy(dtype=float)) / test["loss"].to_numpy(dtype=float)
        entry["laws"][law] = {
            "status": fitted.get("status", "ok"),
            "problems": fitted.get("problems", []),
            "mape": float(100.0 * np.mean(error)),
            "max_error": float(100.0 * np.max(error)),
            "runs": [
                {"run_id": r, "N": float(n), "D": float(d), "loss": float(y), "pred": float(p)}
                for r, n, d, y, p in zip(test["run_id"], test["N"], test["D"], test["loss"], predicted)
            ],
        }
    return entry


def _best(candidates: list[dict]) -> dict | None:
    """(candidate, law, score) with the lowest finite MAPE among recommendable laws; earlier filters win ties."""
    best = None
    for candidate in candidates:
        for law, scored in candidate["laws"].items():
            recommendable = registry.get(law).recommendable
            if not recommendable or scored["status"] != "ok" or not np.isfinite(scored["mape"]):
                continue
            if best is None or scored["mape"] < best[2]["mape"]:
                best = (candidate, law, scored)
    return best


def _recommend(points: pd.DataFrame, best, fit_law: FitLaw, procedure: dict) -> dict:
    candidate, law, scored = best
    threshold = candidate["min_tokens_per_param"]
    kept = points[passes(points, threshold)].reset_index(drop=True)
    recommended = {
        "law": law,
        "filter": candidate["filter"],
        "min_tokens_per_param": threshold,
        "expected_error": procedure["mape"],
        "max_error": procedure["max_error"],
        "scored": procedure["scored"],
        "weak": procedure["weak"],
        "selection_error": scored["mape"],
        "selection_note": "the lowest error among the candidates at the cut (optimistic: chosen on the runs it is "
        "scored on); expected_error is the procedure's error on runs it never saw",
        "fitted_on": len(kept),
    }
    try:
        recommended["fit"] = fit_law(law, kept)
    except FitError as exc:
        recommended["fit"] = None
        recommended["problem"] = exc.problem
    return recommended
