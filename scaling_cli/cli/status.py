"""`scale status`: a results directory's runs per state, compute spent and remaining, failures, and where things are."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from scaling_cli.cli.render import note, out, say, si, state_counts


def status_command(
    results_dir: Path = typer.Argument(..., metavar="DIR", help="A sweep's results directory."),
    as_json: bool = typer.Option(False, "--json", help="Print the status as JSON."),
    summary: bool = typer.Option(
        False, "--summary", help="Also say where the table, fit and figures are, and print the fitted law in one line."
    ),
) -> int:
    """Show a sweep's runs per state, compute spent and remaining, and failed runs with their errors.

    Example: scale status results/demo --summary
    """
    from scaling_cli.store_status import status

    info = status(results_dir)
    if as_json:
        out.print_json(json.dumps(info))
        return 0
    say(f"{info['root']}: {info['planned']} planned runs: {state_counts(info['counts'], skip_zero=False)}")
    note(f"compute spent {si(info['flops_spent'], 'FLOP')}, remaining {si(info['flops_remaining'], 'FLOP')}")
    for failed in info["failed"]:
        say(f"failed {failed['run_id']} after {failed['attempts']} attempt(s): {failed['error']}")
    for partial in info["progress"]:
        say(_progress_line(partial))
    if info["tables"]:
        say(
            f"tables disagree with the run files: {'; '.join(info['tables'])}; "
            "rerun `scale sweep` on this directory to rebuild them"
        )
    if summary:
        _print_summary(info)
    return 0


def _progress_line(partial: dict) -> str:
    """An unsettled run's progress: its newest evaluation and, when interrupted, where it resumes."""
    parts = [f"{partial['state']:<11} {partial['run_id']}"]
    if partial["step"] is not None:
        loss = partial["val_loss"]
        parts.append(
            f"step {partial['step']}/{partial['steps']} tokens {si(partial['tokens'])}/{si(partial['tokens_total'])}"
            + (f" val_loss={loss:.4f}" if isinstance(loss, float) else "")
        )
    if partial["checkpoint_step"] is not None:
        parts.append(f"checkpoint at step {partial['checkpoint_step']}")
    return " ".join(parts)


def _print_summary(info: dict) -> None:
    root = Path(info["root"])
    say(f"runs:    {root / 'runs.parquet'} ({state_counts(info['counts']) or 'no runs'})")
    say(f"curves:  {root / 'curves.parquet'}")
    if (root / "fit.json").is_file():
        say(f"fit:     {root / 'fit.json'}")
        law = _fitted_law_line(root / "fit.json")
        if law:
            say(law)
    figures = sorted((root / "figures").glob("*")) if (root / "figures").is_dir() else []
    if figures:
        say(f"figures: {root / 'figures'} ({len(figures)} files)")


def _fitted_law_line(fit_path: Path) -> str | None:
    """The preferred run-loss law (Approach 3 first) of the first group of a fit.json in one line, or None."""
    from scaling_cli.errors import ScaleError
    from scaling_cli.fit import law as registry
    from scaling_cli.fit.fitdoc import load_fit

    try:
        name, group = next(iter(load_fit(fit_path).groups.items()))
    except (ScaleError, StopIteration):
        return None
    shown = [law for law in registry.preferred(for_compute=False) if registry.get(law).formula(None) is not None]
    law_name = next((law for law in shown if law in group.laws), shown[0])
    law = group.laws.get(law_name)
    if law is None or not law.params:
        return f"fitted law ({name}): none, {law_name} law {group.skipped.get(law_name, 'not fitted')}"
    r2_text = f", R^2 = {law.r2:.3f}" if isinstance(law.r2, (int, float)) else ""
    verdict = "" if law.identified else "; NOT IDENTIFIED: " + "; ".join(law.problems)
    return f"fitted law ({name}): {registry.get(law_name).formula(law)}{r2_text}{verdict}"
