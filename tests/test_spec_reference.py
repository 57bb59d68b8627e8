"""One source for every config field: the spec's keys, checks, defaults and `scale sweep --help-spec` all come
from the config dataclasses' fields (validate.setting), so a field cannot be added to one and missed by another."""

from __future__ import annotations

import tomllib
from dataclasses import fields
from pathlib import Path

import pytest
from conftest import TINY, scale_in_process

from scaling_cli.config import ModelConfig, TrainConfig
from scaling_cli.data.options import DataOptions
from scaling_cli.errors import SpecError
from scaling_cli.spec import FIELDS, TABLE_KEYS, SlurmOptions, SweepSettings, parse_spec
from scaling_cli.spec_reference import spec_keys, spec_reference

CONFIGS = (ModelConfig, TrainConfig, DataOptions, SweepSettings, SlurmOptions)


def test_every_field_declares_its_check_and_doc():
    for config in CONFIGS:
        for item in fields(config):
            assert callable(item.metadata.get("check")), f"{config.__name__}.{item.name} has no check"
            assert item.metadata.get("doc"), f"{config.__name__}.{item.name} has no doc"


def test_every_config_field_is_a_spec_key_and_every_spec_key_a_field():
    keys = spec_keys()
    declared = {id(item) for item in keys.values()}
    for config in CONFIGS:
        for item in fields(config):
            if item.metadata.get("in_spec", True):
                assert id(item) in declared, f"{config.__name__}.{item.name} is not a spec key"
    runtime_only = {item.name for item in fields(TrainConfig) if not item.metadata["in_spec"]}
    assert runtime_only == {"threads", "nan_at_step"}
    # what the reader accepts is exactly what the fields declare (plus the table names)
    accepted = {f"{table}.{key}" if table else key for table, names in TABLE_KEYS.items() for key in names}
    assert accepted - set(FIELDS) == {"data", "model", "train", "eval", "isoflop", "slurm"}


def test_help_spec_lists_every_key_with_its_doc_and_bounds():
    result = scale_in_process("sweep", "--help-spec")
    assert result.returncode == 0, result.stderr
    text = result.stdout
    rows = spec_reference()
    assert len(rows) == len(spec_keys())
    for row in rows:
        assert row.doc in text.replace("\n      ", "\n"), row.key
        assert f"{row.key.rpartition('.')[2]}: {row.type}" in text
    assert "  weight_decay: number, >= 0, <= 10; default 0.1" in text
    assert "  every: integer, >= 0, <= 2^31; default 100" in text


def bounded_fields() -> list[tuple[str, object]]:
    """(spec key, a value just past one of its bounds) for every numeric field of the spec reader."""
    cases = []
    for key, item in FIELDS.items():
        low, high, low_open, high_open = getattr(item.metadata["check"], "bounds", (None,) * 4)
        if high is not None:
            cases.append((key, high if high_open else (high + 1 if isinstance(high, int) else high * 2)))
        elif low is not None:
            cases.append((key, low if low_open else low - 1))
    return cases


@pytest.mark.parametrize(("key", "value"), bounded_fields(), ids=[key for key, _ in bounded_fields()])
def test_an_out_of_bounds_value_gives_the_bound_from_its_field(key, value):
    raw = tomllib.loads(TINY.read_text())
    table, _, name = key.rpartition(".")
    if table == "isoflop":
        raw["train"].pop("tokens")
    (raw.setdefault(table, {}) if table else raw)[name] = value
    with pytest.raises(SpecError) as info:
        parse_spec(raw, path=Path("bounds.toml"))
    assert info.value.field == key
    low, high, _, _ = FIELDS[key].metadata["check"].bounds
    bound = high if high is not None else low
    assert f"{bound:g}" in info.value.problem or str(bound) in info.value.problem, info.value.problem


def test_zero_means_never_for_checkpoints_and_only_at_the_end_for_evaluations_in_a_spec_as_in_the_config():
    from scaling_cli.plan import plan_runs

    raw = tomllib.loads(TINY.read_text())
    raw["train"]["checkpoint_every"] = 0
    raw.setdefault("eval", {})["every"] = 0
    run = plan_runs(parse_spec(raw, path=Path("zero.toml"))).runs()[0]
    assert (run.train.checkpoint_every, run.train.eval_every) == (0, 0)
    assert "0: never" in FIELDS["train.checkpoint_every"].metadata["doc"]
    assert "0: only at the end" in FIELDS["eval.every"].metadata["doc"]


def another_value(item) -> object:
    """A valid value of a field other than its default, from its check alone."""
    check, default = item.metadata["check"], item.default
    if hasattr(check, "options"):
        return next(option for option in check.options if option != default)
    if getattr(check, "kind", "") == "boolean":
        return default is not True
    low, high, low_open, _ = check.bounds
    start = 1 if low is None or low_open else low
    value = next(v for v in range(int(start), int(start) + 3) if v != default and (high is None or v <= high))
    return float(value) if check.kind == "number" else value


def test_every_train_key_of_a_spec_reaches_its_config_field():
    """Each [train] and [eval] key, set to a value other than its default, is the value the planned run trains
    with: the reader knows each key from its field alone, with no list of its own to forget one in."""
    from scaling_cli.plan import plan_runs

    shared = {key: item for key, item in FIELDS.items() if item in fields(TrainConfig) and not item.metadata["axis"]}
    raw = tomllib.loads(TINY.read_text())
    chosen = {}
    for key, item in shared.items():
        if key == "device":
            continue
        chosen[item.name] = another_value(item)
        table, _, name = key.rpartition(".")
        raw.setdefault(table, {})[name] = chosen[item.name]
    run = plan_runs(parse_spec(raw, path=Path("every-key.toml"))).runs()[0]
    assert len(chosen) >= 15
    assert {name: getattr(run.train, name) for name in chosen} == chosen
