"""Gather what the figures draw: the fit, and the measured runs and curves it was made from.

Tables are read, their columns resolved and their rows selected by `fit.table`, the same code `scale fit`
uses, so a figure shows exactly the rows the fit saw. Plot adds only measurements the fit does not carry
(bits per byte, compressor baselines, the data set) by run id.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from scaling_cli.errors import FitError, StoreError
from scaling_cli.fit.pipeline import FitOptions
from scaling_cli.fit.results import FitResult
from scaling_cli.fit.table import TableOptions, load_curves, load_rows, read_table, resolve_source

BASELINES = ("lz4", "zlib", "bz2", "lzma")
MEASURED_EXTRAS = ("dataset", "val_bpb", "bytes_per_token", "entropy_rate_bits", *(f"bpb_{b}" for b in BASELINES))


@dataclass
class PlotInputs:
    """Everything a figure may draw.

    `runs`: the rows the fit selected, as run_id, group, N, D, C, loss plus the measured extras present.
    `curves` / `bpb_curves`: evaluation points of those runs as run_id, group, N, C, loss (bits per byte
    in `bpb_curves`), with C in the fit's FLOP convention; None for a table without curves.
    """

    source: Path
    runs: pd.DataFrame
    curves: pd.DataFrame | None
    bpb_curves: pd.DataFrame | None
    fit: FitResult | None
    fit_problem: str
    from_results_dir: bool


def load_inputs(
    source: Path,
    fit_path: Path | None = None,
    table: TableOptions | None = None,
    fit_if_missing: bool = True,
    fit_options: FitOptions | None = None,
) -> PlotInputs:
    """Read a results directory or a CSV/parquet table and its fit (fitting it now, as `scale fit` would with
    `fit_options`, when there is none)."""
    source = Path(source)
    table = table or TableOptions()
    fit_file = fit_path or (source / "fit.json" if source.is_dir() else source.with_name(f"{source.stem}.fit.json"))
    fit, problem = _existing_fit(fit_file, required=fit_path is not None)
    if fit is None and fit_if_missing:
        fit, problem = _fit_now(source, _per_data_set(source, table), fit_options)
    options = _options_of_fit(table, fit) if fit else _per_data_set(source, table)
    runs, curves, bpb_curves = _measured(source, options)
    return PlotInputs(source, runs, curves, bpb_curves, fit, problem, from_results_dir=source.is_dir())


def default_out_dir(source: Path) -> Path:
    """`<results>/figures`, or a `figures/` folder next to a table."""
    source = Path(source)
    return source / "figures" if source.is_dir() else source.parent / "figures"


def _per_data_set(source: Path, table: TableOptions) -> TableOptions:
    """One law across different data sets would mean nothing: a results directory with several is split."""
    if table.by is not None or not source.is_dir():
        return table
    runs_file, _ = resolve_source(source)
    raw = read_table(runs_file)
    several = "dataset" in raw.columns and raw["dataset"].nunique() > 1
    return replace(table, by="dataset") if several else table


def _options_of_fit(table: TableOptions, fit: FitResult) -> TableOptions:
    """The table options the fit was made with, where the command line left them unset."""
    if any(value is not None for value in (table.n_col, table.d_col, table.c_col, table.loss_col)):
        columns = {}
    else:
        columns = {f"{key}_col": fit.columns.get(key) for key in ("n", "d", "c", "loss")}
    excluded = fit.rows.get("excluded") or {}
    return replace(
        table,
        **columns,
        query=table.query if table.query is not None else fit.query,
        by=table.by if table.by is not None else fit.by,
        drop_highest_loss=table.drop_highest_loss or int(excluded.get("highest_loss") or 0),
        skip_bad_rows=table.skip_bad_rows or bool(excluded.get("non_finite")),
    )


def _measured(source: Path, options: TableOptions):
    """The fit's selected runs with their measured extras, and their curves in loss and in bits per byte."""
    _, runs, info = load_rows(source, options)
    table_path, _ = resolve_source(source)
    raw = read_table(table_path)
    runs = runs.assign(run_id=runs["run_id"].astype(str))
    extras = [name for name in MEASURED_EXTRAS if name in raw.columns and name not in runs.columns]
    if extras and "run_id" in raw.columns:
        measured = raw[["run_id", *extras]].assign(run_id=raw["run_id"].astype(str)).drop_duplicates("run_id")
        runs = runs.merge(measured, on="run_id", how="left")
    curves = load_curves(info["curves"], runs, info)
    bpb_curves = None
    if curves is not None and "val_bpb" in read_table(Path(info["curves"])).columns:
        in_bpb = {**info, "columns": {**info["columns"], "loss": "val_bpb"}}
        bpb_curves = load_curves(info["curves"], runs, in_bpb)
    return runs, _sorted(curves), _sorted(bpb_curves)


def _sorted(curves: pd.DataFrame | None) -> pd.DataFrame | None:
    if curves is None:
        return None
    curves = curves[np.isfinite(curves["loss"]) & (curves["C"] > 0)]
    return curves.sort_values(["run_id", "C"]).reset_index(drop=True)


def _existing_fit(path: Path | None, required: bool) -> tuple[FitResult | None, str]:
    from scaling_cli.fit.fitdoc import load_fit  # the one reader of fit.json

    if path is None or not Path(path).is_file():
        if required:
            raise StoreError(str(path), "", "no such fit file")
        return None, ""
    return load_fit(path), ""


def _fit_now(source: Path, table: TableOptions, options: FitOptions | None) -> tuple[FitResult | None, str]:
    """Fit as `scale fit` would; when the data support no law, the reason is returned instead of a fit."""
    from scaling_cli.fit import fit_all

    try:
        return FitResult.of(fit_all(source, table, options)), ""
    except FitError as exc:
        return None, f"no fit.json, and fitting now failed: {exc.problem}"
