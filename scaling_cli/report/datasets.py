"""The report's data section: per prepared data set its sizes, cleaning steps, repetition, and the compressor
baselines against the best model's bits per byte."""

from __future__ import annotations

import pandas as pd

from scaling_cli.data.repetition import REPEATED_EPOCHS
from scaling_cli.report.gather import DataSet, ReportInputs
from scaling_cli.report.markup import (
    esc,
    finite,
    note,
    num,
    table,
    text_cell,
    unavailable,
    warning,
)
from scaling_cli.report.sections import MANIFEST, RUNS, _agg, _where


# ---- data ---------------------------------------------------------------------------------------------


def data(inputs: ReportInputs) -> str:
    if not inputs.runs.ok:
        return unavailable(inputs.runs.problem)
    if not inputs.data_sets:
        return unavailable("runs.parquet has no dataset column")
    return "".join(_data_set(inputs.runs.value, data_set) for data_set in inputs.data_sets)


def _data_set(runs: pd.DataFrame, data_set: DataSet) -> str:
    head = f"<h3>{esc(data_set.name)}</h3>" + _repetition(runs, data_set)
    best = _best_model(runs[runs["run_id"].isin(data_set.run_ids)])
    if data_set.manifest is None:
        return head + unavailable(data_set.problem) + _baselines_from_runs(runs, data_set.dataset, best)
    manifest = data_set.manifest
    key = [str(manifest.get("dirname"))]
    parts = [head, note(f"Prepared data set <code>{esc(manifest.get('dirname', ''))}</code>")]
    parts.append(_sizes(manifest, key))
    parts.append("<h4>cleaning steps, in order</h4>" + _cleaning(manifest, key))
    parts.append("<h4>compressor baselines against the best model</h4>" + _baselines(best, manifest, key))
    return "".join(parts)


def _repetition(runs: pd.DataFrame, data_set: DataSet) -> str:
    """How many passes over the training split the runs made (runs.parquet `epochs`, where it exists)."""
    if "epochs" not in runs.columns:
        return ""
    where = {"dataset": data_set.dataset}
    most = _agg(runs, "max", "epochs", **where)
    if most is None:
        return ""
    passes = num(most, RUNS, ["max", "epochs", where])
    line = f"Runs on {esc(data_set.dataset)} made up to {passes} passes (epochs) over the training split."
    if most > REPEATED_EPOCHS:
        return warning(line + f" Past about {REPEATED_EPOCHS} epochs repeated data is worth less than fresh data.")
    return f"<p>{line}</p>"


def _sizes(manifest: dict, key: list) -> str:
    rows = []
    for kind in ("documents", "bytes", "tokens"):
        values = manifest.get(kind)
        if isinstance(values, dict):
            cells = ", ".join(f"{text_cell(k)} {num(v, MANIFEST, [*key, kind, k])}" for k, v in values.items())
            rows.append([esc(kind), cells])
    return table(["", "counts"], rows) if rows else ""


def _cleaning(manifest: dict, key: list) -> str:
    steps = manifest.get("cleaning")
    if not isinstance(steps, list) or not steps:
        return unavailable("the manifest lists no cleaning steps")
    rows = []
    for index, step in enumerate(steps):
        details = []
        for name, value in step.items():
            if name in ("step", "enabled"):
                continue
            if finite(value) is not None:
                details.append(f"{text_cell(name)} {num(value, MANIFEST, [*key, 'cleaning', index, name])}")
            else:
                details.append(f"{text_cell(name)} {text_cell(value)}")
        enabled = step.get("enabled")
        state = '<span class="ok">on</span>' if enabled else "off" if enabled is False else "—"
        rows.append([text_cell(step.get("step", "?")), state, ", ".join(details) or "—"])
    return table(["step", "enabled", "what it changed"], rows)


def _baselines(best: tuple[float, str] | None, manifest: dict, key: list) -> str:
    bpb = ((manifest.get("baselines") or {}).get("bits_per_byte")) or {}
    rows = [
        [text_cell(name), num(value, MANIFEST, [*key, "baselines", "bits_per_byte", name]), _versus(value, best)]
        for name, value in bpb.items()
    ]
    entropy = finite((manifest.get("markov") or {}).get("entropy_rate_bits"))
    if entropy is not None:
        rows.append(
            ["source entropy rate (the floor)", num(entropy, MANIFEST, [*key, "markov", "entropy_rate_bits"]), ""]
        )
    rows.append(_best_model_row(best))
    text = (manifest.get("baselines") or {}).get("text", "validation")
    return table(["", "bits per byte", ""], rows, numeric=[False, True, False]) + note(
        f"Compressors measured on the {esc(text)} text, the text the models are scored on."
    )


def _baselines_from_runs(runs: pd.DataFrame, dataset: str, best: tuple[float, str] | None) -> str:
    columns = [c for c in runs.columns if c.startswith("bpb_")]
    if not columns:
        return ""
    rows = []
    for column in columns:
        value = _agg(runs, "min", column, dataset=dataset)
        rows.append(
            [text_cell(column[4:]), num(value, RUNS, ["min", column, {"dataset": dataset}]), _versus(value, best)]
        )
    rows.append(_best_model_row(best))
    shown = table(["", "bits per byte", ""], rows, numeric=[False, True, False])
    return "<h4>compressor baselines (from runs.parquet)</h4>" + shown


def _best_model(runs: pd.DataFrame) -> tuple[float, str] | None:
    """(val_bpb, run_id) of the finished run with the lowest bits per byte among `runs`."""
    if "val_bpb" not in runs.columns:
        return None
    chosen = _where(runs, {"status": "done"}) if "status" in runs.columns else runs
    chosen = chosen[chosen["val_bpb"].apply(lambda v: finite(v) is not None)]
    if chosen.empty:
        return None
    row = chosen.loc[chosen["val_bpb"].idxmin()]
    return float(row["val_bpb"]), str(row["run_id"])


def _best_model_row(best: tuple[float, str] | None) -> list[str]:
    if best is None:
        return ["<b>best model</b>", "—", "no finished run with a finite val_bpb"]
    value, run_id = best
    return ["<b>best model</b>", f"<b>{num(value, RUNS, ['row', run_id, 'val_bpb'])}</b>", "run " + text_cell(run_id)]


def _versus(value: object, best: tuple[float, str] | None) -> str:
    compressor = finite(value)
    if best is None or compressor is None:
        return ""
    return (
        "the model compresses better" if best[0] < compressor else '<span class="bad">the compressor is better</span>'
    )
