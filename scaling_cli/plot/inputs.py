"""Gather what the figures draw: finished runs, their curves and a fit, from a results directory or a table."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from scaling_cli.errors import DataError, FitError, StoreError
from scaling_cli.fit.table import read_table

RESULTS_COLUMNS = {"n": "params", "d": "tokens", "c": "flops", "loss": "val_loss"}
BASELINES = ("lz4", "zlib", "bz2", "lzma")


@dataclass(frozen=True)
class TableColumns:
    """Column names and row selection of an external table, as `scale fit` takes them (`--n-col` ...)."""

    n: str | None = None
    d: str | None = None
    c: str | None = None
    loss: str | None = None
    query: str | None = None
    drop_highest_loss: int = 0


@dataclass
class PlotInputs:
    """Everything a figure may draw; `runs` has columns N, D, C, loss (plus whatever the source has)."""

    source: Path
    runs: pd.DataFrame
    curves: pd.DataFrame | None
    fit: dict | None
    fit_problem: str
    from_results_dir: bool


def load_inputs(
    source: Path,
    fit_path: Path | None = None,
    columns: TableColumns | None = None,
    fit_if_missing: bool = True,
) -> PlotInputs:
    """Read a results directory or a CSV/parquet table, and its fit (fitting it first when there is none)."""
    source = Path(source)
    if not source.exists():
        raise StoreError(str(source), "", "no such file or directory")
    if source.is_dir():
        return _from_results_dir(source, fit_path, fit_if_missing)
    return _from_table(source, fit_path, columns or TableColumns(), fit_if_missing)


def default_out_dir(source: Path) -> Path:
    """`<results>/figures`, or a `figures/` folder next to a table."""
    source = Path(source)
    return source / "figures" if source.is_dir() else source.parent / "figures"


def _from_results_dir(directory: Path, fit_path: Path | None, fit_if_missing: bool) -> PlotInputs:
    runs_file = directory / "runs.parquet"
    if not runs_file.is_file():
        raise StoreError(str(directory), "runs.parquet", "missing; run `scale sweep` first")
    table = _read_parquet(runs_file)
    fit, problem = _existing_fit(fit_path or (directory / "fit.json"), required=fit_path is not None)
    if fit is None and fit_if_missing:
        # One law across different data sets would mean nothing: fit each on its own.
        several = "dataset" in table.columns and table["dataset"].nunique() > 1
        fit, problem = _fit_now(directory, TableColumns(), by="dataset" if several else None)
    names = {**RESULTS_COLUMNS, **((fit or {}).get("columns") or {})}
    _require_columns(table, runs_file, ["run_id", *[names[k] for k in ("n", "c", "loss") if names[k]]])
    runs = _finished(table, names)
    curves = _curves(directory / "curves.parquet", runs)
    return PlotInputs(directory, runs, curves, fit, problem, from_results_dir=True)


def _from_table(path: Path, fit_path: Path | None, columns: TableColumns, fit_if_missing: bool) -> PlotInputs:
    table = read_table(path)
    if columns.query:
        try:
            table = table.query(columns.query)
        except (SyntaxError, NameError, KeyError, TypeError, ValueError) as exc:  # what pandas.query raises
            raise DataError("--query", columns.query, f"cannot evaluate: {exc}") from None
    names = _table_names(table, columns, path)
    if "run_id" not in table.columns:
        table = table.assign(run_id=[f"row{i}" for i in range(len(table))])
    runs = _finished(table, names)
    if columns.drop_highest_loss:
        runs = runs.drop(runs["loss"].nlargest(columns.drop_highest_loss).index).reset_index(drop=True)
    fit, problem = _existing_fit(fit_path, required=True) if fit_path else (None, "")
    if fit is None and fit_if_missing:
        fit, problem = _fit_now(path, columns)
    return PlotInputs(path, runs, None, fit, problem, from_results_dir=False)


def _table_names(table: pd.DataFrame, columns: TableColumns, path: Path) -> dict:
    """Which column holds N, D, C and loss, with `scale fit`'s defaults; D or C may be derived (C = 6ND)."""
    defaults = {"n": ["params"], "d": ["tokens"], "c": ["flops"], "loss": ["val_loss", "loss"]}
    names = {}
    for key, fallbacks in defaults.items():
        given = getattr(columns, key)
        if given is not None and given not in table.columns:
            raise DataError(f"--{key}-col", given, f"no such column in {path.name}; columns are {list(table.columns)}")
        names[key] = given or next((name for name in fallbacks if name in table.columns), None)
    for key in ("n", "loss"):
        if names[key] is None:
            raise DataError(str(path), defaults[key][0], f"missing column; name it with --{key}-col")
    if names["d"] is None and names["c"] is None:
        raise DataError(str(path), "flops", "missing column for C or D; name one with --c-col or --d-col")
    return names


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except (OSError, ValueError) as exc:
        raise StoreError(str(path), "", f"cannot read: {exc}") from None


def _require_columns(table: pd.DataFrame, where: Path, needed: list[str]) -> None:
    missing = [name for name in needed if name not in table.columns]
    if missing:
        raise StoreError(str(where), missing[0], "missing column")


def _finished(table: pd.DataFrame, names: dict) -> pd.DataFrame:
    """Rows that finished with a finite loss, with N, D, C and loss columns added; D = C/(6N) if absent."""
    if "status" in table.columns:
        table = table[table["status"].fillna("done") == "done"]
    runs = table.copy()
    runs["N"] = pd.to_numeric(runs[names["n"]], errors="coerce")
    runs["loss"] = pd.to_numeric(runs[names["loss"]], errors="coerce")
    if names.get("c") in runs.columns:
        runs["C"] = pd.to_numeric(runs[names["c"]], errors="coerce")
    if names.get("d") in runs.columns:
        runs["D"] = pd.to_numeric(runs[names["d"]], errors="coerce")
    else:
        runs["D"] = runs["C"] / (6 * runs["N"])
    if "C" not in runs.columns:
        runs["C"] = 6 * runs["N"] * runs["D"]
    keep = np.isfinite(runs[["N", "C", "D", "loss"]]).all(axis=1) & (runs["N"] > 0) & (runs["C"] > 0)
    return runs[keep].reset_index(drop=True)


def _curves(path: Path, runs: pd.DataFrame) -> pd.DataFrame | None:
    if not path.is_file():
        return None
    curves = _read_parquet(path)
    _require_columns(curves, path, ["run_id", "flops", "val_loss"])
    extra = [name for name in ("dataset",) if name in runs.columns and name not in curves.columns]
    curves = curves.merge(runs[["run_id", "N", *extra]], on="run_id", how="inner")
    curves = curves[np.isfinite(curves["val_loss"]) & (curves["flops"] > 0)]
    return curves.sort_values(["run_id", "flops"]).reset_index(drop=True)


def _existing_fit(path: Path | None, required: bool) -> tuple[dict | None, str]:
    if path is None or not Path(path).is_file():
        if required:
            raise StoreError(str(path), "", "no such fit file")
        return None, ""
    try:
        fit = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise StoreError(str(path), "", f"not a readable fit.json: {exc}") from None
    if not isinstance(fit, dict) or not isinstance(fit.get("groups"), dict):
        raise StoreError(str(path), "groups", "missing; not a fit.json written by `scale fit`")
    return fit, ""


def _fit_now(source: Path, columns: TableColumns, by: str | None = None) -> tuple[dict | None, str]:
    """Fit as `scale fit` would; when the data support no law, the reason is returned instead of a fit."""
    from scaling_cli.fit import TableOptions, fit_all

    table = TableOptions(
        n_col=columns.n,
        d_col=columns.d,
        c_col=columns.c,
        loss_col=columns.loss,
        query=columns.query,
        by=by,
        drop_highest_loss=columns.drop_highest_loss,
    )
    try:
        return fit_all(source, table), ""
    except FitError as exc:
        return None, f"no fit.json, and fitting now failed: {exc.problem}"
