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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scaling_cli.errors import SpecError
from scaling_cli.validate import text as non_empty_text
from scaling_cli.validate import (
    COOLDOWN_SHAPES,
    DEVICES,
    DTYPES,
    PARAMETRIZATIONS,
    PRETRAINED_TOKENIZERS,
    SCHEDULES,
    SHARDINGS,
    TOKENIZERS,
    Problems,
    boolean,
    integer,
    number,
    one_of,
    show,
    unknown_keys,
    whole_number,
)

TRACKERS = ("wandb", "tensorboard", "mlflow")  # `track = [...]` and `scale sweep --track`

TOP_KEYS = {
    "name",
    "description",
    "dataset",
    "tokenizer",
    "vocab_size",
    "seeds",
    "device",
    "track",
    "data",
    "model",
    "train",
    "eval",
    "isoflop",
}
MODEL_KEYS = {
    "d_model",
    "n_layer",
    "n_head",
    "head_dim",
    "seq_len",
    "shapes",
    "tie_embeddings",
    "gpt2",
    "parametrization",
    "base_width",
    "architecture",
    "n_kv_head",
    "ffn_size",
    "mlp_ratio",
    "ffn_multiple",
    "rope_theta",
    "qk_norm",
    "z_loss",
}
SHAPE_KEYS = {"d_model", "n_layer", "n_head", "tokens"}
TRAIN_KEYS = {
    "tokens",
    "lr",
    "batch_size",
    "schedule",
    "warmup_tokens",
    "cooldown_frac",
    "cooldown_shape",
    "min_lr_frac",
    "weight_decay",
    "grad_clip",
    "beta1",
    "beta2",
    "checkpoint_every",
    "dtype",
    "compile",
    "data_parallel",
    "sharding",
    "micro_batch_size",
}
EVAL_KEYS = {"every", "batches"}
ISOFLOP_KEYS = {"flops"}

# [model] keys every size shares besides seq_len: their checks and defaults.
MODEL_SHARED_CHECKS: dict[str, tuple[Callable, object]] = {
    "tie_embeddings": (boolean, True),
    "gpt2": (boolean, False),
    "parametrization": (one_of(PARAMETRIZATIONS), "sp"),
    "base_width": (integer(1, 1 << 16), None),
    # architecture: "gpt2", "llama" or "module:function"; the model layer checks the name and the llama options
    "architecture": (non_empty_text, "gpt2"),
    "n_kv_head": (integer(1, 4096), None),
    "ffn_size": (integer(1, 1 << 20), None),
    "mlp_ratio": (number(0.0, 64.0, low_open=True), None),
    "ffn_multiple": (integer(1, 1 << 16), None),
    "rope_theta": (number(1.0, 1e12), None),
    "qk_norm": (boolean, False),
    "z_loss": (number(0.0, 1.0), 0.0),
}
# [train] keys shared by every run, with their checks (the grid axes tokens, lr and batch_size are read apart).
TRAIN_CHECKS: dict[str, Callable] = {
    "schedule": one_of(SCHEDULES),
    "warmup_tokens": whole_number(0, 10**15),
    "cooldown_frac": number(0.0, 1.0),
    "cooldown_shape": one_of(COOLDOWN_SHAPES),
    "min_lr_frac": number(0.0, 1.0),
    "weight_decay": number(0.0, 10.0),
    "grad_clip": number(0.0, 1e6),
    "beta1": number(0.0, 1.0, high_open=True),
    "beta2": number(0.0, 1.0, high_open=True),
    "checkpoint_every": integer(1, 1 << 31),
    "dtype": one_of(DTYPES),
    "compile": boolean,
    "data_parallel": integer(1, 4096),
    "sharding": one_of(SHARDINGS),
    "micro_batch_size": integer(1, 1 << 31),
}


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

    @property
    def isoflop(self) -> bool:
        return bool(self.isoflop_budgets)


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
    _check_keys(raw, TOP_KEYS, "", problems)
    model = _table(raw, "model", problems, required=True)
    train = _table(raw, "train", problems, required=True)
    evals = _table(raw, "eval", problems)
    iso = _table(raw, "isoflop", problems)
    data = _table(raw, "data", problems)
    _check_keys(model, MODEL_KEYS, "model.", problems)
    _check_keys(train, TRAIN_KEYS, "train.", problems)
    _check_keys(evals, EVAL_KEYS, "eval.", problems)
    _check_keys(iso, ISOFLOP_KEYS, "isoflop.", problems)

    name = _get(raw, "name", "name", _directory_name, problems, required=True)
    description = _get(raw, "description", "description", non_empty_text, problems, default="")
    datasets = _axis(raw, "dataset", "dataset", non_empty_text, problems, required=True)
    tokenizer = _get(raw, "tokenizer", "tokenizer", _tokenizer_name, problems, default="bytes")
    vocab_size = _get(raw, "vocab_size", "vocab_size", integer(2, 65536), problems, default=None)
    if tokenizer == "bytes" and vocab_size not in (None, 256):
        problems.add("vocab_size", "the bytes tokenizer has a vocabulary of 256; leave vocab_size out")
    if tokenizer.startswith(PRETRAINED_TOKENIZERS) and vocab_size is not None:
        problems.add("vocab_size", "a pretrained tokenizer brings its own vocabulary; leave vocab_size out")
    if tokenizer == "bpe" and vocab_size is None:
        problems.add("vocab_size", "required with tokenizer = 'bpe'")
    seeds = _axis(raw, "seeds", "seeds", integer(0, 2**31 - 1), problems, default=[0])
    device = _get(raw, "device", "device", one_of(DEVICES), problems, default="auto")
    track = _axis(raw, "track", "track", one_of(TRACKERS), problems, default=[])

    grid = _model_grid(model, problems)
    lrs = _axis(train, "lr", "train.lr", number(0.0, 10.0, low_open=True), problems, required=True)
    batch_sizes = _axis(train, "batch_size", "train.batch_size", integer(1, 1 << 20), problems, required=True)
    budgets, iso_budgets = _budgets(train, iso, problems)
    if iso and grid is not None and any(size.tokens for size in grid.sizes):
        problems.add("model.shapes", "a shape's own tokens do not apply in isoflop mode")
    train_fields = _train_fields(train, evals, device, problems)
    problems.raise_if_any()

    spec = Spec(
        path=path,
        text=text,
        name=name,
        description=description,
        datasets=tuple(datasets),
        data=dict(data),
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
        track=tuple(track or ()),
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


# ---- tables ----


def _model_grid(model: dict, problems: Problems) -> ModelGrid | None:
    seq_len = _get(model, "seq_len", "model.seq_len", integer(2, 1 << 20), problems, required=True)
    shared = {
        key: _get(model, key, f"model.{key}", check, problems, default=default)
        for key, (check, default) in MODEL_SHARED_CHECKS.items()
    }
    if shared["base_width"] is not None and shared["parametrization"] != "mup":
        problems.add("model.base_width", 'only applies with parametrization = "mup"')
    head_dim = _get(model, "head_dim", "model.head_dim", integer(1, 4096), problems, default=None)
    n_head = _get(model, "n_head", "model.n_head", integer(1, 4096), problems, default=None)
    if head_dim is not None and n_head is not None:
        problems.add("model.head_dim", "give head_dim or n_head, not both")
    if "shapes" in model:
        if "d_model" in model:
            problems.add("model.shapes", "give shapes or d_model, not both")
        sizes = _explicit_sizes(model["shapes"], problems)
    else:
        widths = _axis(model, "d_model", "model.d_model", integer(1, 1 << 16), problems, required=True) or []
        n_layer = _get(model, "n_layer", "model.n_layer", _int_or_auto, problems, default="auto")
        depth = None if n_layer == "auto" else n_layer
        sizes = [
            Size(f"model.d_model[{i}]" if len(widths) > 1 else "model.d_model", width, depth, n_head, head_dim)
            for i, width in enumerate(widths)
        ]
    if seq_len is None or problems.has("model."):
        return None
    return ModelGrid(sizes=tuple(sizes), seq_len=seq_len, **shared)


def _explicit_sizes(value: Any, problems: Problems) -> list[Size]:
    if not isinstance(value, list) or not value:
        problems.add("model.shapes", f"expected a non-empty list of tables, got {show(value)}")
        return []
    sizes = []
    for i, item in enumerate(value):
        field = f"model.shapes[{i}]"
        if not isinstance(item, dict):
            problems.add(field, f"expected a table like {{d_model = 64, n_layer = 2, n_head = 2}}, got {show(item)}")
            continue
        _check_keys(item, SHAPE_KEYS, field + ".", problems)
        width = _get(item, "d_model", field + ".d_model", integer(1, 1 << 16), problems, required=True)
        depth = _get(item, "n_layer", field + ".n_layer", integer(1, 1024), problems, required=True)
        heads = _get(item, "n_head", field + ".n_head", integer(1, 4096), problems, required=True)
        tokens = _axis(item, "tokens", field + ".tokens", whole_number(1, 10**15), problems, default=[]) or []
        if None not in (width, depth, heads):
            sizes.append(Size(field, width, depth, heads, tokens=tuple(tokens)))
    return sizes


def _budgets(train: dict, iso: dict, problems: Problems) -> tuple[list[int], list[float]]:
    if iso:
        if "tokens" in train:
            problems.add("train.tokens", "leave it out in isoflop mode: tokens are derived from isoflop.flops")
        flops = _axis(iso, "flops", "isoflop.flops", number(1.0, 1e30), problems, required=True)
        return [], list(flops or [])
    tokens = _axis(train, "tokens", "train.tokens", whole_number(1, 10**15), problems, required=True)
    return list(tokens or []), []


def _train_fields(train: dict, evals: dict, device: str, problems: Problems) -> dict:
    fields = {"device": device}
    for key, check in TRAIN_CHECKS.items():
        if key in train:
            value = _get(train, key, f"train.{key}", check, problems)
            if value is not None:
                fields[key] = value
    every = _get(evals, "every", "eval.every", integer(1, 1 << 31), problems, default=None)
    batches = _get(evals, "batches", "eval.batches", integer(1, 100_000), problems, default=None)
    if every is not None:
        fields["eval_every"] = every
    if batches is not None:
        fields["eval_batches"] = batches
    return fields


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


def _int_or_auto(value: Any) -> int | str:
    if value == "auto":
        return value
    return integer(1, 1024)(value)
