"""`scale fit`: fit scaling laws to a results directory or a table, write fit.json and show the fitted laws."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from rich.table import Table

from scaling_cli.cli.render import interval, note, number, out, output_file, print_json_text, warn

if TYPE_CHECKING:
    from scaling_cli.fit.results import Backtest, FitResult, GroupFit, LawFit, Recommendation

HELP = """Fit scaling laws to a results directory or a .parquet/.csv table and write fit.json.

Laws: chinchilla (Approach 3, L = E + A/N^alpha + B/D^beta), kaplan (L(N), L(D), L(C)), envelope
(Approach 1), isoflop (Approach 2), a linear baseline, and constrained (Muennighoff et al.'s data-constrained
law, with R* the repetition half-life; needs a unique_tokens column); by default every law the data supports.
Bootstrap intervals (default 200 resamples), an optional holdout check, and --backtest: fit below a
compute cut, predict the runs above it, and record the law and point filter that `scale predict` uses.
A law the data cannot identify is reported as such (exit 0); fit.json says which and why.

Example: scale fit results/demo --holdout 3 --by dataset

Example: scale fit results/demo --backtest

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
    u_col: str | None = typer.Option(
        None, "--u-col", help="Column of unique training tokens U for --law constrained (default unique_tokens)."
    ),
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
        None, "--law", help="chinchilla, kaplan, envelope, isoflop, linear, constrained (repeat or comma list)."
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
    backtest: bool = typer.Option(
        False, "--backtest", help="Fit below a compute cut, predict the runs above; choose the law predict uses."
    ),
    fix: list[str] = typer.Option(
        None, "--fix", help="Hold a law parameter at a value (repeatable): --fix alpha=0.34 (constrained law)."
    ),
    backtest_cut: float | None = typer.Option(
        None, "--backtest-cut", help="Compute cut of --backtest (default: hold out the top budgets, 15% of runs)."
    ),
    out_path: Path | None = typer.Option(
        None,
        "--out",
        help="A directory for the fit (created when missing), or a file name ending in .json "
        "(default: RESULTS/fit.json, or <table stem>.fit.json beside a table).",
    ),
    skip_bad_rows: bool = typer.Option(
        False, "--skip-bad-rows", help="Leave out table rows whose N, D, C or loss is not a positive number."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the fit.json document instead of the table."),
) -> None:
    from scaling_cli.fit import FitOptions, TableOptions, fit_all, parse_laws, write_fit
    from scaling_cli.fit.pipeline import parse_fixed

    table = TableOptions(
        n_col=n_col,
        d_col=d_col,
        c_col=c_col,
        loss_col=loss_col,
        u_col=u_col,
        query=query,
        params=params,
        flops=flops,
        by=by,
        drop_highest_loss=drop_highest_loss,
        skip_bad_rows=skip_bad_rows,
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
        backtest=backtest or backtest_cut is not None,
        backtest_cut=backtest_cut,
        fixed=parse_fixed(fix),
    )
    target = output_file(out_path, default_fit_path(source), ".json")  # a bad --out fails before the fit
    from scaling_cli.fit.results import FitResult

    fit = FitResult.of(fit_all(source, table, options))
    write_fit(fit, target)
    if as_json:
        print_json_text(json.dumps(fit.to_json(), indent=1))
    else:
        print_fit(fit, target)


def default_fit_path(source: Path) -> Path:
    """RESULTS/fit.json, or <table stem>.fit.json beside a table (two tables in one folder keep their own)."""
    return source / "fit.json" if source.is_dir() else source.with_name(f"{source.stem}.fit.json")


def _law_rows(name: str, law: LawFit) -> list[tuple[str, str, str, str]]:
    """(law, parameter, value, interval) rows of one fitted law, as the law lists them."""
    from scaling_cli.fit import law as registry

    return [(label, key, number(value), interval(span)) for label, key, value, span in registry.get(name).rows(law)]


def _law_note(name: str, law: LawFit) -> str:
    if not law.identified:
        return "NOT IDENTIFIED (no allocation, not drawn as a law): " + "; ".join(law.problems)
    from scaling_cli.fit import law as registry

    return registry.get(name).summary(law)


def _titled_table(title: str, columns: tuple[str, ...]) -> Table:
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column)
    return table


def print_fit(fit: FitResult, path) -> None:
    """A fit: rows used, conventions, per group every law with intervals, status and notes."""
    rows = fit.rows
    excluded = ", ".join(f"{k} {v}" for k, v in rows["excluded"].items() if v) or "none"
    note(f"{fit.source}: {rows['used']} of {rows['total']} rows used (excluded: {excluded})")
    bad = rows.get("bad_rows") or []
    for line in bad[:5]:
        note(f"  left out {line}")
    if rows["excluded"].get("non_finite", 0) > len(bad[:5]):
        note(f"  ... {rows['excluded']['non_finite'] - len(bad[:5])} more bad values (fit.json rows.bad_rows)")
    note(f"conventions: N = {fit.conventions['n']}; C = {fit.conventions['c'].removeprefix('C = ')}")
    note(f"compute convention: {fit.compute_convention['description']}")
    grouping = fit.grouping
    if grouping.get("groups") or grouping.get("selected"):
        note(
            f"grouping: averaged over {', '.join(grouping['averaged'])}; groups by "
            f"{', '.join(grouping['groups']) or '-'}; best of {', '.join(grouping['selected']) or '-'} kept"
        )
    choices = fit.selection["lr_choices"]
    if choices and "lr" in choices[0]:
        chosen = sorted({c["lr"] for c in choices})
        counts = ", ".join(f"{lr:g} at {sum(c['lr'] == lr for c in choices)}" for lr in chosen)
        note(f"best lr of {len(choices)} (N, D) pairs run at several settings: {counts}")
    for name, group in fit.groups.items():
        _print_group(name, group)
    note(f"wrote {path}")
    print_verdicts(fit)


def _print_group(name: str, group: GroupFit) -> None:
    table = _titled_table(f"group {name}: {group.n_points} points", ("law", "parameter", "value", "95% interval"))
    for law_name, law in group.laws.items():
        law_rows = _law_rows(law_name, law)
        for i, row in enumerate(law_rows):
            table.add_row(*row, end_section=i == len(law_rows) - 1)
    out.print(table)
    for law_name, law in group.laws.items():
        note(f"{law_name}: {_law_note(law_name, law)}")
    for law_name, why in group.skipped.items():
        note(f"skipped {law_name}: {why}")
    if group.lr:
        _print_lr(group.lr)
    if group.holdout:
        holdout = group.holdout
        mape = ", ".join(f"{k} {number(v)}%" for k, v in holdout["mape"].items())
        note(f"holdout: fitted on {holdout['fitted_on']}, {holdout['held_out']} held out; MAPE {mape}")
    if group.backtest is not None:
        _print_backtest(group.backtest)


def _print_lr(summary: dict) -> None:
    """The learning rate chosen per size, the grid tried, and a warning per size whose best lr is at its edge."""
    table = _titled_table(f"lr per size ({summary['chosen_at']})", ("N", "at D", "best lr", "tried", "edge"))
    for size in summary["sizes"]:
        tried = ", ".join(
            f"{lr:g}" + (" (diverged)" if loss is None else "") for lr, loss in zip(size["tried"], size["losses"])
        )
        table.add_row(number(size["N"]), number(size["D"]), f"{size['lr']:g}", tried, size["edge"] or "-")
    out.print(table)
    for warning in summary["warnings"]:
        note(f"warning: {warning}")


def _print_backtest(backtest: Backtest) -> None:
    if backtest.skipped is not None:
        note(f"backtest skipped: {backtest.skipped}")
        return
    title = (
        f"backtest: fitted on {backtest.fitted_on} runs with C < {backtest.cut:.3g}, "
        f"predicting {backtest.held_out} runs up to x{backtest.C_ratio:.3g} their compute"
    )
    title += f"; every filter scored on the {backtest.scored} {backtest.scored_on}"
    table = _titled_table(title, ("filter", "fitted on", "law", "mean |error| %", "max |error| %"))
    for candidate in backtest.candidates:
        for law, scored in candidate["laws"].items():
            cells = tuple("n/a" if v is None else f"{v:.3f}" for v in (scored["mape"], scored["max_error"]))
            if scored["status"] != "ok":
                cells = (f"({cells[0]}) not identified", f"({cells[1]}) " + "; ".join(scored.get("problems", [])))
            table.add_row(candidate["filter"], str(candidate["fitted_on"]), law, *cells)
        for law, why in candidate["skipped"].items():
            table.add_row(candidate["filter"], str(candidate["fitted_on"]), law, "skipped", why)
    out.print(table)
    chosen = backtest.recommended
    if not chosen:
        note("backtest's choice: none (no law could be scored)")
        return
    if chosen.fit is not None and not chosen.fit.identified:
        note(
            f"backtest's choice {chosen.law} on {chosen.filter} is withheld from predict: "
            + "; ".join(chosen.fit.problems or ["not identified"])
        )
        return
    note(f"recommended for predict: {chosen.law} on {chosen.filter} ({_procedure_error(chosen)})")


def _procedure_error(chosen: Recommendation) -> str:
    """The selection procedure's error on runs it never saw, and how many runs that rests on."""
    if chosen.expected_error is None:
        return "expected extrapolation error unknown: too few runs for a rolling backtest of the choice"
    weak = "; weak evidence: fewer than 5 runs" if chosen.weak else ""
    return (
        f"expected extrapolation error {chosen.expected_error:.2f}%, max {chosen.max_error:.2f}%, "
        f"over {chosen.scored} runs above rolling cuts{weak}"
    )


def print_verdicts(fit: FitResult, compute: float | None = None) -> None:
    """The one-line answer per group that `scale predict` opens with, at 10x the largest compute by default."""
    from scaling_cli.fit.predict import predict

    for name, group in fit.groups.items():
        at = compute or 10.0 * float(group.range["C"][1])
        answer = predict(fit, compute=at, group=name)["groups"][name]
        note(f"verdict: {answer['verdict']}")
        for warning in answer["warnings"]:
            warn(f"warning: group {name}: {warning}")
