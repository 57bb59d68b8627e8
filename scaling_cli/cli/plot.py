"""`scale plot`: draw a scaling study's figures from a results directory or a table, reporting skipped ones."""

from __future__ import annotations

from pathlib import Path

import typer

from scaling_cli.cli.render import note, out


def plot_command(
    source: Path = typer.Argument(..., help="A results directory, or a CSV/parquet table of runs."),
    fit_file: Path | None = typer.Option(
        None, "--fit", help="fit.json to draw (default: SOURCE/fit.json; fitted now when there is none)."
    ),
    out_dir: Path | None = typer.Option(
        None, "--out", help="Directory for the figures (default: SOURCE/figures, or figures/ next to a table)."
    ),
    fmt: str = typer.Option("png", "--format", help="png (200 dpi), pdf or svg."),
    only: str | None = typer.Option(None, "--only", help="Make just this figure (for example isoflop)."),
    n_col: str | None = typer.Option(None, "--n-col", help="Table column of parameters N (default params)."),
    d_col: str | None = typer.Option(None, "--d-col", help="Table column of tokens D (default C/(6N))."),
    c_col: str | None = typer.Option(None, "--c-col", help="Table column of compute C (default flops)."),
    loss_col: str | None = typer.Option(None, "--loss-col", help="Table column of loss (default val_loss)."),
    query: str | None = typer.Option(None, "--query", help="Keep only table rows matching this pandas query."),
    drop_highest_loss: int = typer.Option(0, "--drop-highest-loss", help="Leave out the k highest-loss rows."),
    skip_bad_rows: bool = typer.Option(
        False, "--skip-bad-rows", help="Leave out table rows whose N, D, C or loss is not a positive number."
    ),
) -> None:
    """Draw the figures of a scaling study: loss_vs_compute, isoflop, optimal_allocation, parametric_fit,
    extrapolation, compression, data_axis. A figure the data cannot support is skipped with its reason.

    Example: scale plot results/demo

    Example: scale plot results/demo --format pdf --only loss_vs_compute --out paper/figures

    Example: scale plot ../shared/data/chinchilla_svg_extracted_data.csv --n-col "Model Size"
    --c-col "Training FLOP" --loss-col loss --drop-highest-loss 5 --out /tmp/chinchilla-figures
    """
    from rich.markup import escape

    from scaling_cli.fit.table import TableOptions
    from scaling_cli.plot import make_figures

    table = TableOptions(
        n_col=n_col,
        d_col=d_col,
        c_col=c_col,
        loss_col=loss_col,
        query=query,
        drop_highest_loss=drop_highest_loss,
        skip_bad_rows=skip_bad_rows,
    )
    made = make_figures(source, fit_path=fit_file, out_dir=out_dir, fmt=fmt, only=only, table=table)
    for name, path, reason in made:
        if path is not None:
            out.print(f"[green]made[/green]     {name:<19} {escape(str(path))}", soft_wrap=True)
        else:
            out.print(f"[yellow]skipped[/yellow]  {name:<19} {escape(reason)}", soft_wrap=True)
    count = sum(path is not None for _, path, _ in made)
    note(f"{count} of {len(made)} figures written")
