"""How results look on the terminal: the consoles, number formats, the sweep plan and the live sweep display.
Command modules call these; nothing here parses options or exits.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
import os
import time
from pathlib import Path

from rich.console import Console
from rich import box
from rich.table import Table

from scaling_cli.errors import StoreError

# Off a terminal (a log file, a pipe, CI) rich would fold every line at 80 columns and split error and
# summary lines mid-sentence; there lines are printed whole, and tables wrap their cells to LOG_WIDTH.
LOG_WIDTH = 120


class _LogConsole(Console):
    """A console for logs: text lines whole (soft wrap), tables folded to the console width."""

    def print(self, *objects, **kwargs) -> None:
        if any(isinstance(item, Table) for item in objects):
            kwargs["soft_wrap"] = False
        super().print(*objects, **kwargs)


def _console(stderr: bool = False) -> Console:
    console = Console(stderr=stderr, highlight=False)
    if console.is_terminal or "COLUMNS" in os.environ:
        return console
    return _LogConsole(stderr=stderr, highlight=False, soft_wrap=True, width=LOG_WIDTH)


def output_file(given: Path | None, default: Path, suffix: str) -> Path:
    """Where a command writes its one file. `--out` names that file when it ends in `suffix` (.json, .html,
    .toml), and otherwise a directory (created when missing) that gets `default`'s name; no `--out`: `default`.
    The same rule for every command, so `--out DIR` never writes a file called DIR."""
    if given is None:
        return default
    if given.suffix.lower() == suffix:
        return given
    if given.exists() and not given.is_dir():
        raise StoreError(str(given), "--out", f"not a directory; give a directory or a file name ending in {suffix}")
    try:
        given.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(str(given), "--out", f"cannot create the directory: {exc.strerror}") from None
    return given / default.name


out = _console()
err = _console(stderr=True)


def say(text: str) -> None:
    """One plain line on stdout (no markup), never folded by rich."""
    out.print(text, markup=False, soft_wrap=True)


def note(text: str) -> None:
    """One plain line on stdout (no markup), folded at the console width."""
    out.print(text, markup=False)


def warn(text: str) -> None:
    """One plain line on stderr (no markup)."""
    err.print(text, markup=False, soft_wrap=True)


def print_json_text(text: str) -> None:
    """Already-formatted JSON exactly as given (no highlighting, no wrapping)."""
    out.print(text, markup=False, highlight=False, soft_wrap=True)


def print_result(result: dict, as_json: bool, render: Callable[[dict], None]) -> None:
    """A command's result as indented JSON (--json), or rendered for people."""
    if as_json:
        print_json_text(json.dumps(result, indent=1))
    else:
        render(result)


def si(value: float | None, unit: str = "") -> str:
    """3 significant digits with an SI prefix: 1.2M, 416G; '-' for a missing value."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    for factor, prefix in ((1e18, "E"), (1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.3g}{prefix}{unit}"
    return f"{value:.3g}{unit}"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


def size_in_bytes(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n:,} B"


def number(value) -> str:
    return "-" if value is None else f"{value:.4g}"


def interval(pair) -> str:
    return "" if not pair else f"[{pair[0]:.4g}, {pair[1]:.4g}]"


def state_counts(counts: dict, skip_zero: bool = True) -> str:
    """'3 done, 1 failed' from {state: count}."""
    return ", ".join(f"{n} {state}" for state, n in counts.items() if n or not skip_zero)


# ---- sweep ----

PLAN_COLUMNS = ("run_id", "dataset", "d_model", "n_layer", "params", "tokens", "FLOPs", "tok/param", "lr", "bs")
PLAN_COLUMNS += ("seed", "memory", "branch of", "state")
LEFT_ALIGNED = ("run_id", "dataset", "branch of", "state", "run", "size")


ID_COLUMNS = ("run_id", "branch of")  # 12-character run ids: never cut or folded, or they cannot be copied


def _table(title: str, columns: tuple[str, ...]) -> Table:
    # No vertical rules and one space between columns, so that a log's 120 columns hold more of the table;
    # what still does not fit wraps inside its cell, never cut with an ellipsis.
    table = Table(title=title, box=box.SIMPLE_HEAD, padding=(0, 1, 0, 0))
    for column in columns:
        justify = "left" if column in LEFT_ALIGNED else "right"
        if column in ID_COLUMNS:
            table.add_column(column, justify=justify, no_wrap=True, min_width=12)
        else:
            table.add_column(column, justify=justify, overflow="fold")
    return table


def print_plan(plan) -> None:
    """The table of planned runs, then the compute with and without shared WSD trunks and the estimate."""
    table = _table(f"sweep {plan.spec.name}: {len(plan.runs)} runs in {len(plan.units)} units", PLAN_COLUMNS)
    for planned in plan.runs:
        run = planned.run
        table.add_row(
            run.run_id,
            run.dataset,
            str(run.model.d_model),
            str(run.model.n_layer),
            si(run.params),
            si(run.tokens),
            si(run.flops),
            f"{run.tokens_per_param:.3g}",
            f"{run.train.lr:g}",
            str(run.train.batch_size),
            str(run.train.seed),
            si(planned.memory_bytes, "B"),
            planned.branch_of,
            planned.state,
        )
    out.print(table)
    out.print(f"runs: {state_counts(plan.counts())}", soft_wrap=True)
    saved = plan.saved_flops / plan.total_flops if plan.total_flops else 0.0
    out.print(
        f"compute: {si(plan.shared_flops, 'FLOP')} with WSD trunks shared, "
        f"{si(plan.total_flops, 'FLOP')} as independent runs (saves {si(plan.saved_flops, 'FLOP')}, "
        f"{saved:.0%})",
        soft_wrap=True,
    )
    lr_line = learning_rate_cost_line(plan)
    if lr_line:
        out.print(lr_line, soft_wrap=True)
    out.print(
        f"remaining: {si(plan.remaining_flops, 'FLOP')}, estimated wall time "
        f"{duration(plan.estimated_wall_s())} with {plan.workers} worker(s) "
        f"(rate {si(plan.flops_rate, 'FLOP/s')}, {plan.rate_source})",
        soft_wrap=True,
    )


def learning_rate_cost_line(plan) -> str:
    """What a grid of K learning rates costs (K times one lr), and the muP way to pay it once; '' for one lr."""
    cost_by_lr: dict[float, float] = {}
    for planned in plan.runs:
        cost_by_lr[planned.run.train.lr] = cost_by_lr.get(planned.run.train.lr, 0.0) + planned.cost_flops
    if len(cost_by_lr) < 2:
        return ""
    lrs = sorted(cost_by_lr)
    return (
        f"learning rates: {len(lrs)} ({lrs[0]:g} to {lrs[-1]:g}), {len(lrs)}x the compute of one "
        f"({si(max(cost_by_lr.values()), 'FLOP')} each); under muP a grid at the base width alone transfers "
        "to every width (sweeps/lr-transfer.toml)"
    )


# The grid axes a run line names when the sweep varies them (d_model, n_layer and tokens always).
LINE_AXES = ("dataset", "tokenizer", "vocab_size", "n_head", "seq_len", "parametrization", "lr", "batch_size")
LINE_AXES += ("schedule", "seed")


def varying_axes(records: list[dict]) -> tuple[str, ...]:
    """The LINE_AXES that take more than one value among the planned runs' describe() records."""
    return tuple(axis for axis in LINE_AXES if len({str(r.get(axis)) for r in records}) > 1)


def axes_label(record: dict, axes: tuple[str, ...] = ()) -> str:
    """'d_model=32 n_layer=2 lr=0.01 dataset=kjv': the size and every varying axis of one run."""
    parts = [f"d_model={record.get('d_model')}", f"n_layer={record.get('n_layer')}"]
    parts += [f"{axis}={_axis_value(record.get(axis))}" for axis in axes]
    return " ".join(parts)


def _axis_value(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def run_line(row: dict, axes: tuple[str, ...] = ()) -> str:
    """One settled run in one line: state, id, size, every axis the sweep varies, budget, loss (or the reason
    it failed or diverged) and time."""
    loss = row.get("val_loss")
    detail = f"val_loss={loss:.4f}" if isinstance(loss, float) and not math.isnan(loss) else row.get("error", "")
    wall = row.get("wall_s")
    timing = f" {wall:.1f}s" if isinstance(wall, (int, float)) and not math.isnan(wall) else ""
    return f"{row['status']:<8} {row['run_id']} {axes_label(row, axes)} tokens={si(row.get('tokens'))} {detail}{timing}"


def progress_line(active: dict, progress, label: str | None = None) -> str:
    """One running run's progress and the sweep's, for logs: step, tokens, loss, tokens/s, ETAs. `label` names
    the run's size and varying axes (default: its size)."""
    loss = active["loss"]
    label = label or axes_label(active)
    return (
        f"progress {active['run_id']} {label} "
        f"step {active['step']} tokens {si(active['seen'])}/{si(active['tokens'])} "
        f"loss {loss:.3f} {si(active['tok_s'])} tok/s ETA {duration(active['eta_s'])}"
        if isinstance(loss, float)
        else f"progress {active['run_id']} step {active['step']}"
    ) + (
        f" | sweep {progress.runs_settled}/{progress.runs_total} runs, "
        f"{si(progress.flops_done)}/{si(progress.flops_total)} FLOPs, ETA {duration(progress.eta_s)}"
    )


class SweepDisplay:
    """Renders sweep events: a live rich table on a terminal; in a log, one line per settled run and a
    progress line per running run at its first evaluation and then at most every `log_every_s` seconds."""

    def __init__(self, live: bool, log_every_s: float = 10.0):
        self.live_mode = live
        self.live = None
        self.progress = None
        # Run lines printed since the last progress snapshot: the scheduler emits a batch of settled rows and
        # only then the progress that counts them, and a live display redraws its table under every printed
        # line, so without this the header would show the previous count below the new `done` lines.
        self.settled_since = 0
        self.log_every_s = log_every_s
        self.logged: dict[str, tuple[float, object]] = {}  # run id -> (time, step) of its last progress line
        self.axes: tuple[str, ...] = ()  # the grid axes the plan varies, named in every run line
        self.labels: dict[str, str] = {}  # run id -> its size and varying axes

    def __call__(self, kind: str, payload) -> None:
        if kind == "plan":
            records = [planned.run.describe() for planned in payload.runs]
            self.axes = varying_axes(records)
            self.labels = {record["run_id"]: axes_label(record, self.axes) for record in records}
            counts = payload.counts()
            say(
                f"sweep {payload.spec.name}: {len(payload.runs)} runs ({counts['done'] + counts['diverged']} "
                f"already settled), {si(payload.remaining_flops, 'FLOP')} to train -> {payload.out_dir}"
            )
        elif kind == "run":
            self.settled_since += 1
            if self.live is not None and self.progress is not None:
                self.live.update(self._render(), refresh=True)
            self._print(run_line(payload, self.axes))
        elif kind == "retry":
            self._print(f"retry    unit {payload['unit']} (attempt {payload['attempt']} failed: {payload['error']})")
        elif kind == "grid_changed":
            self._print(
                f"grid     changed since the last sweep here: {payload['kept']} runs kept (same run id, same run), "
                f"{payload['added']} added, {payload['left_out']} no longer planned (their results stay)"
            )
        elif kind == "tables_rebuilt":
            self._print(f"rebuilt  runs.parquet and curves.parquet from the run files ({'; '.join(payload)})")
        elif kind == "progress":
            self.progress, self.settled_since = payload, 0
            if self.live is not None:
                self.live.update(self._render(), refresh=True)
            else:
                self._log_progress(payload)

    def _log_progress(self, progress) -> None:
        now = time.monotonic()
        for active in progress.active:
            if active["step"] is None:
                continue
            last = self.logged.get(active["run_id"])
            if last is not None and (last[1] == active["step"] or now - last[0] < self.log_every_s):
                continue
            self.logged[active["run_id"]] = (now, active["step"])
            self._print(progress_line(active, progress, self.labels.get(active["run_id"])))

    def _print(self, line: str) -> None:
        (self.live.console if self.live is not None else out).print(line, markup=False, soft_wrap=True)

    def _render(self) -> Table:
        p = self.progress
        settled = min(p.runs_total, p.runs_settled + self.settled_since)
        title = (
            f"runs {settled}/{p.runs_total}   FLOPs {si(p.flops_done)}/{si(p.flops_total)}"
            f"   elapsed {duration(p.elapsed_s)}   ETA {duration(p.eta_s)}"
        )
        table = _table(title, ("worker", "run", "size", "step", "tokens", "loss", "tok/s", "ETA"))
        for i, active in enumerate(p.active):
            loss = active["loss"]
            table.add_row(
                str(i),
                active["run_id"],
                f"d{active['d_model']} L{active['n_layer']}",
                str(active["step"] if active["step"] is not None else "-"),
                f"{si(active['seen'])}/{si(active['tokens'])}",
                f"{loss:.3f}" if isinstance(loss, float) else "-",
                si(active["tok_s"]),
                duration(active["eta_s"]),
            )
        return table

    def __enter__(self):
        if self.live_mode:
            from rich.live import Live

            self.live = Live(Table(title="starting"), console=out, refresh_per_second=4, transient=True)
            self.live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self.live is not None:
            self.live.__exit__(*exc)
            self.live = None
