"""The report's last sections: failed and diverged runs with their reasons, and every figure inlined (or why not)."""

from __future__ import annotations

import base64

from scaling_cli.report.gather import ReportInputs
from scaling_cli.report.markup import esc, num, table, text_cell, unavailable
from scaling_cli.report.sections import FIGURE_CAPTIONS, RUNS

# ---- failures -----------------------------------------------------------------------------------------


def failures(inputs: ReportInputs) -> str:
    if not inputs.runs.ok:
        return unavailable(inputs.runs.problem)
    runs = inputs.runs.value
    if "status" not in runs.columns:
        return unavailable("runs.parquet has no status column")
    bad = runs[runs["status"].isin(["failed", "diverged"])]
    if bad.empty:
        return "<p>No run failed or diverged.</p>"
    numbers = [c for c in ("params", "tokens", "lr", "steps", "diverged_step", "attempts") if c in runs.columns]
    rows = []
    for _, row in bad.sort_values(["status", "run_id"]).iterrows():
        cells = [text_cell(row["run_id"]), esc(row["status"])]
        cells += [num(row[c], RUNS, ["row", row["run_id"], c]) for c in numbers]
        error = str(row.get("error") or "") or ("loss became non-finite" if row["status"] == "diverged" else "")
        cells.append(f'<div class="error">{esc(error)}</div>' if error else "—")
        rows.append(cells)
    return table(["run", "status", *numbers, "error"], rows, numeric=[False, False, *([True] * len(numbers)), False])


# ---- figures ------------------------------------------------------------------------------------------


def figures(inputs: ReportInputs) -> str:
    if not inputs.figures.ok:
        return unavailable(inputs.figures.problem)
    cells = []
    for figure in inputs.figures.value:
        caption = f"<b>{esc(figure.name)}</b>: {esc(FIGURE_CAPTIONS.get(figure.name, ''))}"
        if figure.png is None:
            cells.append(f"<figure><figcaption>{caption}</figcaption>{unavailable(figure.reason)}</figure>")
            continue
        encoded = base64.b64encode(figure.png).decode("ascii")
        cells.append(
            f'<figure><img alt="{esc(figure.name)}" src="data:image/png;base64,{encoded}">'
            f"<figcaption>{caption}</figcaption></figure>"
        )
    return f'<div class="figures">{"".join(cells)}</div>'
