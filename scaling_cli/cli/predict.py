"""`scale predict`: the compute-optimal N and D for a budget, or the loss of a run, from a fit.json."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from scaling_cli.cli.render import print_json_text, print_predictions

HELP = """Predict from a fit.json: the compute-optimal N and D for a FLOP budget, or the loss of a run.

Intervals are bootstrap percentiles from the samples stored in fit.json.

Example: scale predict results/demo/fit.json --compute 1e18

Example: scale predict fit.json --params 1e8 --tokens 2e9
"""


def predict_command(
    fit_path: Path = typer.Argument(Path("fit.json"), help="A fit.json, or a results directory holding one."),
    compute: float | None = typer.Option(None, "--compute", help="FLOP budget to split into N_opt and D_opt."),
    params_count: float | None = typer.Option(None, "--params", help="Parameters N of a run to predict."),
    tokens: float | None = typer.Option(None, "--tokens", help="Training tokens D of a run to predict."),
    group: str | None = typer.Option(None, "--group", help="Only this group of a --by fit."),
    as_json: bool = typer.Option(False, "--json", help="Print the predictions as JSON."),
) -> None:
    from scaling_cli.fit import predict
    from scaling_cli.fit.predict import load_fit

    result = predict(load_fit(fit_path), compute=compute, params=params_count, tokens=tokens, group=group)
    if as_json:
        print_json_text(json.dumps(result, indent=1))
    else:
        print_predictions(result)
