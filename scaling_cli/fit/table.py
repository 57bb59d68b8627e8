"""Load the rows a fit uses: read a results directory or a table, name N, D, C and loss, and select rows.

Selection, in order: `--query`, run status (diverged and failed runs out, and done runs whose loss is past
the divergence limit for their vocabulary), bad values (not a positive finite number: an error naming the
row and column, unless `skip_bad_rows`), the k highest losses out (when asked). Then runs are grouped
honestly: only seeds are ever averaged. A configuration axis (batch size, data set, tokenizer, schedule,
...) that takes several values for the same (N, D) splits the table into groups; the learning rate and the
model shape at equal N are selected (the best seed-mean loss per (group, N, D)), and every choice is reported."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from scaling_cli.divergence import loss_limit
from scaling_cli.errors import FitError
from scaling_cli.fit.lr_grid import SELECT_AXES, cell_keys, lr_by_size

PARAM_CHOICES = {
    "params": "params (with embeddings)",
    "params_nonembed": "params_nonembed (without embeddings)",
}
FLOP_CHOICES = {"flops": "flops (Chinchilla Appendix F)", "flops_6nd": "flops_6nd (6 N D)"}
BAD_STATUS = ("diverged", "failed")
# Axes that define a different experiment: varying within one (N, D), each value becomes its own group.
GROUP_AXES = ("dataset", "tokenizer", "vocab_size", "seq_len", "batch_size", "schedule")
UNIQUE_DATA_OPTIONS = ("max_train_bytes",)  # data options that only cap the unique training data


@dataclass(frozen=True)
class TableOptions:
    """How to read a table: column names (None = the results-directory defaults) and row selection."""

    n_col: str | None = None
    d_col: str | None = None
    c_col: str | None = None
    loss_col: str | None = None
    u_col: str | None = None  # unique training tokens (default: unique_tokens when present)
    query: str | None = None
    params: str = "params"
    flops: str = "flops"
    by: str | None = None
    drop_highest_loss: int = 0
    skip_bad_rows: bool = False  # drop rows with a bad N, D, C or loss instead of refusing the table


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
    raw = read_table(table_path).reset_index(drop=True)  # row k of the messages is position k - 1
    columns = resolve_columns(raw.columns, options, str(table_path))
    selected, excluded = select_rows(raw, columns, options, str(table_path))
    bad_rows = excluded.pop("bad_rows")
    frame = _standard_frame(selected, columns, options)
    frame, grouping = _split_groups(frame, options.by)
    lr_by_group = lr_by_size(frame, _diverged_runs(raw, columns, options, grouping))
    frame, lr_choices, lr_dropped = _select_best(frame, grouping["selected"])
    excluded["lr_not_best"] = lr_dropped
    points = _average_seeds(frame)
    grouping["averaged"] = ["seed"] if "seed" in frame.columns else ["repeated rows of the same (N, D)"]
    info = {
        "source": str(source),
        "table": str(table_path),
        "curves": str(curves_path) if curves_path else None,
        "columns": {key: columns[key] for key in ("n", "d", "c", "loss", "u") if key != "u" or columns["u"]},
        "conventions": _conventions(columns, options),
        "rows": {"total": len(raw), "used": len(frame), "excluded": excluded, "bad_rows": bad_rows},
        "seeds_averaged": int(len(frame) - len(points)),
        "lr_choices": lr_choices,
        "lr_by_group": lr_by_group,
        "grouping": grouping,
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
        "u": pick(options.u_col, ["unique_tokens"], "U", False),
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
    """(rows kept, {reason: count excluded}): --query, diverged/failed status (and losses past the divergence
    limit), bad N, D, C or loss values (FitError naming the first, unless skip_bad_rows), and the k highest
    losses (--drop-highest-loss), in that order. `bad_rows` lists the skipped values' messages."""
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
        blown = _past_divergence_limit(rows, columns["loss"])
        excluded["diverged"] += int(blown.sum())
        rows = rows[~blown]
    good, problems = _bad_values(rows, columns)
    if problems and not options.skip_bad_rows:
        raise FitError(where, *_first_problem(problems))
    excluded["non_finite"] = int((~good).sum())
    excluded["bad_rows"] = [f"{field}: {problem}" for field, problem in problems[:BAD_ROWS_KEPT]]
    rows = rows[good]
    if options.drop_highest_loss:
        keep = rows[columns["loss"]].astype(float).rank(method="first", ascending=False) > options.drop_highest_loss
        excluded["highest_loss"] = int((~keep).sum())
        rows = rows[keep]
    return rows, excluded


BAD_ROWS_KEPT = 20  # skipped bad values named in fit.json; the count covers the rest


def _past_divergence_limit(rows: pd.DataFrame, loss_column: str) -> np.ndarray:
    """Rows of a results directory recorded done whose loss (nats) is past the divergence limit for their
    vocabulary: runs that blew up before the trainer judged losses."""
    if loss_column not in ("val_loss", "train_loss") or "vocab_size" not in rows.columns:
        return np.zeros(len(rows), dtype=bool)
    vocab = pd.to_numeric(rows["vocab_size"], errors="coerce").to_numpy(dtype=float)
    loss = pd.to_numeric(rows[loss_column], errors="coerce").to_numpy(dtype=float)
    ok = np.isfinite(vocab) & (vocab > 1)
    limit = np.where(ok, [loss_limit(int(v)) if good else np.inf for v, good in zip(vocab, ok)], np.inf)
    return loss > limit


def _bad_values(rows: pd.DataFrame, columns: dict) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """(mask of rows whose N, D, C and loss are positive finite numbers, [(field, problem)] for the others)
    with fields 'row k, <column>' (k counts data rows from 1, the header not counted)."""
    good = np.ones(len(rows), dtype=bool)
    problems = []
    for column in dict.fromkeys(c for c in (columns["n"], columns["d"], columns["c"], columns["loss"]) if c):
        values = pd.to_numeric(rows[column], errors="coerce").to_numpy(dtype=float)
        bad = ~(np.isfinite(values) & (values > 0))
        good &= ~bad
        for position in np.flatnonzero(bad):
            label, value = rows.index[position], rows[column].iloc[position]
            problems.append((f"row {label + 1}, {column}", _value_problem(value, values[position])))
    problems.sort(key=lambda item: int(item[0].split(",")[0].removeprefix("row ")))
    return good, problems


def _value_problem(raw_value, number: float) -> str:
    """Why one cell is not usable, in words a reader of the table recognises."""
    if pd.isna(raw_value) or (isinstance(raw_value, str) and not raw_value.strip()):
        return "empty; need a positive number"
    shown = raw_value.strip() if isinstance(raw_value, str) else f"{number:g}"
    if np.isnan(number):
        return f"{shown!r} is not a number"
    if not np.isfinite(number):
        return f"{shown} is not a finite number"
    return f"{shown} is not a positive number"


def _first_problem(problems: list[tuple[str, str]]) -> tuple[str, str]:
    """The first bad value as (field, problem); how many more, and the way past them, in the problem."""
    field, problem = problems[0]
    more = len(problems) - 1
    extra = f" ({more} more bad value{'s' * (more != 1)})" if more else ""
    return field, f"{problem}{extra}; fix the table or pass --skip-bad-rows to leave such rows out"


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
    if columns.get("u"):
        # No (or no positive) unique-token count means the run saw fresh data: U = D, no repetition.
        unique = pd.to_numeric(rows[columns["u"]], errors="coerce").to_numpy(dtype=float)
        frame["U"] = np.where(np.isfinite(unique) & (unique > 0), unique, frame["D"])
    if "params_nonembed" in rows.columns:  # Kaplan's N, kept beside whichever N the other laws use
        frame["N_nonembed"] = pd.to_numeric(rows["params_nonembed"], errors="coerce").to_numpy(dtype=float)
    for extra in ("seed", *GROUP_AXES, *SELECT_AXES):
        if extra in rows.columns and extra != options.by:
            frame[extra] = rows[extra].to_numpy()
    return frame


def _varying_within_cells(frame: pd.DataFrame, axes, keys: list[str] | None = None) -> list[str]:
    """The axes among `axes` that take more than one value for some cell (default: cell_keys)."""
    present = [axis for axis in axes if axis in frame.columns]
    if not present or frame.empty:
        return []
    counts = frame.groupby(keys or cell_keys(frame), sort=False)[present].nunique(dropna=False).max()
    return [axis for axis in present if counts[axis] > 1]


def without_unique_cap(dataset) -> str:
    """A data set variant's name without the options that only cap its unique data ('markov?max_train_bytes=768'
    -> 'markov'): with a unique_tokens column, U itself tells such variants apart."""
    base, mark, query = str(dataset).rpartition("?")
    if not mark:
        return str(dataset)
    kept = [pair for pair in query.split("&") if pair.partition("=")[0] not in UNIQUE_DATA_OPTIONS]
    return base + ("?" + "&".join(kept) if kept else "")


def _split_groups(frame: pd.DataFrame, by: str | None) -> tuple[pd.DataFrame, dict]:
    """Add every group axis that varies within an (N, D) to the group name; say which axes do what.

    With unique-token counts, data set variants that differ only in a cap on unique data stay in one
    group (U is a variable of the data-constrained law, not another experiment).
    """
    capped = "U" in frame.columns and "dataset" in frame.columns
    named = frame.assign(dataset=frame["dataset"].map(without_unique_cap)) if capped else frame
    axes = _varying_within_cells(named, GROUP_AXES, ["group", "N", "D"])
    if axes:
        frame = frame.assign(group=_group_names(frame, axes, by))
    grouping = {
        "groups": ([by] if by else []) + axes,
        "selected": _varying_within_cells(frame, SELECT_AXES),
        "varying_with_size": [
            axis
            for axis in GROUP_AXES + SELECT_AXES
            if axis in frame.columns and axis not in axes and frame[axis].nunique(dropna=False) > 1
        ],
    }
    grouping["varying_with_size"] = [a for a in grouping["varying_with_size"] if a not in grouping["selected"]]
    if capped and named["dataset"].nunique() < frame["dataset"].nunique():
        grouping["unique_data"] = (
            f"variants differing only in {', '.join(UNIQUE_DATA_OPTIONS)} share a group; U separates them"
        )
    return frame, grouping


def _group_names(frame: pd.DataFrame, axes: list[str], by: str | None) -> list[str]:
    """Each row's group name: its --by value, then `axis=value` for every axis that splits groups."""
    capped = "U" in frame.columns and "dataset" in frame.columns
    named = frame.assign(dataset=frame["dataset"].map(without_unique_cap)) if capped else frame
    labels = [frame["group"].astype(str)] if by else []
    labels += [axis + "=" + named[axis].map(_label) for axis in axes]
    return [", ".join(parts) for parts in zip(*labels)]


def _diverged_runs(raw: pd.DataFrame, columns: dict, options: TableOptions, grouping: dict) -> pd.DataFrame:
    """Diverged runs with an lr, as rows of the standard frame with an infinite loss: their lr was tried."""
    if "status" not in raw.columns or "lr" not in raw.columns:
        return pd.DataFrame()
    rows = raw[raw["status"].astype(str) == "diverged"]
    if options.query and not rows.empty:
        rows = rows.query(options.query)  # evaluable: select_rows ran it on the whole table already
    sizes = [columns[key] for key in ("n", "d", "c") if columns[key]]
    for column in sizes:
        rows = rows[pd.to_numeric(rows[column], errors="coerce").gt(0)]
    if rows.empty:
        return pd.DataFrame()
    frame = _standard_frame(rows.assign(**{columns["loss"]: np.inf}), columns, options)
    axes = [axis for axis in grouping["groups"] if axis != options.by]
    return frame.assign(group=_group_names(frame, axes, options.by)) if axes else frame


def _label(value) -> str:
    """A value as it reads best in a group name: 16 rather than 16.0."""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


def _select_best(frame: pd.DataFrame, axes: list[str]) -> tuple[pd.DataFrame, list[dict], int]:
    """Keep, for each (group, N, D), the setting of `axes` (lr, shape) with the lowest seed-mean loss.

    Returns (kept rows, one choice per (group, N, D) that had several settings, rows dropped).
    """
    if not axes:
        return frame, [], 0
    keys = cell_keys(frame)
    mean = frame.groupby(keys + axes, sort=True, dropna=False)["loss"].mean().reset_index()
    best = mean.loc[mean.groupby(keys, sort=True)["loss"].idxmin()]
    choices = []
    for cell, options in mean.groupby(keys, sort=True):
        if len(options) < 2:
            continue
        winner = options.loc[options["loss"].idxmin()]
        choice = {"group": cell[0], **{key: float(value) for key, value in zip(keys[1:], cell[1:])}}
        choice.update({axis: _plain(winner[axis]) for axis in axes})
        choice["losses"] = {_setting_key(row, axes): float(row["loss"]) for _, row in options.iterrows()}
        choices.append(choice)
    kept = frame.merge(best[keys + axes], on=keys + axes)
    return kept, choices, int(len(frame) - len(kept))


def _plain(value):
    return float(value) if isinstance(value, (int, float, np.integer, np.floating)) else str(value)


def _setting_key(row, axes) -> str:
    """repr(lr) when only the lr is selected (as before), else 'lr=0.003, n_layer=2'."""
    if axes == ["lr"]:
        return repr(float(row["lr"]))
    return ", ".join(f"{axis}={_label(row[axis])}" for axis in axes)


def _average_seeds(frame: pd.DataFrame) -> pd.DataFrame:
    """One point per (group, N, D[, U]): losses and compute averaged over seeds, the first run id kept."""
    keys = cell_keys(frame)
    grouped = frame.groupby(keys, sort=True)
    points = grouped.agg(run_id=("run_id", "first"), C=("C", "mean"), loss=("loss", "mean"), n_runs=("loss", "size"))
    extra = ["N_nonembed"] if "N_nonembed" in frame.columns else []
    if extra:
        points["N_nonembed"] = grouped["N_nonembed"].first()
    return points.reset_index()[["run_id", *keys[:3], "C", "loss", "n_runs", *keys[3:], *extra]]


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
