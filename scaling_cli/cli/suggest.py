"""`scale suggest`: the next runs that most narrow the prediction at a target compute, within a FLOP budget;
`--simulate` checks the design on known laws against naive ways of spending the same compute."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import typer

from rich.table import Table

from scaling_cli.cli.render import note, out, output_file, print_json_text, print_result, si, warn

HELP = """Propose the next runs: those that most narrow the interval of ln N_opt at a target compute (and,
with --objective both, of the loss there) for a FLOP budget.

It fits Approach 3 with bootstrap refits, linearises the law at the fit and at each refit, and grows a
design greedily by expected narrowing per FLOP over candidates on the sweep's own shapes (its widths and
larger ones on its depth/head rule, up to --extension x its largest N; its token budgets and up to
--extension x the largest; and, when the runs at the smallest size and budget sit on the fitted law, smaller
ones down to the smallest / --below). Each step adds one (size, budget) cell; --out writes the chosen cells as a spec
with the sweep's data, tokenizer and training settings (one explicit shape per size, with its own token
budgets): sweep it into the same directory. For a table the candidates are a log grid of N and D.

When the fit cannot say where the optimum is (fewer than 3 distinct sizes or budgets, an exponent <= 0),
it proposes nothing, prints why and what to add, and exits 0 (--json: "refused" holds the reason).

Example: scale suggest results/demo --budget 50% --out sweeps/next.toml

Example: scale suggest results/demo --target 1e15 --budget 2e13 --objective both

Example: scale suggest --simulate --laws 20
"""


def suggest_command(
    source: Path | None = typer.Argument(None, help="A results directory or a .parquet/.csv table."),
    budget: str = typer.Option("50%", "--budget", help="FLOPs to spend (2e13), or a share of the sweep's (50%)."),
    target: float | None = typer.Option(
        None, "--target", help="Target compute C for N_opt and the loss (default 100x the largest run)."
    ),
    objective: str = typer.Option("n_opt", "--objective", help="What to narrow: n_opt, loss or both."),
    out_path: Path | None = typer.Option(
        None, "--out", help="Write the proposal as a sweep spec: a file ending in .toml, or a directory (next.toml)."
    ),
    group: str | None = typer.Option(None, "--group", help="The group of a fit with several (see scale fit --by)."),
    scenarios: int = typer.Option(30, "--scenarios", help="Bootstrap refits the design averages over."),
    extension: float = typer.Option(4.0, "--extension", help="Candidates reach this factor beyond the largest N, D."),
    seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap (and of --simulate)."),
    n_col: str | None = typer.Option(None, "--n-col", help="Column of parameter counts N of a table."),
    d_col: str | None = typer.Option(None, "--d-col", help="Column of training tokens D of a table."),
    c_col: str | None = typer.Option(None, "--c-col", help="Column of training FLOPs C of a table."),
    loss_col: str | None = typer.Option(None, "--loss-col", help="Column of losses of a table."),
    query: str | None = typer.Option(None, "--query", help="pandas query selecting rows, as in scale fit."),
    params: str = typer.Option("params", "--params", help="N of a results directory: params or params_nonembed."),
    simulate: bool = typer.Option(False, "--simulate", help="Run the design on simulated laws instead."),
    laws: int = typer.Option(20, "--laws", help="Laws to simulate with --simulate."),
    resamples: int = typer.Option(100, "--resamples", help="Bootstrap resamples per interval with --simulate."),
    below: float = typer.Option(
        1.0,
        "--below",
        help="Candidates also reach this factor below the smallest N and D, when the runs there fit the law "
        "(1: none below).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    from scaling_cli.errors import FitError

    if simulate:
        _simulate(laws, seed, scenarios, resamples, extension, below, as_json)
        return
    if source is None:
        raise FitError("SOURCE", "", "give a results directory or a table (or --simulate)")
    if out_path is not None and not (source.is_dir() and (source / "spec.toml").is_file()):
        raise FitError("--out", str(out_path), "a spec can only be written for a results directory with spec.toml")
    from scaling_cli.fit import TableOptions
    from scaling_cli.suggest import suggest

    command = " ".join(["scale", "suggest", *map(shlex.quote, sys.argv[2:])])
    result = suggest(
        source,
        budget=budget,
        target=target,
        objective=objective,
        group=group,
        scenarios=scenarios,
        seed=seed,
        extension=extension,
        below=below,
        table=TableOptions(n_col=n_col, d_col=d_col, c_col=c_col, loss_col=loss_col, query=query, params=params),
        out=output_file(out_path, source / "next.toml", ".toml") if out_path is not None else None,
        command=command,
    )
    print_result(result, as_json, print_suggestion)


def print_suggestion(result: dict) -> None:
    if result.get("refused"):
        note(f"no runs proposed: {result['refused']}")
        return
    at = result["at_target"]
    note(
        f"target C = {_flops(result['target'])}: N_opt {si(at['N_opt'])}, D_opt {si(at['D_opt'])}, "
        f"loss {at['loss']:.4g} (Approach 3, convention {result['convention']}); "
        f"budget {_flops(result['budget'])} FLOPs ({result['budget_note']})"
    )
    note(
        f"noise sigma {result['sigma']:.3g} (log loss, from {result['sigma_source']}); design averaged over "
        f"the fit and {result['scenarios'] - 1} bootstrap refits, each under {result['reweightings']} bootstrap "
        "reweightings of the runs"
    )
    if result.get("identified_note"):
        note(f"note: the current fit is not fully identified ({result['identified_note']}); the design aims at that")
    below = result["below"]
    if below["why_not"]:
        note(f"no candidates below the data's smallest size or budget: {below['why_not']}")
    elif below["used"] > 1.0:
        note(
            f"candidates reach {below['used']:g}x below the smallest size and budget (the runs there fit the law); "
            "--below 1 keeps them within the data's range"
        )
    if not result["steps"]:
        note("no affordable candidate narrows the interval: raise --budget or --extension")
        return
    table = Table(show_edge=False, pad_edge=False)
    for column in ("step", "size", "N", "tokens", "cost FLOPs", "N_opt interval", "narrower"):
        table.add_column(column, justify="left" if column == "size" else "right")
    for k, step in enumerate(result["steps"], 1):
        for i, run in enumerate(step["runs"]):
            last = i == len(step["runs"]) - 1
            table.add_row(
                str(k) if i == 0 else "",
                run.get("size", "-"),
                si(run["N"]),
                si(run.get("tokens", run["D"])),
                _flops(step["cost"]) if last else "",
                f"x{step['n_opt_factor']:.3g} wide" if last else "",
                f"{step['n_opt_narrower_pct']:.1f}%" if last else "",
            )
    out.print(table)
    predicted = result["predicted"]
    n_opt, loss = predicted["n_opt_factor"], predicted["loss_factor"]
    note(
        f"spent {_flops(result['spent'])} of {_flops(result['budget'])} FLOPs; predicted 95% interval of N_opt "
        f"x{n_opt['before']:.3g} -> x{n_opt['after']:.3g} wide, of the loss x{loss['before']:.4g} -> "
        f"x{loss['after']:.4g} (linearised at the current fit)"
    )
    repeating = [run for step in result["steps"] for run in step["runs"] if (run.get("epochs") or 0) > 1.0]
    if repeating:
        most = max(run["epochs"] for run in repeating)
        note(
            f"note: {len(repeating)} proposed runs pass over the training data more than once (up to {most:.2g} "
            "epochs); the fitted law does not model repetition, and repeated tokens are worth less than fresh ones"
        )
    spec = result.get("spec")
    if spec:
        note(
            f"wrote {spec['path']}: {spec['runs']} runs to train, {_flops(spec['remaining_flops'])} FLOPs by "
            f"the sweep's plan; next: scale sweep {spec['path']} --out {result['source']} "
            f"&& scale fit {result['source']}"
        )


def _flops(value: float) -> str:
    return f"{value:.3g}"


def _simulate(
    laws: int, seed: int, scenarios: int, resamples: int, extension: float, below: float, as_json: bool
) -> None:
    import numpy as np

    from scaling_cli.fit.simulate import NAIVE, SimulationOptions, simulate
    from scaling_cli.suggest import check_below

    check_below(below)
    options = SimulationOptions(
        laws=laws, seed=seed, scenarios=scenarios, resamples=resamples, extension=extension, below=below
    )

    def progress(index: int, result: dict) -> None:
        widths = ", ".join(f"{name} {score['width']:.3f}" for name, score in result["strategies"].items())
        warn(f"law {index + 1}/{laws}: ln N_opt interval {widths}" if widths else f"law {index + 1}: skipped")

    with np.errstate(all="ignore"):
        summary = simulate(options, on_law=progress)["summary"]
    if as_json:
        print_json_text(json.dumps(summary, indent=1))
        return
    table = Table(show_edge=False, pad_edge=False)
    for column in ("strategy", "extra FLOPs", "ln N_opt interval", "RMS error of ln N_opt"):
        table.add_column(column, justify="left" if column == "strategy" else "right")
    for name in ("design", *NAIVE):
        table.add_row(
            name,
            _flops(summary["mean_compute"][name]),
            f"{summary['mean_width'][name]:.3f}",
            f"{summary['rms_error'][name]:.3f}",
        )
    note(
        f"{summary['laws_used']} of {summary['laws']} simulated laws; first sweep 4 sizes x 5 budgets, noise "
        f"{options.noise:.0%} of the loss, extra compute {options.extra_compute:.0%} of the first sweep's, "
        f"target 100x its largest run; candidates from 1/{options.below:g} of the smallest to "
        f"{options.extension:g}x the largest N and D; interval: 95% width of ln N_opt "
        f"after the refit, {options.resamples} bootstrap resamples as scale fit reports it "
        f"(before: {summary['mean_width_before']:.3f})"
    )
    out.print(table)
    note(
        f"ratio (best naive: {summary['best_naive']}) / design: {summary['ratio']:.2f} "
        f"(median per law {summary['ratio_median_per_law']:.2f}; design narrower in "
        f"{summary['design_narrower_in']} of {summary['laws_used']})"
    )
    if options.below > 1.0:
        note(
            f"candidates below the first sweep left out in {summary['below_refused_in']} of {summary['laws_used']} "
            "laws (its smallest size or budget off the fitted law, as scale suggest checks)"
        )
    note("per law: " + " ".join(f"{r:.2f}" for r in summary["ratio_per_law"]))
