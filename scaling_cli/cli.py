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


def _exception_classes(name: str) -> tuple[type[BaseException], ...]:
    """The classes called `name` in typer's own command layer and in click, whichever are installed."""
    found: list[type[BaseException]] = [getattr(typer, name)] if hasattr(typer, name) else []
    for module in ("typer._click.exceptions", "click.exceptions"):
        try:
            cls = getattr(__import__(module, fromlist=[name]), name, None)
        except ImportError:
            continue
        if cls is not None:
            found.append(cls)
    return tuple(found)


USAGE_ERRORS = _exception_classes("UsageError")
EXITS = _exception_classes("Exit")
ABORTS = _exception_classes("Abort")


def _usage_line(exc) -> str:
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


NO_ARGS_IS_HELP = _exception_classes("NoArgsIsHelpError")


# ---- data commands (owned by the data work; add code only inside this section) ----
_DATA_FLAGS = {
    "dedup": "--dedup",
    "min_doc_bytes": "--min-doc-bytes",
    "val_fraction": "--val-fraction",
    "min_compression_ratio": "--min-compression-ratio",
    "max_compression_ratio": "--max-compression-ratio",
}


def _parse_set(items: list[str] | None) -> dict:
    import tomllib

    table = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            _fail_usage("--set", item, "expected KEY=VALUE, e.g. --set markov_order=3")
        try:
            table[key.strip()] = tomllib.loads(f"v = {raw.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            table[key.strip()] = raw.strip()  # a bare word; the option's own type check reports it
    return table


def _data_options(sets: list[str] | None, **flags):
    """DataOptions from --set KEY=VALUE pairs and the named flags (flags win); errors name the option."""
    from scaling_cli.data import parse_data_options
    from scaling_cli.errors import SpecError

    table = {**_parse_set(sets), **{k: v for k, v in flags.items() if v is not None}}
    try:
        return parse_data_options(table, where="--set")
    except SpecError as exc:
        key = exc.field.removeprefix("data.")
        where = _DATA_FLAGS[key] if key in flags and flags[key] is not None else "--set"
        raise SpecError(where, exc.field, exc.problem) from None


_SET_HELP = "A [data] option as KEY=VALUE (repeatable), e.g. --set markov_order=3 --set doc_bytes=4096."
_TOKENIZER_HELP = "Tokenizer: bytes (vocabulary 256) or bpe (needs --vocab-size)."


def _bytes(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n:,} B"


def _baseline_line(baselines: dict) -> str:
    return "  ".join(f"{k} {v:.3f}" for k, v in baselines.items())


@data_app.command("list")
def data_list(json_out: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> None:
    """List the data sources, whether their download is cached, and the prepared data sets.

    \b
    Example:
      scale data list
    """
    from rich.table import Column

    from scaling_cli.data import list_sources
    from scaling_cli.data.sources import cache_root

    rows = list_sources()
    if json_out:
        out.print_json(json.dumps(rows))
        return
    table = Table("kind", "cached", "prepared", "description")
    table.columns.insert(0, Column("name", no_wrap=True))
    for row in rows:
        sets = row["prepared"]
        prepared = f"{len(sets)}, {_bytes(sum(p['disk_bytes'] for p in sets))}" if sets else "-"
        cached = "yes" if row["cached"] else "no"
        table.add_row(row["name"], row["kind"], cached, prepared, row["description"])
    out.print(table)
    out.print(f"cache: {cache_root()} (set SCALE_CACHE to move it)")


@data_app.command("prepare")
def data_prepare(
    name: str = typer.Argument(
        ...,
        help="Source name (shakespeare, shakespeare-folio, kjv, pystdlib, markov) or a local file, directory or glob.",
    ),
    tokenizer: str = typer.Option("bytes", "--tokenizer", help=_TOKENIZER_HELP),
    vocab_size: int | None = typer.Option(None, "--vocab-size", help="BPE vocabulary size."),
    dedup: bool | None = typer.Option(
        None, "--dedup/--no-dedup", help="Remove exact duplicate documents and paragraphs."
    ),
    min_doc_bytes: int | None = typer.Option(None, "--min-doc-bytes", help="Drop shorter documents."),
    min_ratio: float | None = typer.Option(
        None, "--min-compression-ratio", help="Drop documents that compress worse (random-looking)."
    ),
    max_ratio: float | None = typer.Option(
        None, "--max-compression-ratio", help="Drop documents that compress better (repetitive)."
    ),
    val_fraction: float | None = typer.Option(None, "--val-fraction", help="Share of text for validation."),
    sets: list[str] | None = typer.Option(None, "--set", help=_SET_HELP),  # noqa: B008
    json_out: bool = typer.Option(False, "--json", help="Print the manifest as JSON."),
) -> None:
    """Fetch, clean, tokenise and shard a corpus (a no-op when it is prepared already).

    \b
    Examples:
      scale data prepare shakespeare
      scale data prepare kjv --dedup --tokenizer bpe --vocab-size 2048
      scale data prepare markov --set markov_order=3 --set markov_bytes=4000000
      scale data prepare ./my_texts/ --min-doc-bytes 200
      scale data prepare 'notes/**/*.md' --dedup   (quote globs)
    """
    import time

    from scaling_cli.data import prepare

    opts = _data_options(
        sets,
        dedup=dedup,
        min_doc_bytes=min_doc_bytes,
        min_compression_ratio=min_ratio,
        max_compression_ratio=max_ratio,
        val_fraction=val_fraction,
    )
    started = time.perf_counter()
    data = prepare(name, opts, tokenizer=tokenizer, vocab_size=vocab_size)
    if json_out:
        out.print_json(json.dumps({"path": str(data.path), **data.manifest}))
        return
    m = data.manifest
    out.print(f"{data.name}: {data.path}")
    out.print(
        f"  documents {m['documents']['after_cleaning']:,} (train {m['documents']['train']:,}, "
        f"val {m['documents']['val']:,});  text {_bytes(m['bytes']['clean'])} of {_bytes(m['bytes']['raw'])} "
        f"raw;  tokens train {m['tokens']['train']:,}, val {m['tokens']['val']:,} "
        f"({data.bytes_per_token:.3f} bytes/token, vocab {data.vocab_size})"
    )
    out.print(f"  baselines, bits/byte of val text: {_baseline_line(data.baselines)}")
    if data.entropy_rate_bits is not None:
        out.print(f"  entropy rate of the chain: {data.entropy_rate_bits:.4f} bits/byte")
    out.print(f"  ready in {time.perf_counter() - started:.2f} s (built in {m['prepare_seconds']:.2f} s)")


def _cleaning_rows(steps: list[dict]) -> list[tuple[str, str]]:
    rows = []
    for step in steps:
        if not step["enabled"]:
            rows.append((step["step"], "off"))
            continue
        facts = ", ".join(
            f"{k.replace('_', ' ')} {v:,}" if isinstance(v, int) else f"{k.replace('_', ' ')} {v}"
            for k, v in step.items()
            if k not in ("step", "enabled")
        )
        rows.append((step["step"], facts))
    return rows


@data_app.command("stats")
def data_stats(
    name: str = typer.Argument(..., help="Source name, local path, or a prepared data set's directory."),
    tokenizer: str = typer.Option("bytes", "--tokenizer", help=_TOKENIZER_HELP),
    vocab_size: int | None = typer.Option(None, "--vocab-size", help="BPE vocabulary size."),
    dedup: bool | None = typer.Option(None, "--dedup/--no-dedup", help="Stats of the deduplicated set."),
    sets: list[str] | None = typer.Option(None, "--set", help=_SET_HELP),  # noqa: B008
    json_out: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
) -> None:
    """Sizes, what cleaning removed, compressor baselines and unigram entropy (prepares first if needed).

    \b
    Examples:
      scale data stats shakespeare
      scale data stats kjv --dedup
      scale data stats ~/.cache/scale/prepared/markov-d39728908bb9 --json
    """
    from scaling_cli.data import stats

    opts = _data_options(sets, dedup=dedup)
    info = stats(name, opts, tokenizer=tokenizer, vocab_size=vocab_size)
    if json_out:
        out.print_json(json.dumps(info))
        return
    out.print(f"{info['name']}: {info['path']}")
    sizes = Table("", "documents", "text bytes", "tokens", title="sizes")
    for split in ("train", "val"):
        sizes.add_row(split, f"{info['documents'][split]:,}", f"{info['bytes'][split]:,}", f"{info['tokens'][split]:,}")
    sizes.add_row("raw source", f"{info['documents']['files']:,} files", f"{info['bytes']['raw']:,}", "")
    out.print(sizes)
    disk = info["disk"]
    ratio = disk["uncompressed"] / max(disk["compressed"], 1)
    out.print(
        f"on disk: {_bytes(disk['compressed'])} in {disk['shards']} lz4 shards "
        f"({_bytes(disk['uncompressed'])} uncompressed, ratio {ratio:.2f}); "
        f"{info['bytes_per_token']:.3f} bytes/token, tokenizer {info['tokenizer']['kind']} "
        f"(vocab {info['tokenizer']['vocab_size']})"
    )
    cleaning = Table("step", "removed / done", title="cleaning")
    for row in _cleaning_rows(info["cleaning"]):
        cleaning.add_row(*row)
    out.print(cleaning)
    base = Table("compressor", "bits/byte (val text)", title="compressor baselines")
    for key, value in info["baselines"].items():
        base.add_row(key, f"{value:.4f}")
    out.print(base)
    uni = info["unigram_entropy"]
    out.print(f"unigram entropy: {uni['bits_per_token']:.4f} bits/token = {uni['bits_per_byte']:.4f} bits/byte")
    if info["entropy_rate_bits"] is not None:
        out.print(f"markov entropy rate: {info['entropy_rate_bits']:.4f} bits/byte (the irreducible loss)")


# ---- end data ----


# ---- sweep commands (owned by the sweep work; add code only inside this section) ----
def _si(value: float | None, unit: str = "") -> str:
    import math

    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    for factor, prefix in ((1e18, "E"), (1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.3g}{prefix}{unit}"
    return f"{value:.3g}{unit}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


def _print_plan(plan) -> None:
    table = Table(title=f"sweep {plan.spec.name}: {len(plan.runs)} runs in {len(plan.units)} units")
    for column in (
        "run_id",
        "dataset",
        "d_model",
        "n_layer",
        "params",
        "tokens",
        "FLOPs",
        "tok/param",
        "lr",
        "bs",
        "seed",
        "branch of",
        "state",
    ):
        table.add_column(column, justify="left" if column in ("run_id", "dataset", "branch of", "state") else "right")
    for planned in plan.runs:
        run = planned.run
        table.add_row(
            run.run_id,
            run.dataset,
            str(run.model.d_model),
            str(run.model.n_layer),
            _si(run.params),
            _si(run.tokens),
            _si(run.flops),
            f"{run.tokens_per_param:.3g}",
            f"{run.train.lr:g}",
            str(run.train.batch_size),
            str(run.train.seed),
            planned.branch_of,
            planned.state,
        )
    # Off a terminal rich assumes 80 columns; a plan table is only useful whole.
    (out if out.is_terminal else Console(highlight=False, width=160)).print(table)
    counts = ", ".join(f"{n} {state}" for state, n in plan.counts().items() if n)
    out.print(f"runs: {counts}", soft_wrap=True)
    saved = plan.saved_flops / plan.total_flops if plan.total_flops else 0.0
    out.print(
        f"compute: {_si(plan.shared_flops, 'FLOP')} with WSD trunks shared, "
        f"{_si(plan.total_flops, 'FLOP')} as independent runs (saves {_si(plan.saved_flops, 'FLOP')}, "
        f"{saved:.0%})",
        soft_wrap=True,
    )
    out.print(
        f"remaining: {_si(plan.remaining_flops, 'FLOP')}, estimated wall time "
        f"{_duration(plan.estimated_wall_s())} with {plan.workers} worker(s) "
        f"(rate {_si(plan.flops_rate, 'FLOP/s')}, {plan.rate_source})",
        soft_wrap=True,
    )


def _run_line(row: dict) -> str:
    import math

    loss = row.get("val_loss")
    detail = f"val_loss={loss:.4f}" if isinstance(loss, float) and not math.isnan(loss) else row.get("error", "")
    wall = row.get("wall_s")
    timing = f" {wall:.1f}s" if isinstance(wall, (int, float)) and not math.isnan(wall) else ""
    return (
        f"{row['status']:<8} {row['run_id']} d_model={row.get('d_model')} n_layer={row.get('n_layer')} "
        f"tokens={_si(row.get('tokens'))} {detail}{timing}"
    )


class _SweepDisplay:
    """Renders sweep events: a live rich table on a terminal, one plain line per settled run otherwise."""

    def __init__(self, live: bool):
        self.live_mode = live
        self.live = None
        self.progress = None

    def __call__(self, kind: str, payload) -> None:
        if kind == "plan":
            counts = payload.counts()
            out.print(
                f"sweep {payload.spec.name}: {len(payload.runs)} runs ({counts['done'] + counts['diverged']} "
                f"already settled), {_si(payload.remaining_flops, 'FLOP')} to train -> {payload.out_dir}",
                markup=False,
                soft_wrap=True,
            )
        elif kind == "run":
            self._print(_run_line(payload))
        elif kind == "retry":
            self._print(f"retry    unit {payload['unit']} (attempt {payload['attempt']} failed: {payload['error']})")
        elif kind == "progress":
            self.progress = payload
            if self.live is not None:
                self.live.update(self._render())

    def _print(self, line: str) -> None:
        (self.live.console if self.live is not None else out).print(line, markup=False, soft_wrap=True)

    def _render(self):
        p = self.progress
        table = Table(
            title=f"runs {p.runs_settled}/{p.runs_total}   FLOPs {_si(p.flops_done)}/{_si(p.flops_total)}"
            f"   elapsed {_duration(p.elapsed_s)}   ETA {_duration(p.eta_s)}"
        )
        for column in ("worker", "run", "size", "step", "tokens", "loss", "tok/s"):
            table.add_column(column, justify="left" if column in ("run", "size") else "right")
        for i, active in enumerate(p.active):
            loss = active["loss"]
            table.add_row(
                str(i),
                active["run_id"],
                f"d{active['d_model']} L{active['n_layer']}",
                str(active["step"] if active["step"] is not None else "-"),
                f"{_si(active['seen'])}/{_si(active['tokens'])}",
                f"{loss:.3f}" if isinstance(loss, float) else "-",
                _si(active["tok_s"]),
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


@app.command("sweep")
def sweep_command(
    spec_path: Path = typer.Argument(..., metavar="SPEC", help="Sweep spec (TOML), e.g. sweeps/demo.toml."),
    out_dir: Path | None = typer.Option(None, "--out", help="Results directory [default: results/<name>/]."),
    workers: int | None = typer.Option(
        None,
        "--workers",
        help="Units trained at once [default: 1 on CPU, GPUs x runs-per-gpu on CUDA, the cluster's CPUs on Ray].",
    ),
    executor: str = typer.Option("local", "--executor", help="Where runs train: local or ray."),
    address: str | None = typer.Option(None, "--address", help="Ray cluster address (with --executor ray)."),
    runs_per_gpu: int = typer.Option(1, "--runs-per-gpu", help="Small runs packed onto each GPU."),
    retries: int = typer.Option(2, "--retries", help="Retries of a failing run before it is recorded as failed."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan and the estimate; train nothing."),
) -> int:
    """Train every run of a sweep spec, resuming whatever is unfinished; rerunning trains nothing new.

    Example: scale sweep sweeps/demo.toml --workers 2   (then: scale status results/demo)
    """
    from scaling_cli.executors import make_executor
    from scaling_cli.spec import load_spec
    from scaling_cli.sweep import plan_sweep, run_sweep

    if retries < 0:
        _fail_usage("--retries", "value", f"must be 0 or more, got {retries}")
    if workers is not None and workers < 1:
        _fail_usage("--workers", "value", f"must be at least 1, got {workers}")
    spec = load_spec(spec_path)
    target = out_dir if out_dir is not None else Path("results") / spec.name
    if dry_run:
        _print_plan(plan_sweep(spec, target, workers=workers or 1))
        return 0
    pool = make_executor(executor, workers=workers, address=address, runs_per_gpu=runs_per_gpu, device=spec.device)
    try:
        with _SweepDisplay(live=out.is_terminal) as display:
            outcome = run_sweep(spec, target, pool, retries=retries, on_event=display)
    except KeyboardInterrupt:
        err.print(
            f"interrupted: finished runs are saved in {target}; rerun the same command to resume "
            "(interrupted runs continue from their last checkpoint)",
            markup=False,
            soft_wrap=True,
        )
        raise typer.Exit(130) from None
    counts = ", ".join(f"{n} {state}" for state, n in outcome.counts.items() if n)
    out.print(
        f"sweep {spec.name}: {counts} in {_duration(outcome.wall_s)}; results in {outcome.out_dir}",
        markup=False,
        soft_wrap=True,
    )
    for failed in outcome.failed:
        err.print(f"failed {failed['run_id']}: {failed['error']}", markup=False, soft_wrap=True)
    return 1 if outcome.failed else 0


# ---- end sweep ----


# ---- status commands (owned by the status work; add code only inside this section) ----
def _fitted_law_line(fit_path: Path) -> str | None:
    """The Chinchilla law of the first group of a fit.json in one line, or None when there is none."""
    try:
        groups = json.loads(fit_path.read_text())["groups"]
        name, group = next(iter(groups.items()))
    except (OSError, ValueError, KeyError, StopIteration, TypeError):
        return None
    law = (group.get("laws") or {}).get("chinchilla")
    if not law or "params" not in law:
        reason = (group.get("skipped") or {}).get("chinchilla", "not fitted")
        return f"fitted law ({name}): none, Chinchilla law {reason}"
    p = law["params"]
    r2 = law.get("r2")
    r2_text = f", R^2 = {r2:.3f}" if isinstance(r2, (int, float)) else ""
    return (
        f"fitted law ({name}): L(N, D) = {p['E']:.3g} + {p['A']:.3g}/N^{p['alpha']:.3g} + "
        f"{p['B']:.3g}/D^{p['beta']:.3g}{r2_text}"
    )


def _print_summary(info: dict) -> None:
    root = Path(info["root"])
    counts = ", ".join(f"{n} {state}" for state, n in info["counts"].items() if n)
    out.print(f"runs:    {root / 'runs.parquet'} ({counts or 'no runs'})", markup=False, soft_wrap=True)
    out.print(f"curves:  {root / 'curves.parquet'}", markup=False, soft_wrap=True)
    if (root / "fit.json").is_file():
        out.print(f"fit:     {root / 'fit.json'}", markup=False, soft_wrap=True)
        law = _fitted_law_line(root / "fit.json")
        if law:
            out.print(law, markup=False, soft_wrap=True)
    figures = sorted((root / "figures").glob("*")) if (root / "figures").is_dir() else []
    if figures:
        out.print(f"figures: {root / 'figures'} ({len(figures)} files)", markup=False, soft_wrap=True)


@app.command("status")
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
    from scaling_cli.store import status

    info = status(results_dir)
    if as_json:
        out.print_json(json.dumps(info))
        return 0
    counts = ", ".join(f"{n} {state}" for state, n in info["counts"].items())
    out.print(f"{info['root']}: {info['planned']} planned runs: {counts}", markup=False, soft_wrap=True)
    out.print(
        f"compute spent {_si(info['flops_spent'], 'FLOP')}, remaining {_si(info['flops_remaining'], 'FLOP')}",
        markup=False,
    )
    for failed in info["failed"]:
        out.print(
            f"failed {failed['run_id']} after {failed['attempts']} attempt(s): {failed['error']}",
            markup=False,
            soft_wrap=True,
        )
    if summary:
        _print_summary(info)
    return 0


# ---- end status ----


# ---- fit commands (owned by the fit work; add code only inside this section) ----
_FIT_HELP = """Fit scaling laws to a results directory or a .parquet/.csv table and write fit.json.

Laws: chinchilla (Approach 3, L = E + A/N^alpha + B/D^beta), kaplan (L(N), L(D), L(C)), envelope
(Approach 1), isoflop (Approach 2) and a linear baseline; by default every law the data supports.
Bootstrap intervals (default 200 resamples) and an optional holdout extrapolation check.

Example: scale fit results/demo --holdout 3 --by dataset

Example: scale fit chinchilla.csv --n-col "Model Size" --c-col "Training FLOP" --loss-col loss --drop-highest-loss 5
"""


def _num(value) -> str:
    return "-" if value is None else f"{value:.4g}"


def _span(pair) -> str:
    return "" if not pair else f"[{pair[0]:.4g}, {pair[1]:.4g}]"


def _law_rows(name: str, law: dict) -> list[tuple[str, str, str, str]]:
    """(law, parameter, value, interval) rows of one fitted law."""
    if name == "kaplan":
        rows = []
        for sub in ("L_N", "L_D", "L_C"):
            intervals = law[sub].get("intervals", {})
            for key, value in law[sub]["params"].items():
                rows.append((f"kaplan {sub}", key, _num(value), _span(intervals.get(key))))
        at = law["at_compute"]
        loss_interval = _span(law.get("intervals", {}).get("loss_at_C"))
        rows.append(("kaplan L_C", f"loss @ C={at['C']:.3g}", _num(at["loss"]), loss_interval))
        return rows
    intervals = law.get("intervals", {})
    rows = [(name, key, _num(value), _span(intervals.get(key))) for key, value in law["params"].items()]
    for key, value in law.get("derived", {}).items():
        rows.append((name, key, _num(value), _span(intervals.get(key))))
    for key in ("N_opt", "D_opt", "loss_opt"):
        if key in law.get("at_compute", {}):
            rows.append(
                (
                    name,
                    f"{key} @ C={law['at_compute']['C']:.3g}",
                    _num(law["at_compute"][key]),
                    _span(intervals.get(key)),
                )
            )
    return rows


def _law_note(name: str, law: dict) -> str:
    diagnostics = law.get("diagnostics", {})
    if name == "chinchilla":
        edge = ", ".join(diagnostics["grid_edge"]) or "none"
        reached = f"{diagnostics['starts_at_optimum']}/{law['settings']['grid_size']}"
        return (
            f"r2(log) {law['r2']:.4f}; {reached} starts reached "
            f"the optimum; |grad| {diagnostics['grad_norm']:.1e}; at grid edge: {edge}"
        )
    if name == "kaplan":
        return f"r2(log, eq. 1.5 on all points) {_num(law['r2'])}"
    if name == "isoflop":
        return f"{diagnostics['budgets']} budgets, {diagnostics['edge_budgets']} with the minimum at an edge"
    if name == "envelope":
        return f"{diagnostics['frontier_points']} frontier points from {law['settings']['source']}"
    return f"r2 {_num(law['r2'])} (baseline only)"


def _render_fit(document: dict, path: Path) -> None:
    rows = document["rows"]
    excluded = ", ".join(f"{k} {v}" for k, v in rows["excluded"].items() if v) or "none"
    out.print(f"{document['source']}: {rows['used']} of {rows['total']} rows used (excluded: {excluded})", markup=False)
    out.print(f"conventions: N = {document['conventions']['n']}; C = {document['conventions']['c']}", markup=False)
    choices = document["selection"]["lr_choices"]
    if choices:
        chosen = sorted({c["lr"] for c in choices})
        counts = ", ".join(f"{lr:g} at {sum(c['lr'] == lr for c in choices)}" for lr in chosen)
        out.print(f"best lr of {len(choices)} (N, D) pairs run at several lrs: {counts}", markup=False)
    for name, group in document["groups"].items():
        table = Table(title=f"group {name}: {group['n_points']} points", title_justify="left")
        for column in ("law", "parameter", "value", "95% interval"):
            table.add_column(column)
        for law_name, law in group["laws"].items():
            rows = _law_rows(law_name, law)
            for i, row in enumerate(rows):
                table.add_row(*row, end_section=i == len(rows) - 1)
        out.print(table)
        for law_name, law in group["laws"].items():
            out.print(f"{law_name}: {_law_note(law_name, law)}", markup=False)
        for law_name, why in group["skipped"].items():
            out.print(f"skipped {law_name}: {why}", markup=False)
        if group["holdout"]:
            holdout = group["holdout"]
            mape = ", ".join(f"{k} {_num(v)}%" for k, v in holdout["mape"].items())
            out.print(
                f"holdout: fitted on {holdout['fitted_on']}, {holdout['held_out']} held out; MAPE {mape}", markup=False
            )
    out.print(f"wrote {path}", markup=False)


@app.command("fit", help=_FIT_HELP)
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
        out.print(json.dumps(document, indent=1), markup=False, highlight=False, soft_wrap=True)
    else:
        _render_fit(document, target)


# ---- end fit ----

# ---- predict commands (owned by the predict work; add code only inside this section) ----
_PREDICT_HELP = """Predict from a fit.json: the compute-optimal N and D for a FLOP budget, or the loss of a run.

Intervals are bootstrap percentiles from the samples stored in fit.json.

Example: scale predict results/demo/fit.json --compute 1e18

Example: scale predict fit.json --params 1e8 --tokens 2e9
"""


def _render_predict(result: dict) -> None:
    for name, entry in result["groups"].items():
        if "compute" in entry:
            table = Table(
                title=f"group {name}: compute-optimal split of C = {result['compute']:.3g} FLOPs", title_justify="left"
            )
            for column in ("law", "N_opt", "D_opt", "tokens/param", "loss"):
                table.add_column(column)
            for law_name, row in entry["compute"].items():
                table.add_row(
                    law_name,
                    *(
                        f"{_num(row.get(key))} {_span(row.get(key + '_interval'))}"
                        for key in ("N_opt", "D_opt", "tokens_per_param", "loss")
                    ),
                )
            out.print(table)
        if "run" in entry:
            table = Table(
                title=f"group {name}: N = {result['params']:.4g}, D = {result['tokens']:.4g}", title_justify="left"
            )
            table.add_column("law")
            table.add_column("loss")
            table.add_column("95% interval")
            for law_name, row in entry["run"].items():
                table.add_row(law_name, f"{row['loss']:.4g}", _span(row["loss_interval"]))
            out.print(table)


@app.command("predict", help=_PREDICT_HELP)
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
        out.print(json.dumps(result, indent=1), markup=False, highlight=False, soft_wrap=True)
    else:
        _render_predict(result)


# ---- end predict ----


# ---- plot commands (owned by the plot work; add code only inside this section) ----
@app.command("plot")
def plot_command(
    source: Path = typer.Argument(..., help="A results directory, or a CSV/parquet table of runs."),
    fit_file: Path | None = typer.Option(
        None, "--fit", help="fit.json to draw (default: SOURCE/fit.json; fitted now when there is none)."
    ),
    out_dir: Path | None = typer.Option(
        None, "--out", help="Folder for the figures (default: SOURCE/figures, or figures/ next to a table)."
    ),
    fmt: str = typer.Option("png", "--format", help="png (200 dpi), pdf or svg."),
    only: str | None = typer.Option(None, "--only", help="Make just this figure (for example isoflop)."),
    n_col: str | None = typer.Option(None, "--n-col", help="Table column of parameters N (default params)."),
    d_col: str | None = typer.Option(None, "--d-col", help="Table column of tokens D (default C/(6N))."),
    c_col: str | None = typer.Option(None, "--c-col", help="Table column of compute C (default flops)."),
    loss_col: str | None = typer.Option(None, "--loss-col", help="Table column of loss (default val_loss)."),
    query: str | None = typer.Option(None, "--query", help="Keep only table rows matching this pandas query."),
    drop_highest_loss: int = typer.Option(0, "--drop-highest-loss", help="Leave out the k highest-loss rows."),
) -> None:
    """Draw the figures of a scaling study: loss_vs_compute, isoflop, optimal_allocation, parametric_fit,
    extrapolation, compression, data_axis. A figure the data cannot support is skipped with its reason.

    Example: scale plot results/demo

    Example: scale plot results/demo --format pdf --only loss_vs_compute --out paper/figures

    Example: scale plot ../shared/data/chinchilla_svg_extracted_data.csv --n-col "Model Size"
    --c-col "Training FLOP" --loss-col loss --drop-highest-loss 5 --out /tmp/chinchilla-figures
    """
    from rich.markup import escape

    from scaling_cli.plot import TableColumns, make_figures

    columns = TableColumns(n=n_col, d=d_col, c=c_col, loss=loss_col, query=query, drop_highest_loss=drop_highest_loss)
    made = make_figures(source, fit_path=fit_file, out_dir=out_dir, fmt=fmt, only=only, columns=columns)
    for name, path, reason in made:
        if path is not None:
            out.print(f"[green]made[/green]     {name:<19} {escape(str(path))}", soft_wrap=True)
        else:
            out.print(f"[yellow]skipped[/yellow]  {name:<19} {escape(reason)}", soft_wrap=True)
    count = sum(path is not None for _, path, _ in made)
    out.print(f"{count} of {len(made)} figures written", markup=False)


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
    except NO_ARGS_IS_HELP as exc:
        out.print(exc.ctx.get_help(), markup=False)
        sys.exit(0)
    except USAGE_ERRORS as exc:
        if _debug():
            raise
        err.print(f"error: {_usage_line(exc)}", soft_wrap=True, markup=False)
        sys.exit(2)
    except (*ABORTS, KeyboardInterrupt):
        err.print("interrupted", markup=False)
        sys.exit(130)
    except EXITS as exc:
        sys.exit(exc.exit_code)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
