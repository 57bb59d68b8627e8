"""Read a sweep spec (TOML) strictly into plain frozen data: every key known, every value of the right type and range.

A spec has top-level keys (`name`, `dataset`, `tokenizer`, `vocab_size`, `seeds`, `device`, ...) and the
tables `[data]` (kept as given: the data layer checks it when the runs are planned), `[model]` (sizes),
`[train]` (budgets and optimiser), `[eval]` and `[isoflop]`. Any grid field given as a list becomes an axis
of the grid. Every problem is reported as `SpecError(spec file, dotted field, problem)`; all problems found
are joined into one message. This module knows no model, trainer or data set: `scaling_cli.plan` turns a
Spec into runs.
"""

from __future__ import annotations

import itertools
import tomllib
from collections.abc import Callable
from dataclasses import Field, dataclass, fields
from pathlib import Path
from typing import Any

from scaling_cli.config import ModelConfig, TrainConfig
from scaling_cli.errors import SpecError
from scaling_cli.validate import text as non_empty_text
from scaling_cli.validate import (
    PRETRAINED_TOKENIZERS,
    REQUIRED,
    TOKENIZERS,
    Problems,
    integer,
    number,
    one_of,
    setting,
    show,
    unknown_keys,
)

TRACKERS = ("wandb", "tensorboard", "mlflow")  # `track = [...]` and `scale sweep --track`
TABLES = ("data", "model", "train", "eval", "isoflop", "slurm")  # [data] is read by the data layer, when planning
GRID_FIELDS = ("d_model", "n_layer", "n_head")  # [model] keys that lay out the sizes rather than being shared


def _directory_name(value: Any) -> str:
    name = non_empty_text(value)
    if not all(c.isalnum() or c in "-_." for c in name) or name.startswith("."):
        raise ValueError(f"must be letters, digits, '-', '_' or '.' (it names a directory), got {name!r}")
    return name


def _tokenizer_name(value: Any) -> str:
    """bytes, bpe, or a pretrained tokenizer (hf:PATH, tiktoken:ENCODING; the data layer finds it when planning)."""
    if isinstance(value, str) and value.startswith(PRETRAINED_TOKENIZERS) and value.partition(":")[2]:
        return value
    return one_of(TOKENIZERS)(value)


def _shapes(value: Any) -> list:
    if not isinstance(value, list) or not value:
        raise ValueError(f"expected a non-empty list of tables, got {show(value)}")
    return value


_directory_name.kind, _directory_name.rule = "string", "letters, digits, '-', '_', '.'"
_tokenizer_name.kind, _tokenizer_name.rule = "string", "bytes, bpe, hf:PATH or tiktoken:ENCODING"
_shapes.kind, _shapes.rule = "list of tables", "{d_model, n_layer, n_head, tokens}"


@dataclass(frozen=True, kw_only=True)
class SweepSettings:
    """The spec's own keys, beside ModelConfig's and TrainConfig's: what names a sweep and lays out its grid."""

    name: str = setting(REQUIRED, _directory_name, "names the sweep and its results directory", key="name")
    description: str = setting("", non_empty_text, "one line about the sweep", key="description")
    dataset: str = setting(
        REQUIRED,
        non_empty_text,
        "a built-in data set (name?key=value sets [data] options), a local file, directory or glob",
        key="dataset",
        axis=True,
    )
    tokenizer: str = setting(
        "bytes", _tokenizer_name, "bytes, bpe (trained on the data set), hf:PATH or tiktoken:ENCODING", key="tokenizer"
    )
    track: tuple = setting(
        (),
        one_of(TRACKERS),
        "experiment trackers each finished run is logged to (not in run ids)",
        key="track",
        axis=True,
    )
    shapes: tuple = setting(
        (),
        _shapes,
        "explicit sizes, each with its own n_layer, n_head and optional tokens; instead of d_model",
        key="model.shapes",
    )
    head_dim: int | None = setting(
        None, integer(1, 4096), "channels per head when n_head is left out (default 64)", key="model.head_dim"
    )
    flops: float = setting(
        REQUIRED,
        number(1.0, 1e30),
        "isoflop mode: FLOP budgets, each size trains the tokens that spend one (instead of train.tokens)",
        key="isoflop.flops",
        axis=True,
    )


@dataclass(frozen=True)
class Size:
    """One model size as the spec gives it; `n_layer` None means depth from width, heads from n_head/head_dim."""

    field: str  # the spec field that names this size, for error messages
    d_model: int
    n_layer: int | None = None
    n_head: int | None = None
    head_dim: int | None = None
    tokens: tuple[int, ...] = ()  # an explicit shape's own token budgets; empty: [train] tokens


@dataclass(frozen=True)
class ModelGrid:
    """The [model] table: the sizes of the grid and what every size shares."""

    sizes: tuple[Size, ...]
    seq_len: int
    tie_embeddings: bool = True
    gpt2: bool = False
    parametrization: str = "sp"  # or "mup"
    base_width: int | None = None  # muP: the width whose learning rate the others scale from (default: smallest)
    architecture: str = "gpt2"  # or "llama", or a plug-in "module:function"
    n_kv_head: int | None = None  # llama options (model.config.ModelConfig says what each does)
    ffn_size: int | None = None
    mlp_ratio: float | None = None
    ffn_multiple: int | None = None
    rope_theta: float | None = None
    qk_norm: bool = False
    z_loss: float = 0.0


@dataclass(frozen=True)
class Spec:
    """A validated sweep spec as plain data. `scaling_cli.plan.plan_runs` expands it into runs."""

    path: Path
    text: str
    name: str
    description: str
    datasets: tuple[str, ...]
    data: dict  # the [data] table as written; checked by the data layer's DataOptions when planning
    tokenizer: str
    vocab_size: int
    seeds: tuple[int, ...]
    model: ModelGrid
    budgets: tuple[int, ...]  # token budgets; empty in isoflop mode
    isoflop_budgets: tuple[float, ...]  # FLOP budgets; empty unless isoflop mode
    lrs: tuple[float, ...]
    batch_sizes: tuple[int, ...]
    train_fields: dict  # TrainConfig keyword arguments shared by every run
    device: str
    track: tuple[str, ...] = ()  # experiment trackers each finished run is logged to (TRACKERS); not in run ids
    slurm: SlurmOptions | None = None  # the [slurm] table: how `--executor slurm` asks for jobs; not in run ids

    @property
    def isoflop(self) -> bool:
        return bool(self.isoflop_budgets)


@dataclass(frozen=True)
class SlurmOptions:
    """How `scale sweep --executor slurm` asks Slurm for each unit's job: the spec's `[slurm]` table, with the
    command line's options of the same names (`--partition`, `--time`, ...) winning over it."""

    partition: str | None = setting(
        None, non_empty_text, "sbatch --partition; default: the cluster's default partition", key="slurm.partition"
    )
    time: int = setting(
        60,
        integer(1, 525_600),  # Slurm's minimum is one minute; a year is surely a typo
        "minutes per job (sbatch --time); a unit still training then saves its state and is requeued",
        key="slurm.time",
    )
    account: str | None = setting(
        None, non_empty_text, "sbatch --account; default: the user's default account", key="slurm.account"
    )
    gpus_per_task: int = setting(
        0,
        integer(0, 1024),
        "GPUs each unit's job gets (a data-parallel run's ranks share them)",
        key="slurm.gpus_per_task",
    )
    cpus_per_task: int = setting(
        1,
        integer(1, 4096),
        "CPU cores each unit's job gets; the unit trains with that many threads",
        key="slurm.cpus_per_task",
    )


def spec_fields() -> dict[str, Field]:
    """Every spec key (dotted: "train.lr", "eval.every", "seeds") -> the config dataclass field that declares it.
    [data]'s keys are DataOptions' fields, read by the data layer (spec_reference lists them too)."""
    keys = {}
    for config, table in ((SweepSettings, ""), (ModelConfig, "model"), (TrainConfig, "train"), (SlurmOptions, "")):
        for item in fields(config):
            if item.metadata.get("in_spec"):
                keys[item.metadata["key"] or f"{table}.{item.name}"] = item
    return keys


FIELDS = spec_fields()
# table name ("" for the top level) -> the keys it accepts
TABLE_KEYS: dict[str, set[str]] = {"": set(TABLES)}
for _key in FIELDS:
    _table_name, _, _name = _key.rpartition(".")
    TABLE_KEYS.setdefault(_table_name, set()).add(_name)
SHAPE_KEYS = {*GRID_FIELDS, "tokens"}  # the keys of one of [model] shapes


def load_spec(path: str | Path) -> Spec:
    """Read and validate a sweep spec; raise SpecError(path, field, problem) for the problems found."""
    path = Path(path)
    where = str(path)
    if not path.is_file():
        raise SpecError(where, "file", "not found" if not path.exists() else "not a file")
    text = path.read_text(encoding="utf-8")
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(where, "toml", f"malformed TOML: {exc}") from None
    return parse_spec(raw, path=path, text=text)


def parse_spec(raw: dict, path: Path, text: str = "") -> Spec:
    """Validate a parsed TOML document into a Spec (separate from load_spec so tests can build specs in memory)."""
    problems = Problems(str(path))
    _check_keys(raw, TABLE_KEYS[""], "", problems)
    tables = {"": raw} | {name: _table(raw, name, problems, required=name in ("model", "train")) for name in TABLES}
    for name in TABLES:
        if name not in ("data", "slurm"):  # [data]: the data layer's, when planning; [slurm]: slurm_options
            _check_keys(tables[name], TABLE_KEYS.get(name, set()), name + ".", problems)
    read = Reader(tables, problems)

    name, description, datasets = read("name"), read("description"), read("dataset")
    tokenizer = read("tokenizer")
    vocab_size = read("vocab_size")
    if tokenizer == "bytes" and vocab_size not in (None, 256):
        problems.add("vocab_size", "the bytes tokenizer has a vocabulary of 256; leave vocab_size out")
    if tokenizer.startswith(PRETRAINED_TOKENIZERS) and vocab_size is not None:
        problems.add("vocab_size", "a pretrained tokenizer brings its own vocabulary; leave vocab_size out")
    if tokenizer == "bpe" and vocab_size is None:
        problems.add("vocab_size", "required with tokenizer = 'bpe'")
    seeds, device, track = read("seeds"), read("device"), read("track")

    grid = _model_grid(read)
    lrs, batch_sizes = read("train.lr"), read("train.batch_size")
    iso_budgets = read("isoflop.flops") if tables["isoflop"] else []
    if tables["isoflop"] and "tokens" in tables["train"]:
        problems.add("train.tokens", "leave it out in isoflop mode: tokens are derived from isoflop.flops")
    budgets = [] if tables["isoflop"] else read("train.tokens")
    if tables["isoflop"] and grid is not None and any(size.tokens for size in grid.sizes):
        problems.add("model.shapes", "a shape's own tokens do not apply in isoflop mode")
    train_fields = {"device": device} | _train_fields(read)
    slurm = slurm_options(tables["slurm"], problems, "slurm.")
    problems.raise_if_any()

    spec = Spec(
        path=path,
        text=text,
        name=name,
        description=description,
        datasets=tuple(datasets),
        data=dict(tables["data"]),
        tokenizer=tokenizer,
        vocab_size=256 if tokenizer == "bytes" else vocab_size,
        seeds=tuple(seeds),
        model=grid,
        budgets=tuple(budgets),
        isoflop_budgets=tuple(iso_budgets),
        lrs=tuple(lrs),
        batch_sizes=tuple(batch_sizes),
        train_fields=train_fields,
        device=device,
        track=tuple(track),
        slurm=slurm,
    )
    _check_budgets(spec)
    return spec


def _check_budgets(spec: Spec) -> None:
    """A token budget shorter than one optimiser step of some batch size."""
    budgets = [("train.tokens", tokens) for tokens in spec.budgets]
    budgets += [(f"{size.field}.tokens", tokens) for size in spec.model.sizes for tokens in size.tokens]
    for batch_size, (field, tokens) in itertools.product(spec.batch_sizes, budgets):
        step_tokens = batch_size * spec.model.seq_len
        if tokens < step_tokens:
            raise SpecError(
                str(spec.path),
                field,
                f"budget {tokens} is less than one step "
                f"(batch_size {batch_size} x seq_len {spec.model.seq_len} = {step_tokens} tokens)",
            )


def spec_default(item: Field) -> Any:
    """A field's default in a spec (REQUIRED where a spec must give it); an axis's is a list."""
    default = item.metadata.get("spec_default", item.default)
    if item.metadata["axis"] and default is not REQUIRED:
        return list(default) if isinstance(default, tuple) else [default]
    return default


class Reader:
    """Reads spec keys by their dotted name, each with its field's check and default; problems are collected
    and the key's default (None where required) is returned in their place."""

    def __init__(self, tables: dict[str, dict], problems: Problems):
        self.tables = tables
        self.problems = problems

    def __call__(self, key: str, table: dict | None = None, field: str | None = None, check: Callable | None = None):
        item = FIELDS[key]
        table_name, _, name = key.rpartition(".")
        table = self.tables[table_name] if table is None else table
        default = spec_default(item)
        required = default is REQUIRED
        check = check or item.metadata["check"]
        reader = _axis if item.metadata["axis"] else _get
        return reader(table, name, field or key, check, self.problems, required, None if required else default)

    def given(self, key: str) -> bool:
        table_name, _, name = key.rpartition(".")
        return name in self.tables[table_name]


# ---- tables ----


def slurm_options(table: dict, problems: Problems, prefix: str) -> SlurmOptions:
    """SlurmOptions from a [slurm] table (or the command line's values by field name; `prefix` names the
    fields in messages); each problem goes to `problems`."""
    _check_keys(table, {item.name for item in fields(SlurmOptions)}, prefix, problems)
    given = {}
    for item in fields(SlurmOptions):
        value = _get(table, item.name, prefix + item.name, item.metadata["check"], problems)
        if value is not None:
            given[item.name] = value
    return SlurmOptions(**given)


def _model_grid(read: Reader) -> ModelGrid | None:
    problems = read.problems
    model = read.tables["model"]
    seq_len = read("model.seq_len")
    shared = {
        item.name: read(f"model.{item.name}")
        for item in fields(ModelConfig)
        if item.metadata["key"] is None and item.name not in (*GRID_FIELDS, "seq_len")
    }
    if shared["base_width"] is not None and shared["parametrization"] != "mup":
        problems.add("model.base_width", 'only applies with parametrization = "mup"')
    head_dim = read("model.head_dim")
    n_head = read("model.n_head")
    if head_dim is not None and n_head is not None:
        problems.add("model.head_dim", "give head_dim or n_head, not both")
    if "shapes" in model:
        if "d_model" in model:
            problems.add("model.shapes", "give shapes or d_model, not both")
        sizes = _explicit_sizes(read)
    else:
        widths = read("model.d_model") or []
        n_layer = read("model.n_layer", check=_or_auto(FIELDS["model.n_layer"].metadata["check"]))
        depth = None if n_layer == "auto" else n_layer
        sizes = [
            Size(f"model.d_model[{i}]" if len(widths) > 1 else "model.d_model", width, depth, n_head, head_dim)
            for i, width in enumerate(widths)
        ]
    if seq_len is None or problems.has("model."):
        return None
    return ModelGrid(sizes=tuple(sizes), seq_len=seq_len, **shared)


def _explicit_sizes(read: Reader) -> list[Size]:
    sizes = []
    for i, item in enumerate(read("model.shapes") or []):
        field = f"model.shapes[{i}]"
        if not isinstance(item, dict):
            read.problems.add(
                field, f"expected a table like {{d_model = 64, n_layer = 2, n_head = 2}}, got {show(item)}"
            )
            continue
        _check_keys(item, SHAPE_KEYS, field + ".", read.problems)
        # a shape gives every one of its keys; each is checked as its config field is
        width, depth, heads = (
            _get(item, key, f"{field}.{key}", FIELDS[f"model.{key}"].metadata["check"], read.problems, required=True)
            for key in GRID_FIELDS
        )
        tokens = read("train.tokens", table=item, field=field + ".tokens") if "tokens" in item else []
        if None not in (width, depth, heads):
            sizes.append(Size(field, width, depth, heads, tokens=tuple(tokens or ())))
    return sizes


def _train_fields(read: Reader) -> dict:
    """The TrainConfig fields a spec gives for every run, by field name (its axes and device are read apart)."""
    given = {}
    for item in fields(TrainConfig):
        key = item.metadata["key"] or f"train.{item.name}"
        if item.metadata["in_spec"] and not item.metadata["axis"] and key != "device" and read.given(key):
            value = read(key)
            if value is not None:
                given[item.name] = value
    return given


# ---- field readers: each returns the value or records a problem and returns None ----


def _table(raw: dict, key: str, problems: Problems, required: bool = False) -> dict:
    value = raw.get(key)
    if value is None:
        if required:
            problems.add(key, f"missing table [{key}]")
        return {}
    if not isinstance(value, dict):
        problems.add(key, f"expected a table [{key}], got {show(value)}")
        return {}
    return value


def _check_keys(table: dict, allowed: set[str], prefix: str, problems: Problems) -> None:
    for key, problem in unknown_keys(table, allowed):
        problems.add(prefix + key, problem)


def _get(
    table: dict, key: str, field: str, check: Callable, problems: Problems, required: bool = False, default: Any = None
) -> Any:
    if key not in table:
        if required:
            problems.add(field, "required")
        return default
    try:
        return check(table[key])
    except (TypeError, ValueError) as exc:
        problems.add(field, str(exc))
        return default if not required else None


def _axis(
    table: dict, key: str, field: str, check: Callable, problems: Problems, required: bool = False, default: Any = None
) -> list | None:
    """A field that may be one value or a list of values (a grid axis)."""
    if key not in table:
        if required:
            problems.add(field, "required")
        return default
    value = table[key]
    values = value if isinstance(value, list) else [value]
    if not values:
        problems.add(field, "expected at least one value, got an empty list")
        return None
    out = []
    for i, item in enumerate(values):
        try:
            out.append(check(item))
        except (TypeError, ValueError) as exc:
            problems.add(f"{field}[{i}]" if isinstance(value, list) else field, str(exc))
    if len(set(out)) != len(out):  # the same run twice would share one run id
        problems.add(field, f"a value is listed twice: {value}")
    return out


def _or_auto(check: Callable) -> Callable:
    """`check`, or the word "auto" (n_layer's depth rule)."""
    return lambda value: value if value == "auto" else check(value)
