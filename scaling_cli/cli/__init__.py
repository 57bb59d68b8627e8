"""The `scale` command line: builds the typer app from one module per command and maps errors to exit codes.

This package is the only code that prints or exits. Exit codes, all decided in `main`: 0 success, 1 the
command ran but some runs failed, 2 bad input (one line `error: <where>: <field>: <problem>` on stderr, no
traceback unless `--debug` or SCALE_DEBUG=1), 130 interrupted.
"""

from __future__ import annotations

import os
import sys

import typer

from scaling_cli import __version__
from scaling_cli.cli import data, export, fit, plot, predict, report, status, sweep
from scaling_cli.cli import suggest as suggest_cli
from scaling_cli.cli.render import err, out
from scaling_cli.errors import ScaleError

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
data_app.command("list")(data.data_list)
data_app.command("prepare")(data.data_prepare)
data_app.command("stats")(data.data_stats)
app.command("sweep")(sweep.sweep_command)
app.command("status")(status.status_command)
app.command("fit", help=fit.HELP)(fit.fit_command)
app.command("predict", help=predict.HELP)(predict.predict_command)
app.command("plot")(plot.plot_command)
app.command("report")(report.report_command)
app.command("export")(export.export_command)
app.command("suggest", help=suggest_cli.HELP)(suggest_cli.suggest_command)


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
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):  # typer itself returns 130 for a Ctrl-C inside a command
        err.print("interrupted", markup=False)
        sys.exit(130)
    except Exception as exc:
        if not _is_usage_error(exc):
            raise
        if _is_no_args_help(exc):
            out.print(exc.ctx.get_help(), markup=False)
            sys.exit(0)
        if _debug():
            raise
        err.print(f"error: {_usage_line(exc)}", soft_wrap=True, markup=False)
        sys.exit(2)
    sys.exit(code if isinstance(code, int) else 0)


def _debug() -> bool:
    return os.environ.get("SCALE_DEBUG", "") not in ("", "0")


def _is_usage_error(exc: Exception) -> bool:
    """A command-line usage error: typer's own `TyperException` (typer >= 0.2x ships its click inside), or
    click's `ClickException` for older typer that raises click's classes (click is then installed)."""
    if isinstance(exc, getattr(typer, "TyperException", ())):
        return True
    try:
        import click
    except ImportError:
        return False
    return isinstance(exc, click.ClickException)


def _is_no_args_help(exc: Exception) -> bool:
    """The usage error a group raises when called without arguments: its message is the help page.

    Recognised by its class name, as typer itself does (typer.rich_utils), since the class is not public.
    """
    return type(exc).__name__ == "NoArgsIsHelpError" and getattr(exc, "ctx", None) is not None


def _usage_line(exc: Exception) -> str:
    """`<option or argument>: <problem>` for a command-line usage error."""
    option = getattr(exc, "option_name", None)
    param = getattr(exc, "param", None)
    if option:
        where = option
    elif param is not None:
        where = "/".join(getattr(param, "opts", None) or []) or param.human_readable_name
    else:
        where = "scale"
    message = exc.format_message().replace("\n", " ").strip()
    return f"{where}: {message[:1].lower() + message[1:]}"


if __name__ == "__main__":
    main()
