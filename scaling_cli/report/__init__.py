"""`scale report`: one self-contained HTML page per results directory (figures inlined, no network).

`build_report(results)` returns the page as a string; `write_report(results, out=None)` writes it to
`RESULTS/report.html` (or `out`) atomically and returns the path. Every number on the page comes from
fit.json, runs.parquet, `scale status`, the data set's manifest.json or `fit.predict`, and carries
`data-source`, `data-key` and `data-value` attributes saying which (see `scaling_cli.report.markup.num`).
"""

from __future__ import annotations

from pathlib import Path

from scaling_cli import atomic
from scaling_cli.errors import StoreError
from scaling_cli.report import appendix, datasets, predictions, sections
from scaling_cli.report.gather import ReportInputs, gather
from scaling_cli.report.markup import page
from scaling_cli.report.verdict import verdict

REPORT_NAME = "report.html"

__all__ = ["REPORT_NAME", "ReportInputs", "build_report", "gather", "render", "write_report"]


def build_report(results: str | Path) -> str:
    """The report page of a results directory."""
    return render(gather(Path(results)))


def render(inputs: ReportInputs) -> str:
    name = inputs.spec.get("name") or inputs.results.name
    return page(
        f"scale report: {name}",
        sections.header(inputs),
        [
            ("verdict", "Verdict: what to train next", verdict(inputs)),
            ("run", "What was run", sections.what_was_run(inputs)),
            ("laws", "Fitted laws", sections.fitted_laws(inputs)),
            ("optimal", "Compute-optimal N and D", predictions.compute_optimal(inputs)),
            ("data", "Data", datasets.data(inputs)),
            ("failures", "Failures and diverged runs", appendix.failures(inputs)),
            ("figures", "Figures", appendix.figures(inputs)),
        ],
    )


def write_report(results: str | Path, out: str | Path | None = None) -> Path:
    """Write the page to `out` (default RESULTS/report.html) atomically; StoreError when it cannot be written."""
    results = Path(results)
    text = build_report(results)
    target = Path(out) if out is not None else results / REPORT_NAME
    try:
        atomic.write_text(target, text)
    except OSError as exc:
        raise StoreError(str(target), "", f"cannot write the report: {exc.strerror or exc}") from None
    return target
