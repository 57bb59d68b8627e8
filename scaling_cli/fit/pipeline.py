"""Fit every requested law to every group of a table and assemble the fit.json document.

The order of work per group: fit each law on all points (laws the data cannot support are skipped with
the reason and what to add, unless asked for by name), judge whether each fitted law is identified,
allocations at the reference compute under the document's compute convention, bootstrap intervals, then
the holdout check and the backtest (when asked).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from scaling_cli import atomic
from scaling_cli.errors import FitError
from scaling_cli.fit import backtest, bootstrap, calibration, chinchilla, envelope, holdout, identify, isoflop
from scaling_cli.fit import law as registry
from scaling_cli.fit.allocation import compute_convention
from scaling_cli.fit.blas import one_blas_thread
from scaling_cli.fit.results import FitResult, LawFit
from scaling_cli.fit.table import TableOptions, load_rows

VERSION = 1


# Starts of the refits a fit makes to judge itself; the fit itself searches the whole grid.
INNER_STARTS = 256


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
    fixed: dict = field(default_factory=dict)  # {parameter: value} held (not fitted, not bootstrapped): --fix
    screened_starts: int | None = None  # None = a grid law fits from every start; set for the inner refits below
    calibrate: bool = True  # the error model from rolling backtests; off where only the fit and samples are read


def parse_fixed(values) -> dict[str, float]:
    """{name: value} from repeated --fix NAME=VALUE options."""
    fixed = {}
    for value in values or ():
        name, sep, number = str(value).partition("=")
        try:
            fixed[name.strip()] = float(number)
        except ValueError:
            sep = ""
        if not sep or not name.strip():
            raise FitError("--fix", str(value), "must be NAME=VALUE with a number, e.g. --fix alpha=0.34")
    registry.check_fixed(fixed)
    return fixed


def parse_laws(values) -> tuple[str, ...] | None:
    """Laws from repeated and comma-separated --law values; None when none given."""
    names = [name.strip() for value in values or () for name in str(value).split(",") if name.strip()]
    for name in names:
        registry.get(name)  # FitError naming the registered laws when unknown
    return tuple(dict.fromkeys(names)) or None


@one_blas_thread
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
        for name, fitted in laws.items():
            if options.calibrate:
                _add_calibration(name, fitted, points, options, where, convention)
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
    """Every registered law that applies to these points (the data-constrained one only where runs repeat)."""
    return tuple(name for name, law in registry.registered().items() if law.applies_to(points))


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


def inner_options(options: FitOptions) -> FitOptions:
    """The options of the refits a fit makes to judge itself (holdout, backtest cuts, error-model cuts):
    grid laws start from the INNER_STARTS best grid points on each refit's own data, not from all of them."""
    if options.screened_starts is not None:
        return options
    return replace(options, screened_starts=INNER_STARTS)


def _fit_one(name: str, points, options: FitOptions, where: str) -> dict:
    return registry.get(name).fit(points, options, where)


def _add_at_compute(name: str, fitted: dict, at_compute: float, convention: dict) -> None:
    """The allocation (and loss, for laws that predict one) each identified law gives at the reference
    compute, and the local exponents of its allocation under the document's convention."""
    if fitted["status"] != "ok":
        return
    law, typed = registry.get(name), LawFit.of(fitted)
    entry = law.at_compute(typed, convention, at_compute)
    if entry is not None:
        fitted["at_compute"] = entry
    if law.allocates:
        a, b = allocation_exponents(law, law.params_of(typed), convention, at_compute)
        fitted["allocation_exponents"] = {
            "C": at_compute,
            "a": float(a),
            "b": float(b),
            "convention": convention["kind"],
            "relation": "D_opt = C / (k(N_opt) N_opt): a + b = 1 - d ln k / d ln C (exactly 1 under 6ND)",
        }
    if "derived_6ND" in fitted:
        # N_opt = G (C/6)^a holds only under 6ND; under another convention a and b are the local exponents.
        six_nd = convention["kind"] == "6ND"
        local = fitted["allocation_exponents"]
        fitted["derived"] = {"a": local["a"], "b": local["b"], **({"G": fitted["derived_6ND"]["G"]} if six_nd else {})}


def allocation_exponents(law, params, convention: dict, c: float):
    """(a, b) = d ln N_opt / d ln C and d ln D_opt / d ln C at C under the convention; params may be samples."""
    step = 0.05  # central difference over C x e^(+-0.05)
    with np.errstate(all="ignore"):
        (n_lo, d_lo), (n_hi, d_hi) = (law.allocate(params, convention, c * np.exp(s)) for s in (-step, step))
        return (np.log(n_hi) - np.log(n_lo)) / (2 * step), (np.log(d_hi) - np.log(d_lo)) / (2 * step)


def _add_intervals(laws: dict, points, options: FitOptions, where: str, at_compute: float, convention: dict) -> None:
    indices = bootstrap.resample_indices(len(points), options.bootstrap, options.seed)
    context = {"options": options, "where": where, "at_compute": at_compute, "convention": convention}
    for name, fitted in laws.items():
        law = registry.get(name)
        fitted.update(law.bootstrap(points, fitted, indices, context))
        fitted["bootstrap"]["seed"] = options.seed
        samples = law.samples_of(LawFit.of(fitted))
        if law.allocates and "derived" in fitted and samples:
            a, b = allocation_exponents(law, samples, convention, at_compute)
            fitted["intervals"].update(a=bootstrap.interval(a), b=bootstrap.interval(b))


def _add_calibration(name: str, fitted: dict, points, options: FitOptions, where: str, convention: dict) -> None:
    """The error model of an identified law that predicts losses or allocations (calibration.py)."""
    law = registry.get(name)
    if fitted.get("status", "ok") != "ok" or not (law.recommendable or law.allocates):
        return
    fitted["calibration"] = calibration.calibrate(
        law,
        LawFit.of(fitted),
        points,
        lambda subset: fit_law(name, subset, inner_options(options), where),
        lambda subset, at_cut: _with_inner_bootstrap(law, subset, at_cut, options, where, convention),
        options.budget_tolerance,
    )


def _with_inner_bootstrap(law, points, fitted: dict, options: FitOptions, where: str, convention: dict) -> dict:
    """A cut's refit with a small bootstrap of its own, for the parameter uncertainty of the runs it predicts."""
    indices = bootstrap.resample_indices(len(points), calibration.INNER_RESAMPLES, options.seed)
    context = {"options": options, "where": where, "at_compute": float(points["C"].max()), "convention": convention}
    return {**fitted, **law.bootstrap(points, fitted, indices, context)}


def _holdout(points, options: FitOptions, where: str) -> dict:
    rule = holdout.parse_holdout(options.holdout)
    kept, held = holdout.split(points, rule)
    scored = [law for law in (options.laws or default_laws(points)) if law in holdout.scored_laws()]
    skipped: dict[str, str] = {}
    fits = {}
    for name in scored:
        try:
            fits[name] = _fit_one(name, kept.reset_index(drop=True), inner_options(options), where)
        except FitError as exc:
            skipped[name] = _reason(name, exc)
    return holdout.score(held, fits, rule, len(kept), skipped)


def _backtest(points, options: FitOptions, where: str, convention: dict) -> dict:
    """The backtest of every loss-predicting law; the recommended refit gets its allocation too."""
    at_compute = options.at_compute or 10.0 * float(points["C"].max())
    try:
        result = backtest.run_backtest(
            points,
            lambda name, subset: fit_law(name, subset, inner_options(options), where),
            options.laws or default_laws(points),
            options.backtest_cut,
            options.budget_tolerance,
            where,
            refit=lambda name, subset: fit_law(name, subset, options, where),
        )
    except FitError as exc:
        return {"skipped": exc.problem}
    recommended = result["recommended"]
    if recommended and recommended.get("fit"):
        name, fitted = recommended["law"], recommended["fit"]
        _add_at_compute(name, fitted, at_compute, convention)
        kept = points[backtest.passes(points, recommended["min_tokens_per_param"])].reset_index(drop=True)
        if options.bootstrap and fitted.get("status") == "ok":
            _add_intervals({name: fitted}, kept, options, where, at_compute, convention)
            _add_calibration(name, fitted, kept, options, where, convention)
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


def write_fit(fit: FitResult | dict, path) -> Path:
    """Write the fit's results as fit.json atomically (scaling_cli.atomic: unique temporary file, fsync, rename).

    `fit_all`'s document is checked into a FitResult first, so what is written is what `load_fit` accepts.
    """
    path = Path(path)
    document = FitResult.of(fit).to_json()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic.write_text(path, json.dumps(document, indent=1, allow_nan=False) + "\n")
    except OSError as exc:
        raise FitError(str(path), "--out", f"cannot write the fit ({exc.strerror}); choose a writable path") from None
    return path


def _reason(name: str, exc: FitError) -> str:
    """The error's problem, prefixed by the part of the law it concerns (kaplan L_N) when there is one."""
    return exc.problem if exc.field == name else f"{exc.field}: {exc.problem}"
