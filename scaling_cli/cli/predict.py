"""`scale predict`: the compute-optimal N and D for a budget, or the loss of a run, from a fit.json."""

from __future__ import annotations

from pathlib import Path

import typer

from rich.table import Table

from scaling_cli.cli.render import interval, note, number, out, print_result, warn

HELP = """Predict from a fit.json: the compute-optimal N and D for a FLOP budget, or the loss of a run.

The first line is the verdict: what to train (or the run's loss), the loss to expect, their 95% prediction
intervals, how far past the data and how much to trust it. Intervals combine the bootstrap's parameter
uncertainty, the noise of one run and an extrapolation term that grows with distance past the largest fitted
compute, estimated from rolling backtests (see fit.json's `calibration`). The recommended law is the one
`scale fit --backtest` chose, else the first identified law; warnings say when identified approaches
disagree beyond their intervals and when D_opt would repeat the training data. Every allocation spends
exactly the compute asked for under the fit's FLOP convention.

Example: scale predict results/demo/fit.json --compute 1e18

Example: scale predict fit.json --params 1e8 --tokens 2e9
"""


def predict_command(
    fit_path: Path = typer.Argument(Path("fit.json"), help="A fit.json, or a results directory holding one."),
    compute: float | None = typer.Option(None, "--compute", help="FLOP budget to split into N_opt and D_opt."),
    params_count: float | None = typer.Option(None, "--params", help="Parameters N of a run to predict."),
    tokens: float | None = typer.Option(None, "--tokens", help="Training tokens D of a run to predict."),
    unique_tokens: float | None = typer.Option(
        None, "--unique-tokens", help="Unique tokens U of that run (data-constrained law; default U = D)."
    ),
    group: str | None = typer.Option(None, "--group", help="Only this group of a --by fit."),
    as_json: bool = typer.Option(False, "--json", help="Print the predictions as JSON."),
) -> None:
    from scaling_cli.fit import predict
    from scaling_cli.fit.predict import load_fit

    result = predict(
        load_fit(fit_path),
        compute=compute,
        params=params_count,
        tokens=tokens,
        group=group,
        unique_tokens=unique_tokens,
    )
    print_result(result, as_json, print_predictions)


def _cell(row: dict, key: str) -> str:
    return f"{number(row.get(key))} {interval(row.get(key + '_interval'))}".strip()


def _reach(row: dict) -> str:
    """'x12 C, x3.1 N, x4 D' from a row's extrapolation."""
    ratios = row.get("extrapolation") or {}
    parts = [
        f"x{ratios[k]:.3g} {v}" for k, v in (("C_ratio", "C"), ("N_ratio", "N"), ("D_ratio", "D")) if ratios.get(k)
    ]
    return ", ".join(parts)


def _law_cells(row: dict, keys) -> list[str]:
    if row.get("status", "ok") != "ok":
        return ["not identified"] + [""] * (len(keys) - 1) + ["; ".join(row.get("problems", []))]
    if row.get("loss", 0) is None and "N_opt" not in row:
        return [""] * len(keys) + [row.get("note", "")]
    return [_cell(row, key) for key in keys] + [_reach(row) or row.get("note", "")]


def _recommended_line(name: str, entry: dict) -> None:
    """The verdict, then the recommendation's evidence and every warning."""
    note(f"verdict: {entry['verdict']}")
    choice = entry.get("recommended")
    if choice:
        error = choice["expected_error"]
        expected = (
            f"expected error {error:.2f}% over {choice['scored']} backtest runs" + (" (weak)" if choice["weak"] else "")
            if error is not None
            else "expected error unknown: too few runs for a rolling backtest"
            if choice["source"] == "backtest"
            else choice["source"]
        )
        note(f"group {name}: recommended law {choice['law']} on {choice['filter']}, {expected}")
        for kind in ("compute", "run"):
            row = choice.get(kind)
            if row and (row.get("extrapolation") or {}).get("warning"):
                warn(f"warning: group {name}: {row['extrapolation']['warning']}")
    for warning in entry.get("warnings", []):
        warn(f"warning: group {name}: {warning}")


def print_predictions(result: dict) -> None:
    """Per group: the recommendation, then every law's split of the budget and/or loss of the run."""
    for name, entry in result["groups"].items():
        choice = entry.get("recommended")
        _recommended_line(name, entry)
        if "compute" in entry:
            title = f"group {name}: compute-optimal split of C = {result['compute']:.3g} FLOPs"
            keys = ("N_opt", "D_opt", "tokens_per_param", "loss")
            table = _table(title, ("law", "N_opt", "D_opt", "tokens/param", "loss", "beyond the fitted runs"))
            if choice and choice.get("compute") and choice["source"] == "backtest":
                table.add_row(
                    f"{choice['law']} (recommended, {choice['filter']})", *_law_cells(choice["compute"], keys)
                )
            for law_name, row in entry["compute"].items():
                table.add_row(_mark(law_name, choice), *_law_cells(row, keys))
            out.print(table)
        if "run" in entry:
            title = f"group {name}: N = {result['params']:.4g}, D = {result['tokens']:.4g}"
            table = _table(title, ("law", "loss", "beyond the fitted runs"))
            if choice and choice.get("run") and choice["source"] == "backtest":
                table.add_row(
                    f"{choice['law']} (recommended, {choice['filter']})", *_law_cells(choice["run"], ("loss",))
                )
            for law_name, row in entry["run"].items():
                table.add_row(_mark(law_name, choice), *_law_cells(row, ("loss",)))
            out.print(table)


def _mark(law: str, choice: dict | None) -> str:
    if choice and choice["law"] == law and choice["source"] != "backtest":
        return f"{law} (recommended)"
    return law


def _table(title: str, columns: tuple[str, ...]) -> Table:
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column)
    return table
