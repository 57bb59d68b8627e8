"""`scale report`: write a results directory's report.html (one self-contained page) and print its path."""

from __future__ import annotations

from pathlib import Path

import typer

from scaling_cli.cli.render import output_file, say


def report_command(
    results: Path = typer.Argument(..., help="A results directory (runs.parquet, fit.json, spec.toml)."),
    out_file: Path | None = typer.Option(
        None, "--out", help="A directory for report.html, or a file name ending in .html (default RESULTS/)."
    ),
) -> None:
    """Write one self-contained HTML page of a sweep: what was run, the fitted laws with intervals and backtest
    errors, compute-optimal N and D at 10x and 100x the largest run, the data, failures, and every figure.

    The page needs no network (figures are inlined); open it in any browser. Run `scale fit` first for the
    laws; without a fit.json the page still shows the runs and says what is missing.

    Example: scale report results/demo
    """
    from scaling_cli.report import REPORT_NAME, write_report

    say(str(write_report(results, output_file(out_file, results / REPORT_NAME, ".html"))))
