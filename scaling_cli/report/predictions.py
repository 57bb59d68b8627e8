"""The report's compute-optimal section: every law's N_opt, D_opt, tokens per parameter and loss at 10x and
100x the largest fitted run, as `scaling_cli.fit.predict` gives them, with the extrapolation warning."""

from __future__ import annotations

from typing import TYPE_CHECKING

from scaling_cli.report.gather import Prediction, ReportInputs, largest_compute
from scaling_cli.report.markup import (
    esc,
    finite,
    interval,
    mark,
    note,
    num,
    prose,
    reason,
    table,
    text_cell,
    unavailable,
    warning,
)
from scaling_cli.report.sections import FIT
from scaling_cli.report.verdict import PREDICT

if TYPE_CHECKING:
    from scaling_cli.fit.results import FitResult


# ---- compute-optimal predictions ----------------------------------------------------------------------


def compute_optimal(inputs: ReportInputs) -> str:
    if not inputs.fit.ok:
        return unavailable(inputs.fit.problem)
    if not inputs.predictions:
        return unavailable("fit.json has no groups")
    convention = inputs.fit.value.conventions.get("c")
    parts = []
    if convention:
        parts.append(note(f"C counted as {esc(convention)}, the fit's convention."))
    for group in sorted({p.group for p in inputs.predictions}):
        entries = [p for p in inputs.predictions if p.group == group]
        if len(inputs.predictions) > len(entries):
            parts.append(f"<h3>{esc(inputs.fit.value.by or 'group')} = {esc(group)}</h3>")
        parts.append(_prediction_group(inputs.fit.value, group, entries))
    return "".join(parts)


def _prediction_group(fit: FitResult, group: str, entries: list[Prediction]) -> str:
    points = fit.groups[group].points
    top = largest_compute(fit.groups[group])
    if top is None:
        return unavailable("the group has no fitted points")
    index = next(i for i, p in enumerate(points) if finite(p.get("C")) == top)
    parts = [f"<p>Largest fitted run: C = {num(top, FIT, ['groups', group, 'points', index, 'C'])} FLOPs.</p>"]
    for entry in entries:
        parts.append(_prediction_table(entry))
    return "".join(parts)


def _prediction_table(entry: Prediction) -> str:
    head = f"<h4>{entry.multiple}× the largest run's compute</h4>"
    if entry.result is None:
        return head + unavailable(entry.problem)
    key = [entry.group, entry.multiple]
    compute = num(entry.result.get("compute"), PREDICT, [*key, "compute"])
    answer = (entry.result.get("groups") or {}).get(entry.group) or {}
    laws = answer.get("compute") or {}
    base = [*key, "groups", entry.group]
    rows = []
    choice = answer.get("recommended")
    recommended_note = ""
    if isinstance(choice, dict) and isinstance(choice.get("compute"), dict):
        label = f"<b>recommended: {esc(choice.get('law'))}</b>"
        rows.append(_prediction_row(label, choice["compute"], [*base, "recommended", "compute"]))
        recommended_note = note(f"Recommended law chosen by: {esc(choice.get('source', 'not stated'))}.")
    for law, row in laws.items():
        rows.append(_prediction_row(text_cell(law), row, [*base, "compute", law]))
    headers = ["law", "N_opt", "D_opt", "tokens per parameter", "loss", "beyond the largest run"]
    shown = table(headers, rows, numeric=[False, True, True, True, True, False])
    return head + f"<p>C = {compute} FLOPs</p>" + _extrapolation(entry, laws) + shown + recommended_note


def _prediction_row(label: str, row: dict, key: list) -> list[str]:
    if not isinstance(row, dict):
        return [label, "—", "—", "—", "—", ""]
    if row.get("status", "ok") != "ok":
        problems = "; ".join(map(str, row.get("problems") or [])) or row.get("note", "")
        return [label, f"{mark('not identified')} {reason(problems)}", "—", "—", "—", ""]
    cells = [label]
    for value_key in ("N_opt", "D_opt", "tokens_per_param", "loss"):
        if value_key in row:
            value = num(row[value_key], PREDICT, [*key, value_key])
            spread = interval(row.get(f"{value_key}_interval"), PREDICT, [*key, f"{value_key}_interval"])
            cells.append(value + (f'<br><small class="iv">{spread}</small>' if spread != "—" else ""))
        else:
            cells.append("—")
    reach = row.get("extrapolation") if isinstance(row.get("extrapolation"), dict) else {}
    ratios = [
        f"{name} ×{num(reach[ratio], PREDICT, [*key, 'extrapolation', ratio])}"
        for ratio, name in (("C_ratio", "C"), ("N_ratio", "N"), ("D_ratio", "D"))
        if finite(reach.get(ratio)) is not None
    ]
    cells.append("<br>".join(ratios))
    return cells


def _extrapolation(entry: Prediction, laws: dict) -> str:
    """The warning that goes with every prediction past the data, plus what `predict` says about each law."""
    stated = []
    for law, answer in laws.items():
        said = answer.get("extrapolation") if isinstance(answer, dict) else None
        text = said.get("warning") if isinstance(said, dict) else said
        if isinstance(text, str) and text:
            stated.append(f"{esc(law)}: {prose(text)}")
    own = (
        f"Extrapolation: {entry.multiple}× beyond the largest run this fit has seen. These numbers carry the laws "
        "past the data; the holdout and backtest errors above show how well each law predicted runs it had not seen."
    )
    return warning(own + "".join(f"<br>{line}" for line in stated))
