"""The report's first screen: what to train at 10x and 100x the largest run, with intervals and how far to trust it.

It reads `scaling_cli.fit.predict`'s answer for each group (`recommended`, and `verdict`, `warnings`, `weak`
where the answer has them) and, when no law answers, says what the fit asks to run next.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from scaling_cli.report.gather import Prediction, ReportInputs
from scaling_cli.report.markup import esc, finite, interval, mark, num, prose, unavailable, warning

if TYPE_CHECKING:
    from scaling_cli.fit.results import FitResult

PREDICT = "predict"
SHOWN = (("N_opt", "parameters N"), ("D_opt", "tokens D"), ("tokens_per_param", "tokens per parameter"))


def verdict(inputs: ReportInputs) -> str:
    """One card per (group, multiple): the recommended split and loss with intervals, the trust, the warnings."""
    if not inputs.fit.ok:
        return unavailable(f"{inputs.fit.problem}; run scale fit RESULTS --backtest for a verdict")
    if not inputs.predictions:
        return unavailable("fit.json has no groups")
    groups = sorted({p.group for p in inputs.predictions})
    parts = []
    for group in groups:
        entries = [p for p in inputs.predictions if p.group == group]
        title = f"<h3>{esc(inputs.fit.value.by or 'group')} = {esc(group)}</h3>" if len(groups) > 1 else ""
        cards = "".join(_card(entry) for entry in entries)
        parts.append(title + f'<div class="verdicts">{cards}</div>' + _next_runs(inputs.fit.value, group, entries))
    return "".join(parts)


def _card(entry: Prediction) -> str:
    head = f"<h4>{entry.multiple}× the largest run's compute</h4>"
    if entry.result is None:
        return f'<div class="verdict">{head}{unavailable(entry.problem)}</div>'
    answer = (entry.result.get("groups") or {}).get(entry.group) or {}
    key = [entry.group, entry.multiple, "groups", entry.group]
    lines = [
        head,
        f"<p>C = {num(entry.result.get('compute'), PREDICT, [entry.group, entry.multiple, 'compute'])} FLOPs</p>",
    ]
    said = answer.get("verdict")
    if isinstance(said, str) and said:
        lines.append(f'<p class="said">{prose(said)}</p>')
    choice = answer.get("recommended")
    if isinstance(choice, dict) and isinstance(choice.get("compute"), dict):
        lines.append(_numbers(choice["compute"], [*key, "recommended", "compute"]))
        lines.append(_trust(choice, [*key, "recommended"]))
    else:
        lines.append('<p class="bad"><b>not identified</b>: no law gives a compute-optimal split here.</p>')
    for text in answer.get("warnings") or []:
        lines.append(warning(prose(str(text))))
    return f'<div class="verdict">{"".join(lines)}</div>'


def _numbers(row: dict, key: list) -> str:
    if row.get("status", "ok") != "ok":
        problems = "; ".join(map(str, row.get("problems") or [])) or "no prediction"
        return f'<p class="bad"><b>not identified</b>: {prose(problems)}</p>'
    rows = []
    for value_key, label in (*SHOWN, ("loss", "loss")):
        if value_key not in row:
            continue
        spread = interval(row.get(f"{value_key}_interval"), PREDICT, [*key, f"{value_key}_interval"])
        shown = num(row[value_key], PREDICT, [*key, value_key])
        rows.append(f'<tr><th class="label">{esc(label)}</th><td><b>{shown}</b></td><td>{spread}</td></tr>')
    kind = row.get("interval_kind")
    span = f"95% {esc(kind)} interval" if isinstance(kind, str) else "95% interval"
    head = f"<thead><tr><th></th><th>train</th><th>{span}</th></tr></thead>"
    return f'<table class="answer">{head}<tbody>{"".join(rows)}</tbody></table>'


def _trust(choice: dict, key: list) -> str:
    """How far to trust it: the law, its backtest error over how many runs, and the marks the CLI shows."""
    law = f"<b>{esc(choice.get('law'))}</b>" + (f" on {esc(choice['filter'])}" if choice.get("filter") else "")
    error = finite(choice.get("expected_error"))
    if error is not None:
        scored = finite(choice.get("scored"))
        over = f" over {num(scored, PREDICT, [*key, 'scored'])} backtest runs" if scored is not None else ""
        said = f"expected error {num(error, PREDICT, [*key, 'expected_error'], '%')}{over}"
    else:
        said = f"no measured error ({esc(choice.get('source') or 'no backtest')})"
    marks = []
    if choice.get("weak"):
        marks.append(mark("weak evidence: fewer than 5 scored runs"))
    if "not identified" in str(choice.get("source") or ""):
        marks.append(mark("backtest's choice withheld: not identified"))
    return f"<p>Trust: {law}, {said}. {' '.join(marks)}</p>"


def _next_runs(fit: FitResult, group: str, entries: list[Prediction]) -> str:
    """When no law answers at every multiple, what the fit says to add (its skipped reasons and problems)."""
    answered = [
        e
        for e in entries
        if e.result and isinstance(((e.result.get("groups") or {}).get(group) or {}).get("recommended"), dict)
    ]
    if answered:
        return ""
    entry = fit.groups.get(group)
    if entry is None:
        return ""
    asks = [f"{esc(law)}: {prose(str(why))}" for law, why in entry.skipped.items()]
    for law, fitted in entry.laws.items():
        if fitted.status == "not_identified":
            asks.append(f"{esc(law)} not identified: {prose('; '.join(map(str, fitted.problems)))}")
    if not asks:
        return ""
    items = "".join(f"<li>{ask}</li>" for ask in asks)
    return f"<p><b>What to run next</b> (no law answers yet):</p><ul>{items}</ul>"
