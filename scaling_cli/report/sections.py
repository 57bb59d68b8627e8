"""The report's sections, each rendered from ReportInputs into HTML.

A section shows whatever its inputs hold and says in one line what is not available and why. Keys of
fit.json the report does not know (a new law, a new diagnostic) are still shown, as a table of their
numbers, so the page never hides part of a fit.
"""

from __future__ import annotations

import math

import pandas as pd

from scaling_cli.store import RECORDED_STATES
from scaling_cli.report.gather import ReportInputs
from scaling_cli.report.markup import (
    esc,
    finite,
    interval,
    note,
    num,
    table,
    mark,
    prose,
    reason,
    text_cell,
    unavailable,
    warning,
)

FIT = "fit.json"
RUNS = "runs.parquet"
STATUS = "status"
CONVENTION_KINDS = {
    "model_formula": "C from the model's own FLOP formula (Chinchilla Appendix F)",
    "ratio_fit": "C = k(N)·N·D with k fitted to the table",
    "6ND": "C = 6·N·D",
}
MANIFEST = "manifest.json"

UNFINISHED_STATES = ("running", "pending")  # planned runs without a row yet
RUN_COLUMNS = ("dataset", "params", "tokens", "epochs", "flops", "lr", "seed", "val_loss", "val_bpb", "wall_s")
SHOWN_LAW_KEYS = {"params", "intervals", "derived", "r2", "status", "problems", "diagnostics", "bootstrap", "vector"}
FIGURE_CAPTIONS = {
    "loss_vs_compute": "Validation loss of every run against training compute, with the efficient frontier.",
    "isoflop": "IsoFLOP profiles: loss against model size at fixed compute, with each budget's minimum.",
    "optimal_allocation": "Compute-optimal model size against compute, from each approach.",
    "parametric_fit": "The parametric law against the measured losses.",
    "extrapolation": "The fitted laws carried beyond the largest run, with held-out runs where present.",
    "compression": "Bits per byte of the models against the compressor baselines on the same validation text.",
    "data_axis": "One law per data set: how the data changes the curve.",
}


# ---- header -------------------------------------------------------------------------------------------


def header(inputs: ReportInputs) -> str:
    name = inputs.spec.get("name") or inputs.results.name
    description = inputs.spec.get("description") or ""
    lines = [f"<h1>Scaling report: {esc(name)}</h1>"]
    if description:
        lines.append(f"<p>{esc(description)}</p>")
    lines.append(f"<p>Results directory <code>{esc(inputs.results)}</code></p>")
    return "".join(lines) + _glance(inputs)


def _glance(inputs: ReportInputs) -> str:
    if not inputs.runs.ok:
        return ""
    runs = inputs.runs.value
    tiles = [("runs settled", num(len(runs), RUNS, ["count", None, {}]))]
    if "status" in runs.columns:
        tiles.append(("done", num(_count(runs, status="done"), RUNS, ["count", None, {"status": "done"}])))
    if inputs.status.ok and finite(inputs.status.value.get("flops_spent")) is not None:
        spent = num(inputs.status.value["flops_spent"], STATUS, ["flops_spent"])
        tiles.append(("FLOPs spent (WSD trunks counted once, as scale status)", spent))
    if "wall_s" in runs.columns:
        tiles.append(
            ("training time, s (sum over runs)", num(_agg(runs, "sum", "wall_s"), RUNS, ["sum", "wall_s", {}]))
        )
    if "val_loss" in runs.columns:
        tiles.append(("best val loss", num(_agg(runs, "min", "val_loss"), RUNS, ["min", "val_loss", {}])))
    cells = "".join(f"<div><b>{value}</b><small>{esc(label)}</small></div>" for label, value in tiles)
    return f'<div class="glance">{cells}</div>'


# ---- what was run -------------------------------------------------------------------------------------


def what_was_run(inputs: ReportInputs) -> str:
    glance = "".join(f"<div>{part}</div>" for part in (_states(inputs), _compute_and_time(inputs), _devices(inputs)))
    parts = [f'<div class="row">{glance}</div>']
    if inputs.spec_text.ok:
        parts.append(f"<h3>Spec</h3><pre>{esc(inputs.spec_text.value)}</pre>")
    else:
        parts.append("<h3>Spec</h3>" + unavailable(inputs.spec_text.problem))
    parts.append(_runs_table(inputs))
    return "".join(parts)


def _states(inputs: ReportInputs) -> str:
    rows = []
    if inputs.runs.ok and "status" in inputs.runs.value.columns:
        runs = inputs.runs.value
        for state in RECORDED_STATES:
            rows.append([esc(state), num(_count(runs, status=state), RUNS, ["count", None, {"status": state}])])
    counts = (inputs.status.value or {}).get("counts") or {}
    for state in UNFINISHED_STATES:
        if state in counts:
            rows.append([esc(state), num(counts[state], STATUS, ["counts", state])])
    body = table(["state", "runs"], rows, numeric=[False, True]) if rows else unavailable(inputs.runs.problem)
    if not inputs.status.ok:
        body += note(f"running and pending runs not available: {esc(inputs.status.problem)}")
    return "<h3>Runs by state</h3>" + body


def _compute_and_time(inputs: ReportInputs) -> str:
    rows = []
    status = inputs.status.value or {}
    if "flops_spent" in status:
        rows.append(
            [
                "compute spent, FLOPs (WSD trunks shared once, as scale status counts)",
                num(status["flops_spent"], STATUS, ["flops_spent"]),
            ]
        )
    if "flops_remaining" in status:
        rows.append(["compute still to train, FLOPs", num(status["flops_remaining"], STATUS, ["flops_remaining"])])
    if inputs.runs.ok:
        runs = inputs.runs.value
        for column, label in (
            ("flops", "training FLOPs of the settled runs, each counted in full (Appendix F)"),
            ("flops_6nd", "the same as 6·N·D (N without embeddings)"),
            ("tokens", "training tokens of the settled runs"),
            ("wall_s", "run time, seconds, summed over runs (workers run in parallel)"),
        ):
            if column in runs.columns:
                rows.append([esc(label), num(_agg(runs, "sum", column), RUNS, ["sum", column, {}])])
        span = elapsed(runs)
        if span is not None:
            rows.append(
                [
                    "wall time, seconds, from the first run's start to the last run's finish",
                    num(span, RUNS, ["elapsed", None, {}]),
                ]
            )
    if not rows:
        return "<h3>Compute and time</h3>" + unavailable(inputs.runs.problem or inputs.status.problem)
    return "<h3>Compute and time</h3>" + table(["", "value"], rows, numeric=[False, True], row_headers=True)


def _devices(inputs: ReportInputs) -> str:
    if not inputs.runs.ok or "device" not in inputs.runs.value.columns:
        return "<h3>Device</h3>" + unavailable(inputs.runs.problem or "runs.parquet has no device column")
    runs = inputs.runs.value
    rows = []
    for device in sorted(labels(runs["device"]).unique()):
        rows.append([text_cell(device), num(_count(runs, device=device), RUNS, ["count", None, {"device": device}])])
    return "<h3>Device</h3>" + table(["device", "runs"], rows, numeric=[False, True])


def _runs_table(inputs: ReportInputs) -> str:
    if not inputs.runs.ok:
        return "<h3>Runs</h3>" + unavailable(inputs.runs.problem)
    runs = inputs.runs.value
    columns = [c for c in RUN_COLUMNS if c in runs.columns]
    rows = []
    for _, row in runs.sort_values([c for c in ("dataset", "params", "tokens") if c in runs.columns]).iterrows():
        cells = [text_cell(row["run_id"]), esc(row.get("status", ""))]
        for column in columns:
            value = row[column]
            cells.append(text_cell(value) if column == "dataset" else num(value, RUNS, ["row", row["run_id"], column]))
        rows.append(cells)
    shown = table(["run", "status", *columns], rows, numeric=[False, False, *(c != "dataset" for c in columns)])
    opened = " open" if len(runs) <= 40 else ""
    return f"<h3>Runs</h3><details{opened}><summary>{len(runs)} runs</summary>{shown}</details>"


# ---- fitted laws --------------------------------------------------------------------------------------


def fitted_laws(inputs: ReportInputs) -> str:
    if not inputs.fit.ok:
        return unavailable(inputs.fit.problem)
    fit = inputs.fit.value.to_json()  # the cards cite fit.json's own paths, which the page's number check reads
    parts = [_fit_summary(fit)]
    groups = fit.get("groups") or {}
    if not groups:
        parts.append(unavailable("fit.json has no groups"))
    for name, group in sorted(groups.items()):
        parts.append(_group_laws(name, group, fit))
    return "".join(parts)


def _fit_summary(fit: dict) -> str:
    rows_info = fit.get("rows") or {}
    lines = []
    if rows_info:
        excluded = rows_info.get("excluded") or {}
        reasons = ", ".join(
            f"{esc(reason)} {num(count, FIT, ['rows', 'excluded', reason])}"
            for reason, count in excluded.items()
            if finite(count)
        )
        lines.append(
            f"Rows used: {num(rows_info.get('used'), FIT, ['rows', 'used'])} of "
            f"{num(rows_info.get('total'), FIT, ['rows', 'total'])}" + (f" (excluded: {reasons})" if reasons else "")
        )
    conventions = fit.get("conventions") or {}
    if conventions:
        lines.append("Conventions: " + "; ".join(f"{esc(k.upper())} = {prose(v)}" for k, v in conventions.items()))
    if fit.get("by"):
        lines.append(f"One fit per value of <code>{esc(fit['by'])}</code>.")
    interval_level = finite((fit.get("settings") or {}).get("interval"))
    resamples = (fit.get("settings") or {}).get("bootstrap")
    if interval_level:
        lines.append(
            f"Intervals: {num(interval_level, FIT, ['settings', 'interval'])} bootstrap percentile intervals"
            + (f" from {num(resamples, FIT, ['settings', 'bootstrap'])} resamples" if finite(resamples) else "")
        )
    convention = _convention(fit.get("compute_convention"))
    if convention:
        lines.append(convention)
    return "".join(f"<p>{line}</p>" for line in lines)


def _convention(convention: object) -> str:
    """The compute convention in one line: its kind, its description, then its numbers."""
    if not isinstance(convention, dict):
        return ""
    kind = CONVENTION_KINDS.get(convention.get("kind"), convention.get("kind"))
    words = [prose(word) for word in (kind, convention.get("description")) if isinstance(word, str)]
    numbers = []
    for name, value in convention.items():
        key = ["compute_convention", name]
        if finite(value) is not None:
            numbers.append(f"{esc(name)} = {num(value, FIT, key)}")
        elif isinstance(value, list) and 0 < len(value) <= 4 and all(finite(v) is not None for v in value):
            numbers.append(f"{esc(name)} [" + ", ".join(num(v, FIT, [*key, i]) for i, v in enumerate(value)) + "]")
    shown = " — ".join(words) + (f" ({', '.join(numbers)})" if numbers else "")
    return f"Compute convention: {shown}" if shown else ""


def _group_laws(name: str, group: dict, fit: dict) -> str:
    title = "" if name == "all" and not fit.get("by") else f"<h3>{esc(fit.get('by') or 'group')} = {esc(name)}</h3>"
    points = num(group.get("n_points"), FIT, ["groups", name, "n_points"])
    cards = [_law_card(name, law, entry, group) for law, entry in (group.get("laws") or {}).items()]
    skipped = group.get("skipped") or {}
    skipped_html = "".join(f"<li><b>{esc(law)}</b>: {prose(why)}</li>" for law, why in skipped.items())
    parts = [title, f"<p>{points} fitted points.</p>"]
    parts.append(f'<div class="laws">{"".join(cards)}</div>' if cards else unavailable("no law was fitted"))
    if skipped_html:
        parts.append(f"<p>Not fitted:</p><ul>{skipped_html}</ul>")
    parts.append(_backtest(name, group))
    return "".join(parts)


def _law_card(group_name: str, law: str, entry: dict, group: dict) -> str:
    base = ["groups", group_name, "laws", law]
    parts = [f"<h3>{esc(_law_title(law))}</h3>"]
    if not isinstance(entry, dict):
        return '<div class="law">' + parts[0] + unavailable("not a law entry") + "</div>"
    status = entry.get("status")
    if status not in (None, "ok"):
        problems = "; ".join(str(p) for p in entry.get("problems") or []) or "no reason given"
        parts.append(warning(f"{mark('not identified')} {prose(problems)}"))
    from scaling_cli.fit.results import LawFit

    fitted_parts = LawFit.of(entry).parts  # a law of several fitted parts (Kaplan's L_N, L_D, L_C)
    for part in fitted_parts:
        parts.append(f"<h4>{esc(part)}</h4>" + _params_table(entry[part], [*base, part]))
    if not fitted_parts:
        parts.append(_params_table(entry, base))
    if finite(entry.get("r2")) is not None:
        parts.append(f"<p>R² {num(entry['r2'], FIT, [*base, 'r2'])}</p>")
    edge = (entry.get("diagnostics") or {}).get("grid_edge") or []
    if edge:
        parts.append(warning("at the edge of the starting grid: " + esc(", ".join(map(str, edge)))))
    parts.append(_law_backtest(group_name, law, group))
    extra = {k: v for k, v in entry.items() if k not in SHOWN_LAW_KEYS and k not in fitted_parts}
    others = _scalars(extra, FIT, base, skip=("settings", "at_compute", "frontier", "budgets", "points", "curve"))
    if others:
        parts.append(f"<details><summary>more numbers</summary>{others}</details>")
    return '<div class="law">' + "".join(parts) + "</div>"


def _law_title(name: str) -> str:
    """The law's heading as the law gives it (its name when it is not registered here)."""
    from scaling_cli.errors import FitError
    from scaling_cli.fit import law as registry

    try:
        return registry.get(name).title
    except FitError:
        return name


def _params_table(entry: dict, base: list) -> str:
    """Each parameter (then each derived quantity) with its value and interval."""
    intervals = entry.get("intervals") or {}
    rows = []
    for kind in ("params", "derived"):
        for name, value in (entry.get(kind) or {}).items():
            rows.append(
                [
                    text_cell(name),
                    num(value, FIT, [*base, kind, name]),
                    interval(intervals.get(name), FIT, [*base, "intervals", name]),
                ]
            )
    if not rows:
        return unavailable("no parameters stored")
    return table(["parameter", "value", "interval"], rows, numeric=[False, True, True])


def _law_backtest(group_name: str, law: str, group: dict) -> str:
    """This law's extrapolation error: the holdout's, and the backtest's on all points, where each ran."""
    lines = [_holdout_line(group_name, law, group), _backtest_line(group_name, law, group)]
    shown = "".join(line for line in lines if line)
    if shown:
        return shown
    if group.get("holdout") or group.get("backtest"):
        return note("Backtest: this law predicts allocations, not a run's loss, so it is not scored.")
    return note("Backtest not available: fitted without --holdout or --backtest.")


def _holdout_line(group_name: str, law: str, group: dict) -> str:
    holdout = group.get("holdout") or {}
    mape = (holdout.get("mape") or {}).get(law)
    if finite(mape) is None:
        why = (holdout.get("skipped") or {}).get(law)
        return note(f"Holdout not available: {prose(why)}") if why else ""
    at = ["groups", group_name, "holdout"]
    held = num(holdout["held_out"], FIT, [*at, "held_out"]) if finite(holdout.get("held_out")) else "the"
    error = num(mape, FIT, [*at, "mape", law], "%")
    return f"<p>Holdout: mean absolute percentage error (MAPE) {error} on {held} held-out highest-compute runs.</p>"


def _backtest_line(group_name: str, law: str, group: dict) -> str:
    backtest = group.get("backtest")
    if not isinstance(backtest, dict) or not isinstance(backtest.get("candidates"), list):
        return ""
    for index, candidate in enumerate(backtest["candidates"]):
        scored = (candidate.get("laws") or {}).get(law)
        if candidate.get("filter") != "all" or not isinstance(scored, dict):
            continue
        at = ["groups", group_name, "backtest", "candidates", index, "laws", law]
        if finite(scored.get("mape")) is None:
            return note(f"Backtest (all runs): {esc(scored.get('status', 'not scored'))}")
        error = num(scored["mape"], FIT, [*at, "mape"], "%")
        largest = num(scored.get("max_error"), FIT, [*at, "max_error"], "%")
        return f"<p>Backtest (fitted below the cut, all runs): MAPE {error}, largest error {largest}.</p>"
    return ""


def _backtest(group_name: str, group: dict) -> str:
    """The group's backtest: the cut, every law x point filter scored, and the recommended law."""
    backtest = group.get("backtest")
    if not backtest:
        return ""
    if not isinstance(backtest, dict):
        return "<h4>backtest</h4>" + unavailable("not a backtest entry")
    if backtest.get("skipped"):
        return "<h4>backtest</h4>" + unavailable(str(backtest["skipped"]))
    base = ["groups", group_name, "backtest"]
    if not isinstance(backtest.get("candidates"), list):
        return "<h4>backtest</h4>" + _scalars(backtest, FIT, base)
    parts = ["<h4>backtest</h4>"]
    scored = ""
    if finite(backtest.get("scored")) is not None:
        scored_on = backtest.get("scored_on")
        scored = f" ({num(backtest['scored'], FIT, [*base, 'scored'])} of them scored" + (
            f": {esc(scored_on)})" if isinstance(scored_on, str) else ")"
        )
    parts.append(
        f"<p>Each law fitted on the {num(backtest.get('fitted_on'), FIT, [*base, 'fitted_on'])} runs with C below "
        f"{num(backtest.get('cut'), FIT, [*base, 'cut'])} FLOPs, then asked to predict the "
        f"{num(backtest.get('held_out'), FIT, [*base, 'held_out'])} runs above it{scored}, "
        f"up to {num(backtest.get('C_ratio'), FIT, [*base, 'C_ratio'], '×')} the largest compute it was fitted on.</p>"
    )
    parts.append(_recommended(backtest.get("recommended"), [*base, "recommended"]))
    parts.append(_candidates_table(backtest["candidates"], base))
    return "".join(parts)


def _recommended(choice: object, key: list) -> str:
    if not isinstance(choice, dict):
        return "<p>No law recommended: none was identified and scored on the held-out runs.</p>"
    fitted = choice.get("fit") if isinstance(choice.get("fit"), dict) else {}
    marks = ""
    if fitted.get("status", "ok") != "ok":
        why = "; ".join(map(str, fitted.get("problems") or [])) or "not identified"
        marks += f" {mark('withheld from predict: not identified')} {prose(why)}"
    if choice.get("weak"):
        marks += " " + mark("weak evidence: fewer than 5 runs")
    return (
        f"<p>Recommended for extrapolation: <b>{esc(choice.get('law'))}</b> on {esc(choice.get('filter'))}, "
        f"expected error {num(choice.get('expected_error'), FIT, [*key, 'expected_error'], '%')} "
        f"(largest {num(choice.get('max_error'), FIT, [*key, 'max_error'], '%')}).{marks}</p>"
    )


def _status_mark(scored: dict) -> str:
    """The CLI's mark beside a backtest error whose law was not identified at that filter."""
    if scored.get("status", "ok") == "ok":
        return ""
    problems = "; ".join(map(str, scored.get("problems") or []))
    return f" {mark('not identified')}" + (f'<br><small>{reason(problems)}</small>' if problems else "")


def _candidates_table(candidates: list, base: list) -> str:
    laws = sorted({law for c in candidates for law in [*(c.get("laws") or {}), *(c.get("skipped") or {})]})
    per_candidate = any("scored" in candidate for candidate in candidates)
    rows = []
    for index, candidate in enumerate(candidates):
        at = [*base, "candidates", index]
        cells = [text_cell(candidate.get("filter", "?")), num(candidate.get("fitted_on"), FIT, [*at, "fitted_on"])]
        if per_candidate:
            cells.append(num(candidate.get("scored"), FIT, [*at, "scored"]))
        for law in laws:
            scored = (candidate.get("laws") or {}).get(law)
            skipped = (candidate.get("skipped") or {}).get(law)
            if isinstance(scored, dict) and finite(scored.get("mape")) is not None:
                cells.append(num(scored["mape"], FIT, [*at, "laws", law, "mape"], "%") + _status_mark(scored))
            elif isinstance(scored, dict):
                problems = "; ".join(map(str, scored.get("problems") or []))
                status = str(scored.get("status", "—")).replace("_", " ")
                cells.append(mark(status) + (f'<br><small>{reason(problems)}</small>' if problems else ""))
            else:
                cells.append(f'<span class="id" title="{esc(skipped or "")}">skipped</span>' if skipped else "—")
        rows.append(cells)
    counts = ["fitted on", "scored"] if per_candidate else ["fitted on"]
    headers = ["point filter", *counts, *(f"{law} MAPE" for law in laws)]
    return table(headers, rows, numeric=[False, *([True] * len(counts)), *([True] * len(laws))])


# ---- shared helpers -----------------------------------------------------------------------------------


def _scalars(obj: object, source: str, base: list, skip: tuple = (), limit: int = 60) -> str:
    """A table of every number and short text under `obj` (nested dicts and lists), each number sourced."""
    rows: list[list[str]] = []

    def walk(value: object, path: list) -> None:
        if len(rows) >= limit:
            return
        if isinstance(value, dict):
            for name, inner in value.items():
                if name not in skip:
                    walk(inner, [*path, name])
        elif isinstance(value, list) and len(value) <= 12:
            for index, inner in enumerate(value):
                walk(inner, [*path, index])
        elif finite(value) is not None:
            rows.append([text_cell(".".join(map(str, path))), num(value, source, [*base, *path])])
        elif isinstance(value, (str, bool)) and path:
            rows.append([text_cell(".".join(map(str, path))), text_cell(value)])

    walk(obj, [])
    return table(["key", "value"], rows) if rows else ""  # values may be long text: not a no-wrap number column


def _count(runs: pd.DataFrame, **equal: str) -> int:
    return int(_where(runs, equal).shape[0])


def _agg(runs: pd.DataFrame, how: str, column: str, **equal: str) -> float | None:
    values = pd.to_numeric(_where(runs, equal)[column], errors="coerce")
    values = values[values.apply(lambda v: math.isfinite(v))]
    return float(getattr(values, how)()) if len(values) else None


def _where(runs: pd.DataFrame, equal: dict) -> pd.DataFrame:
    for column, value in equal.items():
        runs = runs[labels(runs[column]) == value]
    return runs


def labels(column: pd.Series) -> pd.Series:
    """A text column as plain strings, a missing value as "unknown" (failed runs have no device)."""
    return column.map(lambda v: "unknown" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v))


def elapsed(runs: pd.DataFrame) -> float | None:
    """Seconds from the earliest run start (finish time less its run time) to the latest finish."""
    if not {"finished_at", "wall_s"} <= set(runs.columns):
        return None
    finish = pd.to_numeric(runs["finished_at"], errors="coerce")
    start = finish - pd.to_numeric(runs["wall_s"], errors="coerce")
    if finish.isna().all() or start.isna().all():
        return None
    return float(finish.max() - start.min())
