"""Read a sweep spec (TOML) strictly into frozen dataclasses, validate it, expand its grid and name its runs.

A spec has top-level keys (`name`, `dataset`, `tokenizer`, `vocab_size`, `seeds`, `device`, ...) and the
tables `[data]` (passed to the data layer), `[model]` (sizes), `[train]` (budgets and optimiser), `[eval]` and
`[isoflop]`. Any grid field given as a list becomes an axis of the grid: datasets x sizes x batch sizes x
learning rates x seeds x budgets. Every problem is reported as `SpecError(spec file, dotted field, problem)`.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import itertools
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from scaling_cli.errors import ScaleError, SpecError

TOP_KEYS = {
    "name",
    "description",
    "dataset",
    "tokenizer",
    "vocab_size",
    "seeds",
    "device",
    "data",
    "model",
    "train",
    "eval",
    "isoflop",
}
MODEL_KEYS = {"d_model", "n_layer", "n_head", "head_dim", "seq_len", "shapes", "tie_embeddings", "gpt2"}
SHAPE_KEYS = {"d_model", "n_layer", "n_head"}
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
}
EVAL_KEYS = {"every", "batches"}
ISOFLOP_KEYS = {"flops"}
SCHEDULES = ("cosine", "constant", "wsd")
COOLDOWN_SHAPES = ("linear", "1-sqrt")
DEVICES = ("auto", "cpu", "cuda", "mps")
DTYPES = ("auto", "fp32", "bf16")
TOKENIZERS = ("bytes", "bpe")

# TrainConfig fields that change only what is logged or how fast it runs, never the trained model:
# they are left out of the run id so that changing them reuses finished runs.
NOT_IN_RUN_ID = ("eval_every", "checkpoint_every", "threads", "compile")


@dataclass(frozen=True)
class RunPlan:
    """One training run of the grid: everything needed to train it and to describe it in the results."""

    run_id: str
    trunk_key: str  # equal for runs that differ only in their token budget
    sweep: str
    dataset: str
    data_options: Any  # scaling_cli.data.DataOptions
    tokenizer: str
    vocab_size: int
    model: Any  # scaling_cli.model.ModelConfig
    train: Any  # scaling_cli.train.TrainConfig
    params: int
    params_nonembed: int
    flops_per_token: float  # Chinchilla Appendix F, training
    flops_6nd_per_token: float

    @property
    def tokens(self) -> int:
        return int(self.train.tokens)

    @property
    def flops(self) -> float:
        return self.flops_per_token * self.tokens

    @property
    def flops_6nd(self) -> float:
        return self.flops_6nd_per_token * self.tokens

    @property
    def tokens_per_param(self) -> float:
        return self.tokens / self.params

    def describe(self) -> dict:
        """The run's identifying fields as a flat, JSON-able dict (the left half of a results row)."""
        return {
            "run_id": self.run_id,
            "sweep": self.sweep,
            "dataset": self.dataset,
            "tokenizer": self.tokenizer,
            "vocab_size": self.vocab_size,
            "n_layer": self.model.n_layer,
            "d_model": self.model.d_model,
            "n_head": self.model.n_head,
            "seq_len": self.model.seq_len,
            "params": self.params,
            "params_nonembed": self.params_nonembed,
            "tokens": self.tokens,
            "flops": self.flops,
            "flops_6nd": self.flops_6nd,
            "tokens_per_param": self.tokens_per_param,
            "lr": self.train.lr,
            "batch_size": self.train.batch_size,
            "schedule": self.train.schedule,
            "seed": self.train.seed,
        }


@dataclass(frozen=True)
class Spec:
    """A validated sweep spec. `runs()` expands the grid into `RunPlan`s."""

    path: Path
    text: str
    name: str
    description: str
    datasets: tuple[str, ...]
    data_options: Any
    tokenizer: str
    vocab_size: int
    seeds: tuple[int, ...]
    shapes: tuple[Any, ...]  # ModelConfig per size
    budgets: tuple[int, ...]  # token budgets; empty in isoflop mode
    isoflop_budgets: tuple[float, ...]  # FLOP budgets; empty unless isoflop mode
    lrs: tuple[float, ...]
    batch_sizes: tuple[int, ...]
    train_fields: dict  # TrainConfig keyword arguments shared by every run
    device: str

    @property
    def isoflop(self) -> bool:
        return bool(self.isoflop_budgets)

    def runs(self) -> list[RunPlan]:
        return expand_runs(self)


class _Problems:
    """Collects every problem found in a spec; raises them as one SpecError naming the first field."""

    def __init__(self, where: str):
        self.where = where
        self.items: list[tuple[str, str]] = []

    def add(self, field: str, problem: str) -> None:
        self.items.append((field, problem))

    def raise_if_any(self) -> None:
        if not self.items:
            return
        field, problem = self.items[0]
        if len(self.items) > 1:
            rest = "; ".join(f"{f}: {p}" for f, p in self.items[1:])
            problem = f"{problem} (also {rest})"
        raise SpecError(self.where, field, problem)


def load_spec(path: str | Path) -> Spec:
    """Read and validate a sweep spec; raise SpecError(path, field, problem) for the first problem found."""
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
    where = str(path)
    problems = _Problems(where)
    _check_keys(raw, TOP_KEYS, "", problems)
    model = _table(raw, "model", problems, required=True)
    train = _table(raw, "train", problems, required=True)
    evals = _table(raw, "eval", problems)
    iso = _table(raw, "isoflop", problems)
    _check_keys(model, MODEL_KEYS, "model.", problems)
    _check_keys(train, TRAIN_KEYS, "train.", problems)
    _check_keys(evals, EVAL_KEYS, "eval.", problems)
    _check_keys(iso, ISOFLOP_KEYS, "isoflop.", problems)

    name = _get(raw, "name", "name", _name, problems, required=True)
    description = _get(raw, "description", "description", _string, problems, default="")
    datasets = _axis(raw, "dataset", "dataset", _string, problems, required=True)
    tokenizer = _get(raw, "tokenizer", "tokenizer", _choice(TOKENIZERS), problems, default="bytes")
    vocab_size = _get(raw, "vocab_size", "vocab_size", _int_range(2, 65536), problems, default=None)
    if tokenizer == "bytes" and vocab_size not in (None, 256):
        problems.add("vocab_size", "the bytes tokenizer has a vocabulary of 256; leave vocab_size out")
    if tokenizer == "bpe" and vocab_size is None:
        problems.add("vocab_size", "required with tokenizer = 'bpe'")
    vocab = 256 if tokenizer == "bytes" else (vocab_size or 256)
    seeds = _axis(raw, "seeds", "seeds", _int_range(0, 2**31 - 1), problems, default=[0])
    device = _get(raw, "device", "device", _choice(DEVICES), problems, default="auto")
    data_options = _data_options(raw.get("data", {}), where, problems)

    shapes = _shapes(model, vocab, problems)
    lrs = _axis(train, "lr", "train.lr", _float_range(0.0, 10.0, low_open=True), problems, required=True)
    batch_sizes = _axis(train, "batch_size", "train.batch_size", _int_range(1, 1 << 20), problems, required=True)
    budgets, iso_budgets = _budgets(train, iso, problems)
    train_fields = _train_fields(train, evals, device, problems)
    problems.raise_if_any()

    spec = Spec(
        path=path,
        text=text,
        name=name,
        description=description,
        datasets=tuple(datasets),
        data_options=data_options,
        tokenizer=tokenizer,
        vocab_size=vocab,
        seeds=tuple(seeds),
        shapes=tuple(shapes),
        budgets=tuple(budgets),
        isoflop_budgets=tuple(iso_budgets),
        lrs=tuple(lrs),
        batch_sizes=tuple(batch_sizes),
        train_fields=train_fields,
        device=device,
    )
    _check_runs(spec)
    return spec


# ---- grid expansion and run ids ----


def expand_runs(spec: Spec) -> list[RunPlan]:
    """Every run of the grid, in a stable order (dataset, size, batch size, lr, seed, budget)."""
    from scaling_cli.model import count_params, flops_per_token
    from scaling_cli.train import TrainConfig

    runs = []
    grid = itertools.product(spec.datasets, spec.shapes, spec.batch_sizes, spec.lrs, spec.seeds)
    for dataset, shape, batch_size, lr, seed in grid:
        params, nonembed = count_params(shape)
        per_token = flops_per_token(shape)
        for tokens in _run_budgets(spec, float(per_token["chinchilla"]), batch_size * shape.seq_len):
            train = TrainConfig(tokens=tokens, batch_size=batch_size, lr=lr, seed=seed, **spec.train_fields)
            identity = _identity(spec, dataset, shape, train)
            runs.append(
                RunPlan(
                    run_id=_short_hash(identity),
                    trunk_key=_short_hash(_without_budget(identity)),
                    sweep=spec.name,
                    dataset=dataset,
                    data_options=spec.data_options,
                    tokenizer=spec.tokenizer,
                    vocab_size=spec.vocab_size,
                    model=shape,
                    train=train,
                    params=int(params),
                    params_nonembed=int(nonembed),
                    flops_per_token=float(per_token["chinchilla"]),
                    flops_6nd_per_token=float(per_token["kaplan"]),
                )
            )
    return runs


def _run_budgets(spec: Spec, flops_per_token: float, tokens_per_step: int) -> list[int]:
    if not spec.isoflop:
        return list(spec.budgets)
    # Round to whole optimiser steps so the budget the run trains is the budget it reports.
    return [max(1, round(c / flops_per_token / tokens_per_step)) * tokens_per_step for c in spec.isoflop_budgets]


def _identity(spec: Spec, dataset: str, shape: Any, train: Any) -> dict:
    train_dict = {k: v for k, v in dataclasses.asdict(train).items() if k not in NOT_IN_RUN_ID}
    return {
        "dataset": dataset,
        "data": spec.data_options.to_dict(),
        "tokenizer": spec.tokenizer,
        "vocab_size": spec.vocab_size,
        "model": dataclasses.asdict(shape),
        "train": train_dict,
    }


def _without_budget(identity: dict) -> dict:
    return {**identity, "train": {k: v for k, v in identity["train"].items() if k != "tokens"}}


def _short_hash(obj: dict) -> str:
    canonical = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def _check_runs(spec: Spec) -> None:
    """Problems that only show once sizes and budgets meet: a budget shorter than one optimiser step."""
    where = str(spec.path)
    for shape, batch_size in itertools.product(spec.shapes, spec.batch_sizes):
        step_tokens = batch_size * shape.seq_len
        for tokens in spec.budgets:
            if tokens < step_tokens:
                raise SpecError(
                    where,
                    "train.tokens",
                    f"budget {tokens} is less than one step "
                    f"(batch_size {batch_size} x seq_len {shape.seq_len} = {step_tokens} tokens)",
                )
    try:
        expand_runs(spec)
    except ValueError as exc:
        raise SpecError(where, "train", str(exc)) from None


# ---- tables ----


def _data_options(table: Any, where: str, problems: _Problems) -> Any:
    from scaling_cli.data import parse_data_options

    if not isinstance(table, dict):
        problems.add("data", f"expected a table, got {_show(table)}")
        table = {}
    try:
        return parse_data_options(table, where=where)
    except ScaleError as exc:
        problems.add(exc.field, exc.problem)
        return None


def _shapes(model: dict, vocab: int, problems: _Problems) -> list[Any]:
    from scaling_cli.model import ModelConfig, depth_for_width, heads_for_width

    seq_len = _get(model, "seq_len", "model.seq_len", _int_range(2, 1 << 20), problems, required=True)
    tie = _get(model, "tie_embeddings", "model.tie_embeddings", _bool, problems, default=True)
    gpt2 = _get(model, "gpt2", "model.gpt2", _bool, problems, default=False)
    head_dim = _get(model, "head_dim", "model.head_dim", _int_range(1, 4096), problems, default=None)
    n_head = _get(model, "n_head", "model.n_head", _int_range(1, 4096), problems, default=None)
    if head_dim is not None and n_head is not None:
        problems.add("model.head_dim", "give head_dim or n_head, not both")
    triples: list[tuple[str, int, int, int]] = []
    if "shapes" in model:
        if "d_model" in model:
            problems.add("model.shapes", "give shapes or d_model, not both")
        triples = _explicit_shapes(model["shapes"], problems)
    else:
        widths = _axis(model, "d_model", "model.d_model", _int_range(1, 1 << 16), problems, required=True)
        n_layer = _get(model, "n_layer", "model.n_layer", _int_or_auto, problems, default="auto")
        for i, width in enumerate(widths or []):
            depth = depth_for_width(width) if n_layer == "auto" else n_layer
            if head_dim is not None:
                heads = heads_for_width(width, head_dim=head_dim)
            else:
                heads = n_head if n_head is not None else heads_for_width(width)
            triples.append((f"model.d_model[{i}]" if len(widths) > 1 else "model.d_model", width, depth, heads))
    if seq_len is None or any(p[0].startswith("model.") for p in problems.items):
        return []
    shapes = []
    for field, width, depth, heads in triples:
        try:
            shapes.append(
                ModelConfig(
                    d_model=width,
                    n_layer=depth,
                    n_head=heads,
                    seq_len=seq_len,
                    vocab_size=vocab,
                    tie_embeddings=tie,
                    gpt2=gpt2,
                )
            )
        except (ValueError, TypeError) as exc:
            problems.add(field, str(exc))
    if len(set(shapes)) != len(shapes):
        problems.add("model.d_model", "the same size is listed twice")
    return shapes


def _explicit_shapes(value: Any, problems: _Problems) -> list[tuple[str, int, int, int]]:
    if not isinstance(value, list) or not value:
        problems.add("model.shapes", f"expected a non-empty list of tables, got {_show(value)}")
        return []
    triples = []
    for i, item in enumerate(value):
        field = f"model.shapes[{i}]"
        if not isinstance(item, dict):
            problems.add(field, f"expected a table like {{d_model = 64, n_layer = 2, n_head = 2}}, got {_show(item)}")
            continue
        _check_keys(item, SHAPE_KEYS, field + ".", problems)
        width = _get(item, "d_model", field + ".d_model", _int_range(1, 1 << 16), problems, required=True)
        depth = _get(item, "n_layer", field + ".n_layer", _int_range(1, 1024), problems, required=True)
        heads = _get(item, "n_head", field + ".n_head", _int_range(1, 4096), problems, required=True)
        if None not in (width, depth, heads):
            triples.append((field, width, depth, heads))
    return triples


def _budgets(train: dict, iso: dict, problems: _Problems) -> tuple[list[int], list[float]]:
    if iso:
        if "tokens" in train:
            problems.add("train.tokens", "leave it out in isoflop mode: tokens are derived from isoflop.flops")
        flops = _axis(iso, "flops", "isoflop.flops", _float_range(1.0, 1e30), problems, required=True)
        return [], list(flops or [])
    tokens = _axis(train, "tokens", "train.tokens", _whole_number(1, 10**15), problems, required=True)
    return list(tokens or []), []


def _train_fields(train: dict, evals: dict, device: str, problems: _Problems) -> dict:
    checks: dict[str, tuple[str, Callable]] = {
        "schedule": ("train.schedule", _choice(SCHEDULES)),
        "warmup_tokens": ("train.warmup_tokens", _whole_number(0, 10**15)),
        "cooldown_frac": ("train.cooldown_frac", _float_range(0.0, 1.0)),
        "cooldown_shape": ("train.cooldown_shape", _choice(COOLDOWN_SHAPES)),
        "min_lr_frac": ("train.min_lr_frac", _float_range(0.0, 1.0)),
        "weight_decay": ("train.weight_decay", _float_range(0.0, 10.0)),
        "grad_clip": ("train.grad_clip", _float_range(0.0, 1e6)),
        "beta1": ("train.beta1", _float_range(0.0, 1.0, high_open=True)),
        "beta2": ("train.beta2", _float_range(0.0, 1.0, high_open=True)),
        "checkpoint_every": ("train.checkpoint_every", _int_range(1, 1 << 31)),
        "dtype": ("train.dtype", _choice(DTYPES)),
        "compile": ("train.compile", _bool),
    }
    fields = {"device": device}
    for key, (field, check) in checks.items():
        if key in train:
            value = _get(train, key, field, check, problems)
            if value is not None:
                fields[key] = value
    every = _get(evals, "every", "eval.every", _int_range(1, 1 << 31), problems, default=None)
    batches = _get(evals, "batches", "eval.batches", _int_range(1, 100_000), problems, default=None)
    if every is not None:
        fields["eval_every"] = every
    if batches is not None:
        fields["eval_batches"] = batches
    return fields


# ---- field readers: each returns the value or records a problem and returns None ----


def _table(raw: dict, key: str, problems: _Problems, required: bool = False) -> dict:
    value = raw.get(key)
    if value is None:
        if required:
            problems.add(key, f"missing table [{key}]")
        return {}
    if not isinstance(value, dict):
        problems.add(key, f"expected a table [{key}], got {_show(value)}")
        return {}
    return value


def _check_keys(table: dict, allowed: set[str], prefix: str, problems: _Problems) -> None:
    for key in table:
        if key not in allowed:
            close = difflib.get_close_matches(key, sorted(allowed), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else f"; known keys: {', '.join(sorted(allowed))}"
            problems.add(prefix + key, f"unknown key '{key}'{hint}")


def _get(
    table: dict, key: str, field: str, check: Callable, problems: _Problems, required: bool = False, default: Any = None
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
    table: dict, key: str, field: str, check: Callable, problems: _Problems, required: bool = False, default: Any = None
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


def _show(value: Any) -> str:
    return repr(value) if not isinstance(value, (dict, list)) else type(value).__name__


def _string(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise TypeError(f"expected a non-empty string, got {_show(value)}")
    return value


def _name(value: Any) -> str:
    text = _string(value)
    if not all(c.isalnum() or c in "-_." for c in text) or text.startswith("."):
        raise ValueError(f"expected letters, digits, '-', '_' or '.' (it names a directory), got {text!r}")
    return text


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected true or false, got {_show(value)}")
    return value


def _choice(options: tuple[str, ...]) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if value not in options:
            close = difflib.get_close_matches(str(value), options, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ValueError(f"expected one of {', '.join(options)}, got {_show(value)}{hint}")
        return value

    return check


def _int_range(low: int, high: int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"expected an integer, got {_show(value)}")
        if not low <= value <= high:
            raise ValueError(f"out of range: {value} (allowed {low}..{high})")
        return value

    return check


def _whole_number(low: int, high: int) -> Callable[[Any], int]:
    """An integer that may be written as a float (1e6 or 2.5e6 tokens), as long as it is whole."""

    def check(value: Any) -> int:
        if isinstance(value, float) and math.isfinite(value) and value == int(value):
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"expected a whole number, got {_show(value)}")
        if not low <= value <= high:
            raise ValueError(f"out of range: {value} (allowed {low}..{high:.0e})")
        return value

    return check


def _float_range(low: float, high: float, low_open: bool = False, high_open: bool = False) -> Callable:
    def check(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise TypeError(f"expected a number, got {_show(value)}")
        value = float(value)
        too_low = value <= low if low_open else value < low
        too_high = value >= high if high_open else value > high
        if too_low or too_high:
            left, right = "(" if low_open else "[", ")" if high_open else "]"
            raise ValueError(f"out of range: {value:g} (allowed {left}{low:g}, {high:g}{right})")
        return value

    return check


def _int_or_auto(value: Any) -> int | str:
    if value == "auto":
        return value
    return _int_range(1, 1024)(value)
