"""The one way config values are checked: small check functions, a problem collector, and the closed vocabularies.

A check takes a raw value and returns it (normalised: an integer given for a float becomes a float) or raises
`ValueError` with the problem in words (`must be an integer, got 'big'`). The spec reader applies checks to
TOML values and reports `SpecError(file, "train.lr", problem)`; the config dataclasses (`TrainConfig`,
`ModelConfig`, `DataOptions`) apply the same checks to their fields in `__post_init__` and raise
`ValueError("<field>: <problem>")`. So a value is described with the same words wherever it is rejected.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Iterable
from dataclasses import MISSING, field, fields
from typing import Any

from scaling_cli.errors import SpecError

# Closed vocabularies of config fields, defined here once.
SCHEDULES = ("cosine", "constant", "wsd")
COOLDOWN_SHAPES = ("linear", "1-sqrt")
DEVICES = ("auto", "cpu", "cuda", "mps")
DTYPES = ("auto", "fp32", "bf16")
SHARDINGS = ("ddp", "fsdp")  # how a data-parallel run holds its model: replicated, or FSDP2-sharded
TOKENIZERS = ("bytes", "bpe")
PARAMETRIZATIONS = ("sp", "mup")
PRETRAINED_TOKENIZERS = ("hf:", "tiktoken:")  # prefixes of a pretrained tokenizer: hf:PATH, tiktoken:ENCODING

Check = Callable[[Any], Any]


def show(value: Any) -> str:
    """A value as a problem message quotes it: repr for scalars, the type name for tables and lists."""
    return type(value).__name__ if isinstance(value, (dict, list)) else repr(value)


def _integer_value(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"must be an integer, got {show(value)}")
    return value


def _number_value(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"must be a finite number, got {show(value)}")
    return float(value)


def _bounds_problem(value: float, low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    """'' when value lies within the bounds, else the words saying where it must lie."""
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if not (too_low or too_high):
        return ""
    if high is None:
        if low_open:
            return f"must be more than {low:g}, got {value:g}"
        return f"must be 0 or more, got {value:g}" if low == 0 else f"must be at least {low:g}, got {value:g}"
    if low is None:
        return f"must be less than {high:g}, got {value:g}" if high_open else f"must be at most {high:g}, got {value:g}"
    if isinstance(low, int) and isinstance(high, int) and not (low_open or high_open):
        return f"must be between {low} and {high}, got {value:g}"
    left, right = "(" if low_open else "[", ")" if high_open else "]"
    return f"must be in {left}{low:g}, {high:g}{right}, got {value:g}"


def _whole_value(value: Any) -> int:
    if isinstance(value, float) and math.isfinite(value) and value == int(value):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"must be a whole number, got {show(value)}")
    return value


def _within(
    convert: Callable[[Any], Any],
    low: float | None,
    high: float | None,
    low_open: bool = False,
    high_open: bool = False,
) -> Check:
    """A check that converts a value (or says what it must be), then keeps it within the bounds."""

    def check(value: Any) -> Any:
        value = convert(value)
        problem = _bounds_problem(value, low, high, low_open, high_open)
        if problem:
            raise ValueError(problem)
        return value

    check.bounds = (low, high, low_open, high_open)  # read by describe(), for the spec reference
    return check


def integer(low: int | None = None, high: int | None = None) -> Check:
    """An int (not a bool) within [low, high]."""
    return _described(_within(_integer_value, low, high), "integer")


def whole_number(low: int | None = None, high: int | None = None) -> Check:
    """An int that may be written as a whole float (1e6 tokens), within [low, high]; returned as an int."""
    return _described(_within(_whole_value, low, high), "integer")


def number(
    low: float | None = None, high: float | None = None, *, low_open: bool = False, high_open: bool = False
) -> Check:
    """A finite int or float within the bounds (open or closed on each side); returned as a float."""
    return _described(_within(_number_value, low, high, low_open, high_open), "number")


def boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false, got {show(value)}")
    return value


def text(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"must be a non-empty string, got {show(value)}")
    return value


boolean.kind = "boolean"
text.kind = "string"


def one_of(options: tuple) -> Check:
    """One of a closed set of values, with a did-you-mean hint for a near miss."""

    def check(value: Any) -> Any:
        if isinstance(value, bool) or value not in options:
            close = difflib.get_close_matches(str(value), [str(o) for o in options], n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ValueError(f"must be one of {', '.join(map(str, options))}, got {show(value)}{hint}")
        return value

    check.options = options
    return _described(check, "string" if all(isinstance(o, str) for o in options) else "value")


def optional(check: Check) -> Check:
    """None, or a value that passes `check` (described as `check` is: a TOML spec cannot write None)."""

    def either(value: Any) -> Any:
        return None if value is None else check(value)

    either.__dict__.update(check.__dict__)
    return either


def _bound(value: float) -> str:
    if isinstance(value, int) and value >= 1 << 20 and value & (value - 1) == 0:
        return f"2^{value.bit_length() - 1}"
    return str(value) if isinstance(value, int) and abs(value) < 10**7 else f"{value:g}"


def _described(check: Check, kind: str) -> Check:
    check.kind = kind
    return check


def describe(check: Check) -> tuple[str, str]:
    """(type, bounds) of a check in words, as the spec reference prints them: ("integer", "1 to 4096")."""
    kind = getattr(check, "kind", "value")
    if hasattr(check, "options"):
        return kind, "one of " + ", ".join(map(str, check.options))
    if hasattr(check, "bounds"):
        low, high, low_open, high_open = check.bounds
        parts = []
        if low is not None:
            parts.append(f"> {_bound(low)}" if low_open else f">= {_bound(low)}")
        if high is not None:
            parts.append(f"< {_bound(high)}" if high_open else f"<= {_bound(high)}")
        return kind, ", ".join(parts)
    return kind, getattr(check, "rule", "")


def unknown_keys(table: Iterable[str], allowed: Iterable[str]) -> list[tuple[str, str]]:
    """(key, problem) for every key not allowed, with a did-you-mean hint or the list of known keys."""
    allowed = sorted(allowed)
    problems = []
    for key in table:
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else f"; known keys: {', '.join(allowed)}"
            problems.append((key, f"unknown key '{key}'{hint}"))
    return problems


REQUIRED = MISSING  # the default of a field that has none
_SAME = object()  # spec_default not given: the spec's default is the config's


def setting(
    default: Any,
    check: Check,
    doc: str,
    *,
    key: str | None = None,
    axis: bool = False,
    spec_default: Any = _SAME,
    in_spec: bool = True,
) -> Any:
    """A config dataclass field that declares, once, everything about it: default, check (type and bounds) and
    doc; `check_fields(self)` applies the check, and the spec reader and `scale sweep --help-spec` read the rest.

    key: its spec key when not `<table>.<field name>` ("eval.every", or "seeds" at the top level); axis: a
    list of values makes a grid axis; spec_default: the spec's default where it differs from the config's
    (REQUIRED: the spec must give it); in_spec: False for runtime knobs no spec sets.
    """
    metadata = {"check": check, "doc": doc, "key": key, "axis": axis, "in_spec": in_spec}
    if spec_default is not _SAME:
        metadata["spec_default"] = spec_default
    if default is REQUIRED:
        return field(metadata=metadata)
    return field(default=default, metadata=metadata)


def field_problems(obj: Any) -> list[tuple[str, str]]:
    """(field, problem) for every field of a config dataclass that fails the check its `setting` declares."""
    checks = {f.name: f.metadata["check"] for f in fields(obj) if "check" in f.metadata}
    problems = []
    for name, check in checks.items():
        try:
            check(getattr(obj, name))
        except (TypeError, ValueError) as exc:
            problems.append((name, str(exc)))
    return problems


def check_fields(obj: Any) -> None:
    """For a config dataclass's __post_init__: raise ValueError("<field>: <problem>") for the first bad field;
    keep each value as its check normalises it (1e6 tokens an int, lr = 1 a float), as the spec reader does."""
    problems = field_problems(obj)
    if problems:
        name, problem = problems[0]
        raise ValueError(f"{name}: {problem}")
    for item in fields(obj):
        if "check" in item.metadata:
            object.__setattr__(obj, item.name, item.metadata["check"](getattr(obj, item.name)))


class Problems:
    """Collects every problem found in one file or option set; raises them as one SpecError naming the first."""

    def __init__(self, where: str):
        self.where = where
        self.items: list[tuple[str, str]] = []

    def add(self, field: str, problem: str) -> None:
        self.items.append((field, problem))

    def has(self, prefix: str) -> bool:
        return any(field.startswith(prefix) for field, _ in self.items)

    def raise_if_any(self) -> None:
        if not self.items:
            return
        field, problem = self.items[0]
        if len(self.items) > 1:
            rest = "; ".join(f"{f}: {p}" for f, p in self.items[1:])
            problem = f"{problem} (also {rest})"
        raise SpecError(self.where, field, problem)
