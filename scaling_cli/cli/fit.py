"""`scale fit`: fit scaling laws to a results directory or a table, write fit.json and show the fitted laws."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from scaling_cli.cli.render import print_fit, print_json_text

HELP = """Fit scaling laws to a results directory or a .parquet/.csv table and write fit.json.

Laws: chinchilla (Approach 3, L = E + A/N^alpha + B/D^beta), kaplan (L(N), L(D), L(C)), envelope
(Approach 1), isoflop (Approach 2) and a linear baseline; by default every law the data supports.
Bootstrap intervals (default 200 resamples) and an optional holdout extrapolation check.

Example: scale fit results/demo --holdout 3 --by dataset

Example: scale fit chinchilla.csv --n-col "Model Size" --c-col "Training FLOP" --loss-col loss --drop-highest-loss 5
"""


def fit_command(
    source: Path = typer.Argument(
        ..., help="A results directory (runs.parquet, curves.parquet) or a .parquet/.csv table."
    ),
    n_col: str | None = typer.Option(None, "--n-col", help="Column of parameter counts N (default: --params)."),
    d_col: str | None = typer.Option(
        None, "--d-col", help="Column of training tokens D (default tokens; else C/(6N))."
    ),
    c_col: str | None = typer.Option(None, "--c-col", help="Column of training FLOPs C (default: --flops; else 6ND)."),
    loss_col: str | None = typer.Option(None, "--loss-col", help="Column of losses (default val_loss, else loss)."),
    query: str | None = typer.Option(
        None, "--query", help="pandas query selecting rows, e.g. 'dataset == \"markov\"'."
    ),
    drop_highest_loss: int = typer.Option(0, "--drop-highest-loss", help="Leave out the k rows with the highest loss."),
    params: str = typer.Option(
        "params", "--params", help="Parameter count of a results directory: params or params_nonembed."
    ),
    flops: str = typer.Option(
        "flops", "--flops", help="FLOP count of a results directory: flops (Appendix F) or flops_6nd."
    ),
    by: str | None = typer.Option(None, "--by", help="Fit each value of this column separately, e.g. dataset."),
    law: list[str] | None = typer.Option(
        None, "--law", help="chinchilla, kaplan, envelope, isoflop, linear (repeat or comma list)."
    ),
    bootstrap: int = typer.Option(200, "--bootstrap", help="Bootstrap resamples for intervals (0 = none)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap resamples."),
    holdout: str | None = typer.Option(
        None, "--holdout", help="Hold out the k highest-compute runs (5) or runs with C >= a FLOP threshold (1e15)."
    ),
    huber_delta: float = typer.Option(1e-3, "--huber-delta", help="Huber delta on log loss for the chinchilla law."),
    at_compute: float | None = typer.Option(
        None, "--at-compute", help="Compute for the reported N_opt, D_opt and loss (default 10x the largest)."
    ),
    no_irreducible: bool = typer.Option(
        False, "--no-irreducible", help="Fit Kaplan laws without the irreducible term E."
    ),
    budget_tolerance: float = typer.Option(
        0.1, "--budget-tolerance", help="Relative compute difference within one isoFLOP budget."
    ),
    out_path: Path | None = typer.Option(
        None, "--out", help="Where to write fit.json (default: beside the runs or table)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the fit.json document instead of the table."),
) -> None:
    from scaling_cli.fit import FitOptions, TableOptions, fit_all, parse_laws, write_fit

    table = TableOptions(
        n_col=n_col,
        d_col=d_col,
        c_col=c_col,
        loss_col=loss_col,
        query=query,
        params=params,
        flops=flops,
        by=by,
        drop_highest_loss=drop_highest_loss,
    )
    options = FitOptions(
        laws=parse_laws(law),
        bootstrap=bootstrap,
        seed=seed,
        holdout=holdout,
        delta=huber_delta,
        at_compute=at_compute,
        irreducible=not no_irreducible,
        budget_tolerance=budget_tolerance,
    )
    document = fit_all(source, table, options)
    target = out_path or (source / "fit.json" if source.is_dir() else source.with_name("fit.json"))
    write_fit(document, target)
    if as_json:
        print_json_text(json.dumps(document, indent=1))
    else:
        print_fit(document, target)
