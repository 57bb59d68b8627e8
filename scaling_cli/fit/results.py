"""The fit's results as typed, frozen values, and fit.json as their serialisation.

`FitResult.from_json` is the one place a fit.json document is read: it checks every field a reader
relies on and refuses a damaged document with a FitError naming the field (one line, exit 2), so no
hand-edited or truncated file reaches a prediction as a traceback or as `nan` answers. `to_json` gives
the document back with the same keys in the same order; what a reader does not need is carried
verbatim in `extra`. Predict, plot, report, status and suggest read attributes of these values.

A law's fitted entry is a `LawFit`; a law made of several fitted parts (Kaplan's L(N), L(D), L(C))
keeps each part as a `LawFit` of its own under `parts`, found by shape: a table with `params`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from scaling_cli.errors import FitError


def _ordered(values: dict, order: tuple[str, ...], extra: Mapping) -> dict:
    """`values` and `extra` in the document's original key order, keys new to it last."""
    merged = {**extra, **values}
    return {key: merged[key] for key in (*[k for k in order if k in merged], *[k for k in merged if k not in order])}


def _written(values: dict, order: tuple[str, ...], defaults: dict) -> dict:
    """The typed fields to write: those the document had, and those that differ from their default."""
    return {key: value for key, value in values.items() if key in order or value != defaults.get(key)}


@dataclass(frozen=True)
class LawFit:
    """One fitted law (or one part of a law): its parameters, intervals, status and what the fit recorded."""

    params: Mapping[str, float] = field(default_factory=dict)
    status: str = "ok"
    problems: tuple[str, ...] = ()
    intervals: Mapping[str, list | None] = field(default_factory=dict)
    fixed: Mapping[str, float] = field(default_factory=dict)
    settings: Mapping = field(default_factory=dict)
    diagnostics: Mapping = field(default_factory=dict)
    derived: Mapping = field(default_factory=dict)
    at_compute: Mapping | None = None
    calibration: Mapping | None = None
    bootstrap: Mapping | None = None
    r2: float | None = None
    vector: list[float] | None = None
    parts: Mapping[str, LawFit] = field(default_factory=dict)
    extra: Mapping = field(default_factory=dict)
    order: tuple[str, ...] = ()

    _TYPED = ("params", "status", "problems", "intervals", "fixed", "settings", "diagnostics", "derived")
    _TYPED_MORE = ("at_compute", "calibration", "bootstrap", "r2", "vector")

    @property
    def identified(self) -> bool:
        return self.status == "ok"

    @property
    def conventions(self) -> Mapping:
        """The law's own counting conventions (N, C), when they differ from the table's."""
        return self.settings.get("conventions") or {}

    @property
    def samples(self) -> list[list[float]]:
        """The stored bootstrap samples that are complete (a value written as null was an overflow)."""
        rows = (self.bootstrap or {}).get("samples") or []
        return [row for row in rows if all(v is not None for v in row)]

    @classmethod
    def of(cls, entry: Mapping) -> LawFit:
        """A law's entry as the pipeline built it (unchecked: the fit itself wrote it)."""
        typed = {key: entry[key] for key in (*cls._TYPED, *cls._TYPED_MORE) if key in entry}
        typed["problems"] = tuple(typed.get("problems") or ())
        parts = {key: cls.of(value) for key, value in entry.items() if _is_part(key, value)}
        taken = {*typed, *parts}
        extra = {key: value for key, value in entry.items() if key not in taken}
        return cls(**typed, parts=parts, extra=extra, order=tuple(entry))

    @classmethod
    def from_json(cls, entry, where: str, field_name: str) -> LawFit:
        """A checked law entry: every parameter of an identified law (or of each of its parts) a finite number."""
        if not isinstance(entry, dict):
            raise FitError(where, field_name, f"must be a table, got {_kind(entry)}")
        if entry.get("status", "ok") == "ok":
            parts = [key for key, value in entry.items() if _is_part(key, value)]
            checked = [f"{field_name}.{part}" for part in parts] if parts else [field_name]
            for name, part in zip(checked, [entry[p] for p in parts] if parts else [entry]):
                _check_params(part.get("params"), f"{name}.params", where)
        problems = entry.get("problems")
        if problems is not None and not isinstance(problems, list):
            raise FitError(where, f"{field_name}.problems", f"must be a list, got {_kind(problems)}")
        return cls.of(entry)

    def to_json(self) -> dict:
        values = {key: getattr(self, key) for key in (*self._TYPED, *self._TYPED_MORE)}
        values["problems"] = list(self.problems)
        written = _written(values, self.order, {**_defaults(LawFit), "problems": []})
        written.update({key: part.to_json() for key, part in self.parts.items()})
        return _ordered(written, self.order, self.extra)


@dataclass(frozen=True)
class Recommendation:
    """The backtest's choice: a law under a filter, the selection procedure's error and its refit."""

    law: str
    filter: str = "all"
    expected_error: float | None = None
    max_error: float | None = None
    scored: int = 0
    weak: bool = True
    fit: LawFit | None = None
    extra: Mapping = field(default_factory=dict)
    order: tuple[str, ...] = ()

    _TYPED = ("law", "filter", "expected_error", "max_error", "scored", "weak")

    @classmethod
    def from_json(cls, entry, where: str, field_name: str) -> Recommendation:
        if not isinstance(entry, dict) or not isinstance(entry.get("law"), str):
            raise FitError(where, field_name, "must be a table naming its law")
        fitted = entry.get("fit")
        typed = {key: entry[key] for key in cls._TYPED if key in entry}
        return cls(
            **typed,
            fit=None if fitted is None else LawFit.from_json(fitted, where, f"{field_name}.fit"),
            extra={key: value for key, value in entry.items() if key not in (*cls._TYPED, "fit")},
            order=tuple(entry),
        )

    def to_json(self) -> dict:
        values = {key: getattr(self, key) for key in self._TYPED}
        written = _written(values, self.order, _defaults(Recommendation))
        if self.fit is not None or "fit" in self.order:
            written["fit"] = None if self.fit is None else self.fit.to_json()
        return _ordered(written, self.order, self.extra)


@dataclass(frozen=True)
class Backtest:
    """The rolling backtest of a group: every candidate (filter x law) scored, and the recommendation."""

    candidates: tuple[Mapping, ...] = ()
    recommended: Recommendation | None = None
    skipped: str | None = None
    cut: float | None = None
    fitted_on: int | None = None
    held_out: int | None = None
    scored: int | None = None
    scored_on: str | None = None
    C_ratio: float | None = None
    extra: Mapping = field(default_factory=dict)
    order: tuple[str, ...] = ()

    _TYPED = ("cut", "fitted_on", "held_out", "scored", "scored_on", "C_ratio")

    @classmethod
    def from_json(cls, entry, where: str, field_name: str) -> Backtest:
        if not isinstance(entry, dict):
            raise FitError(where, field_name, f"must be a table, got {_kind(entry)}")
        chosen = entry.get("recommended")
        skipped = entry.get("skipped")
        field_chosen = f"{field_name}.recommended"
        return cls(
            **{key: entry[key] for key in cls._TYPED if key in entry},
            candidates=tuple(entry.get("candidates") or ()),
            recommended=None if chosen is None else Recommendation.from_json(chosen, where, field_chosen),
            skipped=skipped if isinstance(skipped, str) else None,
            extra={k: v for k, v in entry.items() if k not in (*cls._TYPED, "candidates", "recommended", "skipped")},
            order=tuple(entry),
        )

    def to_json(self) -> dict:
        written = _written({key: getattr(self, key) for key in self._TYPED}, self.order, _defaults(Backtest))
        if self.candidates or "candidates" in self.order:
            written["candidates"] = list(self.candidates)
        if self.recommended is not None or "recommended" in self.order:
            written["recommended"] = None if self.recommended is None else self.recommended.to_json()
        if self.skipped is not None:
            written["skipped"] = self.skipped
        return _ordered(written, self.order, self.extra)


@dataclass(frozen=True)
class GroupFit:
    """One group's fit: its points and range, every fitted law, the laws skipped and why, the backtest."""

    laws: Mapping[str, LawFit]
    points: tuple[Mapping, ...] = ()
    range: Mapping | None = None
    at_compute: float | None = None
    skipped: Mapping[str, str] = field(default_factory=dict)
    holdout: Mapping | None = None
    backtest: Backtest | None = None
    lr: Mapping | None = None
    n_points: int | None = None
    extra: Mapping = field(default_factory=dict)
    order: tuple[str, ...] = ()

    _TYPED = ("range", "at_compute", "skipped", "holdout", "lr", "n_points")

    @property
    def unique_tokens(self) -> float | None:
        """The unique training tokens of the fitted runs (the largest U), when the table had them."""
        values = [p.get("U") for p in self.points if p.get("U")]
        return float(max(values)) if values else None

    def identified(self, name: str) -> LawFit | None:
        """The law's entry when it was fitted and identified, else None."""
        fitted = self.laws.get(name)
        return fitted if fitted is not None and fitted.identified else None

    @classmethod
    def from_json(cls, entry, where: str, field_name: str) -> GroupFit:
        if not isinstance(entry, dict):
            raise FitError(where, field_name, "must be a table")
        laws = entry.get("laws")
        if not isinstance(laws, dict):
            raise FitError(where, f"{field_name}.laws", f"must be a table of fitted laws, got {_kind(laws)}")
        backtest = entry.get("backtest")
        typed = {key: entry[key] for key in cls._TYPED if key in entry}
        typed["skipped"] = typed.get("skipped") or {}
        return cls(
            laws={name: LawFit.from_json(law, where, f"{field_name}.laws.{name}") for name, law in laws.items()},
            points=tuple(entry.get("points") or ()),
            backtest=None if backtest is None else Backtest.from_json(backtest, where, f"{field_name}.backtest"),
            **typed,
            extra={k: v for k, v in entry.items() if k not in (*cls._TYPED, "laws", "points", "backtest")},
            order=tuple(entry),
        )

    def to_json(self) -> dict:
        values = {key: getattr(self, key) for key in self._TYPED}
        written = _written(values, self.order, _defaults(GroupFit))
        written["laws"] = {name: law.to_json() for name, law in self.laws.items()}
        if self.points or "points" in self.order:
            written["points"] = list(self.points)
        if self.backtest is not None or "backtest" in self.order:
            written["backtest"] = None if self.backtest is None else self.backtest.to_json()
        return _ordered(written, self.order, self.extra)


@dataclass(frozen=True)
class FitResult:
    """A whole fit: where its rows came from, its conventions and settings, and one `GroupFit` per group."""

    groups: Mapping[str, GroupFit]
    compute_convention: Mapping = field(default_factory=lambda: {"kind": "6ND"})
    source: str | None = None
    by: str | None = None
    query: str | None = None
    columns: Mapping = field(default_factory=dict)
    rows: Mapping = field(default_factory=dict)
    conventions: Mapping = field(default_factory=dict)
    grouping: Mapping = field(default_factory=dict)
    selection: Mapping = field(default_factory=dict)
    settings: Mapping = field(default_factory=dict)
    extra: Mapping = field(default_factory=dict)
    order: tuple[str, ...] = ()

    _TYPED = ("source", "by", "query", "columns", "rows", "conventions", "grouping", "selection", "settings")

    @classmethod
    def from_json(cls, document, where: str) -> FitResult:
        """The typed fit of a fit.json document; FitError naming the first damaged field."""
        if not isinstance(document, dict) or not isinstance(document.get("groups"), dict):
            raise FitError(where, "groups", "not a fit.json written by `scale fit` (no groups table)")
        typed = {key: document[key] for key in cls._TYPED if document.get(key) is not None}
        return cls(
            groups={
                name: GroupFit.from_json(group, where, f"groups.{name}") for name, group in document["groups"].items()
            },
            compute_convention=document.get("compute_convention") or {"kind": "6ND"},
            **typed,
            extra={k: v for k, v in document.items() if k not in (*cls._TYPED, "groups", "compute_convention")},
            order=tuple(document),
        )

    @classmethod
    def of(cls, document) -> FitResult:
        """A FitResult as is, or a fit.json document checked into one (callers holding `fit_all`'s output)."""
        return document if isinstance(document, FitResult) else cls.from_json(document, "fit")

    def group(self, name: str) -> GroupFit:
        if name not in self.groups:
            raise FitError("--group", str(name), f"no such group; have: {', '.join(sorted(self.groups))}")
        return self.groups[name]

    def to_json(self) -> dict:
        values = {key: getattr(self, key) for key in self._TYPED}
        written = {key: value for key, value in values.items() if key in self.order or value}
        written["compute_convention"] = dict(self.compute_convention)
        written["groups"] = {name: group.to_json() for name, group in self.groups.items()}
        return _ordered(written, self.order, self.extra)


def _is_part(key: str, value) -> bool:
    """A fitted part of a law: a table with its own `params` (Kaplan's L_N, L_D, L_C)."""
    return key != "params" and isinstance(value, dict) and "params" in value


def _defaults(cls) -> dict:
    return {
        name: (spec.default_factory() if callable(spec.default_factory) else spec.default)
        for name, spec in cls.__dataclass_fields__.items()
    }


def _check_params(params, field_name: str, where: str) -> None:
    if not isinstance(params, dict) or not params:
        raise FitError(where, field_name, f"must be a table of parameters, got {_kind(params)}")
    for key, value in params.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise FitError(where, f"{field_name}.{key}", f"must be a finite number, got {_shown(value)}")


def _kind(value) -> str:
    return {dict: "a table", list: "a list", str: "text", type(None): "nothing"}.get(type(value), type(value).__name__)


def _shown(value) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, str):
        return f"'{value}'"
    return _kind(value) if isinstance(value, (dict, list)) else str(value)
