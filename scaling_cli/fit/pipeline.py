"""Fit every requested law to every group of a table and assemble the fit.json document.

The order of work per group: fit each law on all points (laws the data cannot support are skipped with
the reason and what to add, unless asked for by name), judge whether each fitted law is identified,
allocations at the reference compute under the document's compute convention, bootstrap intervals, then
the holdout check and the backtest (when asked).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from scaling_cli import atomic
from scaling_cli.errors import FitError
from scaling_cli.fit import (
    backtest,
    bootstrap,
    chinchilla,
    constrained,
    envelope,
    holdout,
    identify,
    isoflop,
    kaplan,
    linear,
)
from scaling_cli.fit.allocation import chinchilla_allocation, compute_convention
from scaling_cli.fit.laws import chinchilla_derived, chinchilla_loss, kaplan_term, power_law
from scaling_cli.fit.table import TableOptions, load_rows

ALL_LAWS = ("chinchilla", "kaplan", "envelope", "isoflop", "linear")
KNOWN_LAWS = (*ALL_LAWS, "constrained")  # constrained: by default only where runs repeat their data
VERSION = 1


@dataclass(frozen=True)
class FitOptions:
    """What to fit and how: laws (None = every law the data supports), bootstrap, holdout, backtest, settings."""

    laws: tuple[str, ...] | None = None
    bootstrap: int = 200
    seed: int = 0
    holdout: str | None = None
    delta: float = 1e-3
    at_compute: float | None = None  # None = 10 x the largest compute of the group
    irreducible: bool = True
    budget_tolerance: float = isoflop.BUDGET_TOLERANCE
    grid: dict = field(default_factory=lambda: dict(chinchilla.CHINCHILLA_GRID))
    backtest: bool = False
    backtest_cut: float | None = None  # None = hold out the top budgets holding 15% of the points


def parse_laws(values) -> tuple[str, ...] | None:
    """Laws from repeated and comma-separated --law values; None when none given."""
    names = [name.strip() for value in values or () for name in str(value).split(",") if name.strip()]
    for name in names:
        if name not in KNOWN_LAWS:
            raise FitError("--law", name, f"unknown law; choose from {', '.join(KNOWN_LAWS)}")
    return tuple(dict.fromkeys(names)) or None


def fit_all(source, table: TableOptions | None = None, options: FitOptions | None = None) -> dict:
    """Load `source`, fit every group and return the fit.json document (see docs/internals.md)."""
    table = table or TableOptions()
    options = options or FitOptions()
    _check_options(options)
    points, runs, info = load_rows(source, table)
    where = info["table"]
    if points.empty:
        reasons = ", ".join(f"{why} {count}" for why, count in info["rows"]["excluded"].items() if count)
        raise FitError(where, "rows", f"no usable rows left (excluded: {reasons or 'none'})")
    convention = compute_convention(runs, info)
    groups = {}
    # Wild starts and resamples overflow on the way; such values are dropped or written as null, not warned.
    with np.errstate(over="ignore", divide="ignore", invalid="ignore", under="ignore"):
        for name, group_points in points.groupby("group", sort=True):
            groups[str(name)] = fit_group(group_points.reset_index(drop=True), options, where, convention)
            groups[str(name)]["lr"] = info["lr_by_group"].get(str(name))
    return clean_json(
        {
            "version": VERSION,
            "source": info["source"],
            "columns": info["columns"],
            "conventions": info["conventions"],
            "compute_convention": convention,
            "rows": info["rows"],
            "by": table.by,
            "query": table.query,
            "grouping": info["grouping"],
            "selection": {"lr_choices": info["lr_choices"], "seeds_averaged": info["seeds_averaged"]},
            "settings": {
                "laws": list(options.laws) if options.laws else "all the data supports",
                "bootstrap": options.bootstrap,
                "seed": options.seed,
                "interval": bootstrap.LEVEL,
                "holdout": options.holdout,
                "huber_delta": options.delta,
                "backtest": options.backtest,
                "envelope_points": envelope.ELIGIBLE,
                "isoflop_method": isoflop.METHOD,
            },
            "groups": groups,
        }
    )


def _check_options(options: FitOptions) -> None:
    if options.bootstrap < 0:
        raise FitError("--bootstrap", str(options.bootstrap), "must be 0 or more")
    if not options.delta > 0:
        raise FitError("--huber-delta", str(options.delta), "must be positive")
    if options.at_compute is not None and not options.at_compute > 0:
        raise FitError("--at-compute", str(options.at_compute), "must be positive")
    if options.backtest_cut is not None and not options.backtest_cut > 0:
        raise FitError("--backtest-cut", str(options.backtest_cut), "must be positive")
    if options.holdout is not None:
        holdout.parse_holdout(options.holdout)


def fit_group(points: pd.DataFrame, options: FitOptions, where: str, convention: dict | None = None) -> dict:
    """Laws, their status, allocations, intervals, holdout and backtest for one group's points.

    A group that supports no law is still an answer: `laws` is empty and `skipped` says why.
    """
    convention = convention or {"kind": "6ND"}
    at_compute = options.at_compute or 10.0 * float(points["C"].max())
    skipped: dict[str, str] = {}
    laws = fit_laws(points, options, where, options.laws or default_laws(points), skipped)
    for name, fitted in laws.items():
        _add_at_compute(name, fitted, at_compute, convention)
    if options.bootstrap:
        _add_intervals(laws, points, options, where, at_compute, convention)
        for name, fitted in laws.items():
            identify.remark_after_intervals(name, fitted, points)
    group = {
        "n_points": len(points),
        "points": points[["run_id", "N", "D", "C", "loss", "n_runs", *(["U"] if "U" in points else [])]].to_dict(
            orient="records"
        ),
        "range": fitted_range(points),
        "at_compute": at_compute,
        "laws": laws,
        "holdout": _holdout(points, options, where) if options.holdout else None,
        "skipped": skipped,
    }
    if options.backtest:
        group["backtest"] = _backtest(points, options, where, convention)
        _withhold_unidentified_recommendation(group)
    return group


def _withhold_unidentified_recommendation(group: dict) -> None:
    """A backtest refit is judged without bootstrap; when the same law fitted on all runs is not identified
    (e.g. its alpha interval reaches 0), its refit must not carry an allocation into `predict` either."""
    recommended = (group["backtest"] or {}).get("recommended")
    if not recommended or not recommended.get("fit"):
        return
    on_all_runs = group["laws"].get(recommended["law"], {})
    if on_all_runs.get("status", "ok") != "ok" and recommended["fit"].get("status") == "ok":
        recommended["fit"]["status"] = "not_identified"
        recommended["fit"]["problems"] = ["on all runs: " + p for p in on_all_runs.get("problems", [])]
        recommended["fit"].pop("at_compute", None)


def default_laws(points: pd.DataFrame) -> tuple[str, ...]:
    """Every law, plus the data-constrained one when the table has unique-token counts and some run repeats."""
    repeats = "U" in points and bool((points["D"] > points["U"]).any())
    return (*ALL_LAWS, "constrained") if repeats else ALL_LAWS


def fitted_range(points: pd.DataFrame) -> dict:
    """[min, max] of N, D, C and tokens per parameter of the points a group was fitted on."""
    ratio = points["D"] / points["N"]
    columns = {"N": points["N"], "D": points["D"], "C": points["C"], "tokens_per_param": ratio}
    return {key: [float(values.min()), float(values.max())] for key, values in columns.items()}


def fit_laws(points, options: FitOptions, where: str, names, skipped: dict) -> dict:
    """Every law in `names` that the points support, marked ok or not identified; the others go to
    `skipped` unless asked for by name."""
    fitted = {}
    for name in names:
        try:
            fitted[name] = fit_law(name, points, options, where)
        except FitError as exc:
            if options.laws and name in options.laws:
                raise
            skipped[name] = _reason(name, exc)
    return fitted


def fit_law(name: str, points: pd.DataFrame, options: FitOptions, where: str) -> dict:
    """One law on `points`, with its status; FitError when the points cannot support it."""
    return identify.mark(name, _fit_one(name, points, options, where), points)


def _fit_one(name: str, points, options: FitOptions, where: str) -> dict:
    if name == "chinchilla":
        result = chinchilla.fit_chinchilla(
            points["N"], points["D"], points["loss"], delta=options.delta, grid=options.grid, where=where
        )
        result["derived"] = chinchilla_derived(result["params"])
        return result
    if name == "kaplan":
        return kaplan.fit_kaplan(
            points, envelope.final_point_frontier(points), irreducible=options.irreducible, where=where
        )
    if name == "envelope":
        return envelope.fit_envelope(points, where=where)
    if name == "constrained":
        if "U" not in points:
            raise FitError(
                where, "constrained", "needs unique training tokens per run: a unique_tokens column (--u-col)"
            )
        return constrained.fit_constrained(
            points["N"], points["D"], points["U"], points["loss"], delta=options.delta, where=where
        )
    if name == "isoflop":
        return isoflop.fit_isoflop(points, where=where, tolerance=options.budget_tolerance)
    return linear.fit_linear(points, where=where)


def _add_at_compute(name: str, fitted: dict, at_compute: float, convention: dict) -> None:
    """The allocation (and loss, for Approach 3) each identified law predicts at the reference compute."""
    if fitted["status"] != "ok":
        return
    if name == "chinchilla":
        n_opt, d_opt = chinchilla_allocation(fitted["params"], convention, at_compute)
        fitted["at_compute"] = {
            "C": at_compute,
            "N_opt": float(n_opt),
            "D_opt": float(d_opt),
            "loss_opt": float(chinchilla_loss(fitted["params"], n_opt, d_opt)),
            "convention": convention["kind"],
        }
    elif name == "kaplan":
        c_law = fitted["L_C"]["params"]
        loss = float(kaplan_term(at_compute, c_law["C_c"], c_law["alpha_C"], c_law["E"]))
        fitted["at_compute"] = {"C": at_compute, "loss": loss}
    elif name in ("envelope", "isoflop"):
        p = fitted["params"]
        fitted["at_compute"] = {
            "C": at_compute,
            "N_opt": float(power_law(at_compute, p["N0"], p["a"])),
            "D_opt": float(power_law(at_compute, p["D0"], p["b"])),
        }


def _add_intervals(laws: dict, points, options: FitOptions, where: str, at_compute: float, convention: dict) -> None:
    indices = bootstrap.resample_indices(len(points), options.bootstrap, options.seed)
    for name, fitted in laws.items():
        if name == "chinchilla":
            extra = bootstrap.bootstrap_chinchilla(
                points,
                fitted,
                indices,
                delta=options.delta,
                grid=options.grid,
                at_compute=at_compute,
                convention=convention,
            )
        elif name == "kaplan":
            extra = bootstrap.bootstrap_kaplan(points, fitted, indices, at_compute=at_compute, where=where)
            intervals = extra.pop("intervals")
            for law in kaplan.VARIABLES:
                fitted[law]["intervals"] = intervals.pop(law)
            fitted["intervals"] = intervals
        elif name == "envelope":
            extra = bootstrap.bootstrap_envelope(points, indices, at_compute=at_compute, where=where)
        elif name == "constrained":
            extra = bootstrap.bootstrap_constrained(points, fitted, indices, delta=options.delta)
        elif name == "isoflop":
            extra = bootstrap.bootstrap_isoflop(
                points,
                options.bootstrap,
                options.seed,
                tolerance=options.budget_tolerance,
                at_compute=at_compute,
                where=where,
            )
        else:
            extra = bootstrap.bootstrap_linear(points, indices, where=where)
        fitted.update(extra)
        fitted["bootstrap"]["seed"] = options.seed


def _holdout(points, options: FitOptions, where: str) -> dict:
    rule = holdout.parse_holdout(options.holdout)
    kept, held = holdout.split(points, rule)
    scored = [law for law in (options.laws or default_laws(points)) if law in holdout.SCORED_LAWS]
    skipped: dict[str, str] = {}
    fits = {}
    for name in scored:
        try:
            fits[name] = _fit_one(name, kept.reset_index(drop=True), options, where)
        except FitError as exc:
            skipped[name] = _reason(name, exc)
    return holdout.score(held, fits, rule, len(kept), skipped)


def _backtest(points, options: FitOptions, where: str, convention: dict) -> dict:
    """The backtest of every loss-predicting law; the recommended refit gets its allocation too."""
    at_compute = options.at_compute or 10.0 * float(points["C"].max())
    try:
        result = backtest.run_backtest(
            points,
            lambda name, subset: fit_law(name, subset, options, where),
            options.laws or default_laws(points),
            options.backtest_cut,
            options.budget_tolerance,
            where,
        )
    except FitError as exc:
        return {"skipped": exc.problem}
    recommended = result["recommended"]
    if recommended and recommended.get("fit"):
        _add_at_compute(recommended["law"], recommended["fit"], at_compute, convention)
    return result


def clean_json(value):
    """Plain JSON types: numpy scalars to Python, non-finite floats to None, tuples to lists."""
    if isinstance(value, dict):
        return {str(k): clean_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [clean_json(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def write_fit(document: dict, path) -> Path:
    """Write fit.json atomically (scaling_cli.atomic: unique temporary file, fsync, rename)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic.write_text(path, json.dumps(document, indent=1, allow_nan=False) + "\n")
    except OSError as exc:
        raise FitError(str(path), "--out", f"cannot write the fit ({exc.strerror}); choose a writable path") from None
    return path


def _reason(name: str, exc: FitError) -> str:
    """The error's problem, prefixed by the part of the law it concerns (kaplan L_N) when there is one."""
    return exc.problem if exc.field == name else f"{exc.field}: {exc.problem}"
