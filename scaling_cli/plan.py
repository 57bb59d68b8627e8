"""Expand a validated Spec into runs: model and train configs per grid point, isoFLOP budgets, and run ids.

This layer sits above `data`, `model` and `train` (it builds their configs) and below `sweep` (which trains
what it plans). Problems that need those layers to see (a [data] option, a head count that does not divide
the width, the same size twice) are reported here as `SpecError(spec file, field, problem)`.

A run id is the first 12 hex digits of sha256 over the canonical JSON of exactly what changes the trained
model: the data set's identity (the key its prepared directory is named by: the source's content fingerprint
- sdist version, Python version and standard-library files, markov options, local files - with the cleaning
options, tokenizer and vocabulary), the model config (less fields added later, at their defaults) and the
train config with the device type and dtype resolved (`auto` means bf16 on CUDA, fp32 elsewhere), less the
fields in NOT_IN_RUN_ID and the schedule options its schedule does not use.

Planning also rejects what cannot train here, before anything runs: an unknown data set (with the nearest
name), a device this machine (or the Ray cluster) does not have, bf16 on a CPU that emulates it.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from scaling_cli.config.train import DEVICE_PREFERENCE, auto_device
from scaling_cli.data.options import DataOptions, parse_data_options
from scaling_cli.errors import DataError, SpecError
from scaling_cli.model import (
    BUILT_IN,
    LLAMA_FIELDS,
    MUP_REVISION,
    ModelConfig,
    count_params,
    depth_for_width,
    flops_per_token,
    heads_for_width,
)
from scaling_cli.model.plugin import check_plugin, plugin_identity
from scaling_cli.spec import Size, Spec, load_spec
from scaling_cli.train.config import TrainConfig
from scaling_cli.validate import Problems

# TrainConfig fields that change only what is logged or how fast it runs, never the trained model:
# they are left out of the run id so that changing them reuses finished runs.
# data_parallel, sharding and micro_batch_size change only the order of float sums, not the data or the schedule.
NOT_IN_RUN_ID = ("eval_every", "checkpoint_every", "threads", "compile")
NOT_IN_RUN_ID += ("data_parallel", "sharding", "micro_batch_size")
# Schedule options that a schedule never reads: editing them must not retrain its runs.
UNUSED_BY_SCHEDULE = {
    "cosine": ("cooldown_frac", "cooldown_shape"),
    "wsd": ("min_lr_frac",),
    "constant": ("cooldown_frac", "cooldown_shape", "min_lr_frac"),
}
# bf16 autocast this many times slower than fp32 on the CPU means it is emulated: refuse it.
BF16_MAX_SLOWDOWN = 3.0
# The device types runs can train on, or a callable giving them (asked only when needed), or None: this machine's.
Devices = frozenset[str] | Callable[[], frozenset[str]] | None
# ModelConfig fields added after runs were first named: left out of the run id while at their default, so the
# runs of existing specs keep their ids (and their finished results).
MODEL_LATER_DEFAULTS = {
    "parametrization": "sp",
    "base_width": None,
    "architecture": "gpt2",
    **{name: ModelConfig.__dataclass_fields__[name].default for name in LLAMA_FIELDS},
}
# runs.parquet columns naming the architecture and its options (empty where they do not apply).
ARCHITECTURE_COLUMNS = ("architecture", "n_kv_head", "ffn_size", "rope_theta", "qk_norm", "z_loss", "tie_embeddings")


@dataclass(frozen=True)
class RunPlan:
    """One training run of the grid: everything needed to train it and to describe it in the results."""

    run_id: str
    trunk_key: str  # equal for runs that differ only in their token budget
    sweep: str
    dataset: str
    data_options: DataOptions
    tokenizer: str
    vocab_size: int
    model: ModelConfig
    train: TrainConfig
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
        """The run's identifying fields as a flat, JSON-able dict (the left half of a results row), in column order."""
        return {
            **_pick(self, ("run_id", "sweep", "dataset", "tokenizer", "vocab_size")),
            **_pick(self.model, ("n_layer", "d_model", "n_head", "seq_len", "parametrization", "base_width")),
            **_pick(self.model, ARCHITECTURE_COLUMNS),
            **_pick(self, ("params", "params_nonembed", "tokens", "flops", "flops_6nd", "tokens_per_param")),
            **_pick(self.train, ("lr", "batch_size", "schedule", "seed")),
        }


def _pick(obj: object, names: tuple[str, ...]) -> dict:
    return {name: getattr(obj, name) for name in names}


@dataclass(frozen=True)
class Sweep:
    """A spec with its data options checked, and every run of its grid."""

    spec: Spec
    data_options: DataOptions
    run_plans: tuple[RunPlan, ...]

    name = property(lambda self: self.spec.name)
    path = property(lambda self: self.spec.path)
    text = property(lambda self: self.spec.text)
    device = property(lambda self: self.spec.device)
    datasets = property(lambda self: self.spec.datasets)
    tokenizer = property(lambda self: self.spec.tokenizer)
    vocab_size = property(lambda self: self.spec.vocab_size)

    def runs(self) -> list[RunPlan]:
        """Every run, in the order dataset x size x batch size x lr x seed x budget."""
        return list(self.run_plans)


def load_sweep(path: str | Path, devices: Devices = None, check_hardware: bool = False) -> Sweep:
    """Read, validate and expand a sweep spec; every problem is a SpecError naming the spec file."""
    return plan_runs(load_spec(path), devices, check_hardware)


def plan_runs(spec: Spec, devices: Devices = None, check_hardware: bool = False) -> Sweep:
    """Check what the spec layer cannot (data options, model shapes, data sets) and expand the grid into runs.

    `devices`: the device types runs can train on (default: this machine's), which `device = "auto"` resolves
    against; a callable is asked only when the spec's device is not "cpu". With `check_hardware` (a sweep about
    to train, or its dry run), a device that is not there and bf16 on a CPU that emulates it are SpecErrors;
    without it (reading a spec elsewhere) the ids are the same.
    """
    where = str(spec.path)
    data_options = parse_data_options(spec.data, where=where)
    spec = _with_pretrained_vocab(spec)
    shapes = _shapes(spec)
    runtime = _runtime(spec, devices, check_hardware)
    data_keys = {dataset: _data_key(spec, dataset, data_options) for dataset in spec.datasets}
    try:
        runs = tuple(_expand(spec, data_options, shapes, runtime, data_keys))
    except ValueError as exc:
        raise SpecError(where, "train", str(exc)) from None
    return Sweep(spec=spec, data_options=data_options, run_plans=runs)


def _with_pretrained_vocab(spec: Spec) -> Spec:
    """A pretrained tokenizer's (hf:, tiktoken:) vocabulary is its own: the spec takes it from the tokenizer file."""
    from scaling_cli.data.tokenizer import check_tokenizer, is_pretrained

    if not is_pretrained(spec.tokenizer):
        return spec
    try:
        return dataclasses.replace(spec, vocab_size=check_tokenizer(spec.tokenizer, None))
    except DataError as exc:
        raise SpecError(str(spec.path), "tokenizer", exc.problem) from None


def _runtime(spec: Spec, devices: Devices, check_hardware: bool) -> dict:
    """The device type and dtype the runs will train with, checked against what is there."""
    from scaling_cli.train.runtime import available_device_types, cpu_bf16_slowdown, resolve_dtype

    where = str(spec.path)
    requested = spec.device
    if requested == "cpu":  # always there; no need to ask torch (importing it costs seconds)
        available = frozenset({"cpu"})
    elif devices is None:
        available = available_device_types()
    else:
        available = devices() if callable(devices) else devices
    if requested == "auto":
        device = auto_device(available)
    elif requested in available or not check_hardware:
        device = requested
    else:
        found = ", ".join(kind for kind in DEVICE_PREFERENCE if kind in available)
        raise SpecError(where, "device", f"{requested!r} is not available on this machine (available: {found})")
    dtype = resolve_dtype(spec.train_fields.get("dtype", "auto"), device)
    if check_hardware and dtype == "bf16" and device == "cpu":
        slowdown = cpu_bf16_slowdown()
        if slowdown > BF16_MAX_SLOWDOWN:
            import torch

            raise SpecError(
                where,
                "train.dtype",
                f"bf16 on this CPU ({torch.backends.cpu.get_cpu_capability()}, no native bf16) trained a test block "
                f'{slowdown:.0f}x slower than fp32; use dtype = "fp32" (or "auto", which is fp32 on a CPU)',
            )
    return {"device": device, "dtype": dtype}


def _data_key(spec: Spec, dataset: str, data_options: DataOptions) -> dict:
    """The data set's identity (what its prepared directory is named by); unknown names get a suggestion."""
    from scaling_cli.data.prepared import dataset_key
    from scaling_cli.data.sources import SOURCES
    from scaling_cli.data.tokenizer import check_tokenizer

    try:
        vocab = check_tokenizer(spec.tokenizer, spec.vocab_size if spec.tokenizer == "bpe" else None)
        return dataset_key(dataset, data_options, spec.tokenizer, vocab)
    except DataError as exc:
        if exc.field != "dataset":
            raise SpecError(str(spec.path), exc.field, exc.problem) from None
        close = difflib.get_close_matches(dataset, list(SOURCES), n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise SpecError(
            str(spec.path),
            "dataset",
            f"unknown data set {dataset!r}; {hint}built-in: {', '.join(SOURCES)}; or a local file, directory or glob",
        ) from None


def _shapes(spec: Spec) -> tuple[ModelConfig, ...]:
    problems = Problems(str(spec.path))
    shapes = []
    for size in spec.model.sizes:
        try:
            shapes.append(_model_config(spec, size))
            if shapes[-1].architecture not in BUILT_IN:
                check_plugin(shapes[-1])  # a plug-in that breaks the contract fails here, before anything trains
        except (ValueError, TypeError) as exc:
            problems.add(size.field, str(exc))
    if len(set(shapes)) != len(shapes):
        problems.add("model.d_model", "the same size is listed twice")
    problems.raise_if_any()
    return tuple(shapes)


def _model_config(spec: Spec, size: Size) -> ModelConfig:
    """A size of the spec as a ModelConfig: depth from width unless given, heads from n_head or head_dim."""
    depth = size.n_layer if size.n_layer is not None else depth_for_width(size.d_model)
    if size.n_head is not None:
        heads = size.n_head
    elif size.head_dim is not None:
        heads = heads_for_width(size.d_model, head_dim=size.head_dim)
    else:
        heads = heads_for_width(size.d_model)
    return ModelConfig(
        d_model=size.d_model,
        n_layer=depth,
        n_head=heads,
        seq_len=spec.model.seq_len,
        vocab_size=spec.vocab_size,
        tie_embeddings=spec.model.tie_embeddings,
        gpt2=spec.model.gpt2,
        parametrization=spec.model.parametrization,
        base_width=_base_width(spec),
        architecture=spec.model.architecture,
        **{name: getattr(spec.model, name) for name in LLAMA_FIELDS},
    )


def _base_width(spec: Spec) -> int | None:
    """muP's base width: as given, else the sweep's smallest width; None under the standard parametrization."""
    if spec.model.parametrization != "mup":
        return None
    return spec.model.base_width or min(size.d_model for size in spec.model.sizes)


def _expand(
    spec: Spec, data_options: DataOptions, shapes: tuple[ModelConfig, ...], runtime: dict, data_keys: dict
) -> list[RunPlan]:
    runs = []
    own_budgets = {shape: size.tokens for shape, size in zip(shapes, spec.model.sizes)}
    grid = itertools.product(spec.datasets, shapes, spec.batch_sizes, spec.lrs, spec.seeds)
    for dataset, shape, batch_size, lr, seed in grid:
        params, nonembed = count_params(shape)
        per_token = flops_per_token(shape)
        step_tokens = batch_size * shape.seq_len
        for tokens in _run_budgets(spec, float(per_token["chinchilla"]), step_tokens, own_budgets[shape]):
            fields = {**spec.train_fields, **runtime}
            train = TrainConfig(tokens=tokens, batch_size=batch_size, lr=lr, seed=seed, **fields)
            identity = _identity(data_keys[dataset], shape, train)
            runs.append(
                RunPlan(
                    run_id=_short_hash(identity),
                    trunk_key=_short_hash(_without_budget(identity)),
                    sweep=spec.name,
                    dataset=dataset,
                    data_options=data_options,
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


def _run_budgets(spec: Spec, flops_per_token: float, tokens_per_step: int, own: tuple[int, ...]) -> list[int]:
    """The token budgets of one shape: its own (an explicit shape's `tokens`), else the spec's or isoFLOP's."""
    if not spec.isoflop:
        return list(own or spec.budgets)
    # Round to whole optimiser steps so the budget the run trains is the budget it reports.
    return [max(1, round(c / flops_per_token / tokens_per_step)) * tokens_per_step for c in spec.isoflop_budgets]


def _identity(data_key: dict, shape: ModelConfig, train: TrainConfig) -> dict:
    return {"data": data_key, "model": _model_identity(shape), "train": _train_identity(train)}


def _train_identity(train: TrainConfig) -> dict:
    """The train config's fields that change this run's result, with the device as its type."""
    unused = set(NOT_IN_RUN_ID) | set(UNUSED_BY_SCHEDULE[train.schedule])
    fields = {k: v for k, v in dataclasses.asdict(train).items() if k not in unused}
    if fields["nan_at_step"] is None:  # a test hook: part of the id only when it is set
        del fields["nan_at_step"]
    return fields


def _model_identity(shape: ModelConfig) -> dict:
    fields = dataclasses.asdict(shape)
    identity = {k: v for k, v in fields.items() if k not in MODEL_LATER_DEFAULTS or v != MODEL_LATER_DEFAULTS[k]}
    if shape.parametrization == "mup":
        identity["mup_revision"] = MUP_REVISION
    source = plugin_identity(shape)
    if source is not None:  # a plug-in's code is part of what it trains
        identity["architecture_source"] = source
    return identity


def _without_budget(identity: dict) -> dict:
    return {**identity, "train": {k: v for k, v in identity["train"].items() if k != "tokens"}}


def _short_hash(obj: dict) -> str:
    canonical = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]
