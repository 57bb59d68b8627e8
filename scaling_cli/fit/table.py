"""Load the rows a fit uses: read a results directory or a table, name N, D, C and loss, and select rows.

Selection, in order: `--query`, run status (diverged and failed runs out), non-finite or non-positive
values out, the k highest losses out (when asked), the best lr per (N, D) where runs differ only in lr,
then seeds averaged into one point per (N, D). Every exclusion is counted and every lr choice reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from scaling_cli.errors import FitError

PARAM_CHOICES = {
    "params": "params (with embeddings)",
    "params_nonembed": "params_nonembed (without embeddings)",
}
FLOP_CHOICES = {"flops": "flops (Chinchilla Appendix F)", "flops_6nd": "flops_6nd (6 N D)"}
BAD_STATUS = ("diverged", "failed")


@dataclass(frozen=True)
class TableOptions:
    """How to read a table: column names (None = the results-directory defaults) and row selection."""

    n_col: str | None = None
    d_col: str | None = None
    c_col: str | None = None
    loss_col: str | None = None
    query: str | None = None
    params: str = "params"
    flops: str = "flops"
    by: str | None = None
    drop_highest_loss: int = 0


TABLE_SUFFIXES = (".parquet", ".csv", ".tsv", ".txt")  # .txt is read as CSV


def resolve_source(source) -> tuple[Path, Path | None]:
    """(table path, curves path or None) for a results directory or a .parquet/.csv file."""
    path = Path(source)
    if path.is_dir():
        runs = path / "runs.parquet"
        if not runs.is_file():
            raise FitError(str(path), "runs.parquet", "not found in this results directory")
        curves = path / "curves.parquet"
        return runs, curves if curves.is_file() else None
    if not path.exists():
        raise FitError(str(path), "", "no such file or directory")
    _check_table_suffix(path)
    return path, None


def _check_table_suffix(path: Path) -> None:
    if path.suffix.lower() not in TABLE_SUFFIXES:
        raise FitError(str(path), "", "unsupported table format; use a results directory, .parquet, .csv or .tsv")


def read_table(path: Path) -> pd.DataFrame:
    """Read a parquet, CSV or TSV file into a DataFrame, as FitError when unreadable."""
    _check_table_suffix(path)
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            return pd.read_parquet(path)
        return pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",")
    except (OSError, ValueError) as exc:  # pyarrow's and pandas' parse errors derive from these
        raise FitError(str(path), "", f"cannot read table: {exc}") from None


def load_table(source, options: TableOptions | None = None) -> tuple[pd.DataFrame, dict]:
    """Read `source` and return (points, info).

    points has one row per (group, N, D) with columns run_id, group, N, D, C, loss, n_runs; info
    records the source, the columns used, the conventions, the row counts and the lr choices.
    """
    points, _, info = load_rows(source, options)
    return points, info


def load_rows(source, options: TableOptions | None = None) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """(points, runs, info): as load_table, plus the selected runs before seed averaging."""
    options = options or TableOptions()
    _check_choices(options)
    table_path, curves_path = resolve_source(source)
    raw = read_table(table_path)
    columns = resolve_columns(raw.columns, options, str(table_path))
    selected, excluded = select_rows(raw, columns, options, str(table_path))
    frame = _standard_frame(selected, columns, options)
    frame, lr_choices, lr_dropped = _best_lr(frame)
    excluded["lr_not_best"] = lr_dropped
    points = _average_seeds(frame)
    info = {
        "source": str(source),
        "table": str(table_path),
        "curves": str(curves_path) if curves_path else None,
        "columns": {key: columns[key] for key in ("n", "d", "c", "loss")},
        "conventions": _conventions(columns, options),
        "rows": {"total": len(raw), "used": len(frame), "excluded": excluded},
        "seeds_averaged": int(len(frame) - len(points)),
        "lr_choices": lr_choices,
        "query": options.query,
        "by": options.by,
    }
    return points, frame, info


def _check_choices(options: TableOptions) -> None:
    if options.params not in PARAM_CHOICES:
        raise FitError("--params", options.params, f"must be one of {', '.join(PARAM_CHOICES)}")
    if options.flops not in FLOP_CHOICES:
        raise FitError("--flops", options.flops, f"must be one of {', '.join(FLOP_CHOICES)}")
    if options.drop_highest_loss < 0:
        raise FitError("--drop-highest-loss", str(options.drop_highest_loss), "must be 0 or more")


def resolve_columns(table_columns, options: TableOptions | None, where: str) -> dict:
    """Map n, d, c, loss to the names of `table_columns`; None for d or c means derived from C = 6 N D.

    The one column resolver of the project (`fit` and `plot` both use it): explicit names must exist,
    otherwise the results-directory defaults (params, tokens, flops, val_loss or loss) are taken when present.
    """
    options = options or TableOptions()
    have = list(table_columns)

    def pick(given, default, role, required):
        if given is not None:
            if given not in have:
                raise FitError(where, given, f"missing column; have: {', '.join(map(str, have))}")
            return given
        for name in default:
            if name in have:
                return name
        if required:
            raise FitError(where, default[0], f"missing column for {role}; have: {', '.join(map(str, have))}")
        return None

    columns = {
        "n": pick(options.n_col, [options.params], "N (use --n-col)", True),
        "d": pick(options.d_col, ["tokens"], "D", False),
        "c": pick(options.c_col, [options.flops], "C", False),
        "loss": pick(options.loss_col, ["val_loss", "loss"], "loss (use --loss-col)", True),
    }
    if columns["d"] is None and columns["c"] is None:
        raise FitError(
            where,
            "tokens",
            f"missing column for D or C (use --d-col or --c-col); have: {', '.join(map(str, have))}",
        )
    if options.by is not None and options.by not in have:
        raise FitError("--by", options.by, f"missing column; have: {', '.join(map(str, have))}")
    return columns


def select_rows(raw: pd.DataFrame, columns: dict, options: TableOptions, where: str) -> tuple[pd.DataFrame, dict]:
    """(rows kept, {reason: count excluded}): --query, diverged/failed status, non-finite or non-positive
    N, D, C or loss, and the k highest losses (--drop-highest-loss), in that order."""
    excluded = {"query": 0, "diverged": 0, "failed": 0, "non_finite": 0, "highest_loss": 0}
    rows = raw
    if options.query:
        try:
            rows = rows.query(options.query)
        except (SyntaxError, NameError, KeyError, TypeError, ValueError, AttributeError) as exc:
            raise FitError("--query", options.query, f"cannot evaluate: {exc}") from None
        excluded["query"] = int(len(raw) - len(rows))
    if "status" in rows.columns:
        status = rows["status"].astype(str)
        for bad in BAD_STATUS:
            excluded[bad] = int((status == bad).sum())
        rows = rows[~status.isin(BAD_STATUS)]
    numeric = [
        rows[c].pipe(pd.to_numeric, errors="coerce")
        for c in (columns["n"], columns["d"], columns["c"], columns["loss"])
        if c
    ]
    good = np.ones(len(rows), dtype=bool)
    for values in numeric:
        array = values.to_numpy(dtype=float)
        good &= np.isfinite(array) & (array > 0)
    excluded["non_finite"] = int((~good).sum())
    rows = rows[good]
    if options.drop_highest_loss:
        keep = rows[columns["loss"]].astype(float).rank(method="first", ascending=False) > options.drop_highest_loss
        excluded["highest_loss"] = int((~keep).sum())
        rows = rows[keep]
    return rows, excluded


def _standard_frame(rows: pd.DataFrame, columns: dict, options: TableOptions) -> pd.DataFrame:
    """Rows renamed to run_id, group, N, D, C, loss (plus lr and seed when present)."""
    n = rows[columns["n"]].astype(float).to_numpy()
    d = rows[columns["d"]].astype(float).to_numpy() if columns["d"] else None
    c = rows[columns["c"]].astype(float).to_numpy() if columns["c"] else None
    frame = pd.DataFrame(
        {
            "run_id": rows["run_id"].astype(str).to_numpy()
            if "run_id" in rows.columns
            else [f"row{i}" for i in rows.index],
            "group": rows[options.by].astype(str).to_numpy() if options.by else "all",
            "N": n,
            "D": d if d is not None else c / (6.0 * n),
            "C": c if c is not None else 6.0 * n * d,
            "loss": rows[columns["loss"]].astype(float).to_numpy(),
        }
    )
    for extra in ("lr", "seed"):
        if extra in rows.columns:
            frame[extra] = rows[extra].to_numpy()
    return frame


def _best_lr(frame: pd.DataFrame) -> tuple[pd.DataFrame, list[dict], int]:
    """Keep, for each (group, N, D), the lr with the lowest seed-mean loss; report each choice."""
    if "lr" not in frame.columns or frame["lr"].nunique() < 2:
        return frame, [], 0
    mean = frame.groupby(["group", "N", "D", "lr"], sort=True)["loss"].mean().reset_index()
    choices, keep = [], []
    for (group, n, d), options in mean.groupby(["group", "N", "D"], sort=True):
        best = options.loc[options["loss"].idxmin()]
        keep.append((group, n, d, best["lr"]))
        if len(options) > 1:
            choices.append(
                {
                    "group": group,
                    "N": float(n),
                    "D": float(d),
                    "lr": float(best["lr"]),
                    "losses": {repr(float(lr)): float(loss) for lr, loss in zip(options["lr"], options["loss"])},
                }
            )
    kept = frame.merge(pd.DataFrame(keep, columns=["group", "N", "D", "lr"]), on=["group", "N", "D", "lr"])
    return kept, choices, int(len(frame) - len(kept))


def _average_seeds(frame: pd.DataFrame) -> pd.DataFrame:
    """One point per (group, N, D): losses and compute averaged over seeds, the first run id kept."""
    grouped = frame.groupby(["group", "N", "D"], sort=True)
    points = grouped.agg(run_id=("run_id", "first"), C=("C", "mean"), loss=("loss", "mean"), n_runs=("loss", "size"))
    return points.reset_index()[["run_id", "group", "N", "D", "C", "loss", "n_runs"]]


def _conventions(columns: dict, options: TableOptions) -> dict:
    n = PARAM_CHOICES.get(columns["n"], columns["n"])
    c = FLOP_CHOICES.get(columns["c"], columns["c"]) if columns["c"] else "C = 6 N D (derived)"
    d = columns["d"] if columns["d"] else "D = C / (6 N) (derived)"
    return {"n": n, "d": d, "c": c}


def load_curves(curves_path: str | None, runs: pd.DataFrame, info: dict) -> pd.DataFrame | None:
    """Evaluation points of the used runs as run_id, N, C, D, loss; C uses the run's FLOPs per token.

    Scaling each run's token count by its own C/D keeps the curves in the chosen FLOP convention.
    """
    if not curves_path:
        return None
    curves = read_table(Path(curves_path))
    loss_col = info["columns"]["loss"] if info["columns"]["loss"] in curves.columns else "val_loss"
    for needed in ("run_id", "tokens", loss_col):
        if needed not in curves.columns:
            raise FitError(curves_path, needed, f"missing column; have: {', '.join(map(str, curves.columns))}")
    runs = runs[["run_id", "group", "N", "D", "C"]].drop_duplicates("run_id")
    merged = curves.assign(run_id=curves["run_id"].astype(str)).merge(runs, on="run_id", suffixes=("_curve", ""))
    tokens = pd.to_numeric(merged["tokens"], errors="coerce").to_numpy(dtype=float)
    loss = pd.to_numeric(merged[loss_col], errors="coerce").to_numpy(dtype=float)
    frame = pd.DataFrame(
        {
            "run_id": merged["run_id"],
            "group": merged["group"],
            "N": merged["N"],
            "D": tokens,
            "C": tokens * (merged["C"] / merged["D"]).to_numpy(),
            "loss": loss,
        }
    )
    good = np.isfinite(frame["loss"]) & np.isfinite(frame["C"]) & (frame["C"] > 0)
    return frame[good].reset_index(drop=True)
