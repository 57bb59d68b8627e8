"""The `scale` command line: parse options, call the library, render results, map errors to exit codes.

This is the only module that prints or exits. Exit codes: 0 success, 1 the command ran but some runs
failed, 2 bad input (one line `error: <where>: <field>: <problem>` on stderr, no traceback unless
`--debug` or SCALE_DEBUG=1).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Optional

import click
import typer
from rich.console import Console
from rich.table import Table

from scaling_cli import __version__
from scaling_cli.errors import ScaleError

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)

app = typer.Typer(
    name="scale",
    help="Run scaling-law sweeps of small GPTs, fit Kaplan and Chinchilla laws, and plot them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
data_app = typer.Typer(help="Prepare corpora and inspect prepared data sets.", no_args_is_help=True)
app.add_typer(data_app, name="data")


def _version(value: bool) -> None:
    if value:
        out.print(f"scale {__version__}")
        raise typer.Exit(0)


@app.callback()
def root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors (or set SCALE_DEBUG=1)."),
) -> None:
    """Scaling-law experiments: `scale sweep`, then `scale fit`, then `scale plot`."""
    if debug:
        os.environ["SCALE_DEBUG"] = "1"


def _fail_usage(where: str, field: str, problem: str) -> None:
    from scaling_cli.errors import SpecError

    raise SpecError(where, field, problem)


def _debug() -> bool:
    return os.environ.get("SCALE_DEBUG", "") not in ("", "0")


def _usage_line(exc: click.exceptions.UsageError) -> str:
    param = getattr(exc, "param", None)
    where = "/".join(param.opts) if param is not None and getattr(param, "opts", None) else "scale"
    if param is not None and not getattr(param, "opts", None):
        where = param.human_readable_name
    message = exc.format_message().replace("\n", " ")
    return f"{where}: {message}"


# ---- data commands (owned by the data work; add code only inside this section) ----
# ---- end data ----

# ---- sweep commands (owned by the sweep work; add code only inside this section) ----
# ---- end sweep ----

# ---- status commands (owned by the status work; add code only inside this section) ----
# ---- end status ----

# ---- fit commands (owned by the fit work; add code only inside this section) ----
# ---- end fit ----

# ---- predict commands (owned by the predict work; add code only inside this section) ----
# ---- end predict ----

# ---- plot commands (owned by the plot work; add code only inside this section) ----
# ---- end plot ----


def main() -> None:
    """Console-script entry point: run the app and turn errors into one line and an exit code."""
    if os.environ.get("SCALE_DEBUG") is None and "--debug" in sys.argv[1:]:
        os.environ["SCALE_DEBUG"] = "1"
    try:
        code = app(args=sys.argv[1:], prog_name="scale", standalone_mode=False)
    except ScaleError as exc:
        if _debug():
            raise
        err.print(f"error: {exc.line()}", soft_wrap=True, markup=False)
        sys.exit(2)
    except click.exceptions.UsageError as exc:
        if _debug():
            raise
        err.print(f"error: {_usage_line(exc)}", soft_wrap=True, markup=False)
        sys.exit(2)
    except (click.exceptions.Abort, KeyboardInterrupt):
        err.print("interrupted", markup=False)
        sys.exit(130)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
