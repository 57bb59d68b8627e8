"""The `[data]` options of a spec: cleaning, splitting and synthetic-source settings, validated strictly."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

from scaling_cli.errors import SpecError

MARKOV_MAX_CONTEXTS = 1 << 22
# Markov symbols are printed as the ASCII bytes from '!' upwards, so they stay text through cleaning and BPE.
MARKOV_MAX_ALPHABET = 94


@dataclass(frozen=True)
class DataOptions:
    """How a corpus is cleaned, cut into documents and split; and the parameters of the `markov` source.

    Cleaning defaults are conservative (only Unicode NFC and newline normalisation) so that a data set
    is the corpus as published unless the spec asks for more.
    """

    normalize: bool = True
    dedup: bool | str = False  # false, true (= "exact") or "near" (exact, then MinHash LSH near-duplicates)
    dedup_min_paragraph_bytes: int = 64
    min_doc_bytes: int = 0
    min_compression_ratio: float | None = None
    max_compression_ratio: float | None = None
    doc_bytes: int = 8192
    val_fraction: float = 0.05
    val_min_bytes: int = 262_144
    markov_order: int = 2
    markov_alphabet: int = 32
    markov_branching: int = 4
    markov_bytes: int = 1_500_000
    markov_seed: int = 0
    near_dedup_threshold: float = 0.8
    text_field: str = "text"
    text_column: str = "text"
    skip_bad_records: bool = False
    bpe_sample_bytes: int = 64 << 20

    def __post_init__(self) -> None:
        for name in _FLOAT_FIELDS:
            value = getattr(self, name)
            if isinstance(value, int) and not isinstance(value, bool):
                object.__setattr__(self, name, float(value))  # so 1 and 1.0 hash to the same data set
        if self.dedup == "exact":
            object.__setattr__(self, "dedup", True)  # one spelling, so both name the same data set
        problems = validation_problems(self)
        if problems:
            field, problem = problems[0]
            raise ValueError(f"{field}: {problem}")

    def to_dict(self) -> dict:
        """A JSON-able dict of every option; options added after the first release appear only when set, so
        that data set names and run ids of existing specs do not change."""
        values = asdict(self)
        return {k: v for k, v in values.items() if k not in LATER_DEFAULTS or v != LATER_DEFAULTS[k]}

    def markov_dict(self) -> dict:
        """Only the options of the markov source."""
        return {k: v for k, v in self.to_dict().items() if k.startswith("markov_")}

    def pipeline_dict(self) -> dict:
        """Only the options that apply to every source (cleaning and splitting)."""
        return {k: v for k, v in self.to_dict().items() if not k.startswith("markov_")}


_BOOL_FIELDS = {"normalize", "skip_bad_records"}
_FLOAT_FIELDS = {"min_compression_ratio", "max_compression_ratio", "val_fraction", "near_dedup_threshold"}
_STR_FIELDS = {"text_field", "text_column"}
DEDUP_MODES = (False, True, "exact", "near")
LATER_DEFAULTS = {
    "near_dedup_threshold": 0.8,
    "text_field": "text",
    "text_column": "text",
    "skip_bad_records": False,
    "bpe_sample_bytes": 64 << 20,
}
_OPTIONAL_FIELDS = {"min_compression_ratio", "max_compression_ratio"}


def _range_problems(opts: DataOptions) -> list[tuple[str, str]]:
    checks = [
        ("dedup_min_paragraph_bytes", opts.dedup_min_paragraph_bytes >= 1, "must be at least 1"),
        ("min_doc_bytes", opts.min_doc_bytes >= 0, "must be 0 or more"),
        ("doc_bytes", opts.doc_bytes >= 256, "must be at least 256"),
        ("val_fraction", 0.0 < opts.val_fraction <= 0.5, "must be in (0, 0.5]"),
        ("val_min_bytes", opts.val_min_bytes >= 0, "must be 0 or more"),
        ("markov_order", 1 <= opts.markov_order <= 8, "must be between 1 and 8"),
        (
            "markov_alphabet",
            2 <= opts.markov_alphabet <= MARKOV_MAX_ALPHABET,
            f"must be between 2 and {MARKOV_MAX_ALPHABET}",
        ),
        (
            "markov_branching",
            1 <= opts.markov_branching <= opts.markov_alphabet,
            "must be between 1 and markov_alphabet",
        ),
        ("markov_bytes", 10_000 <= opts.markov_bytes <= 2_000_000_000, "must be between 10000 and 2e9"),
        ("markov_seed", opts.markov_seed >= 0, "must be 0 or more"),
        ("near_dedup_threshold", 0.0 < opts.near_dedup_threshold < 1.0, "must be in (0, 1)"),
        ("text_field", opts.text_field != "", "must not be empty"),
        ("text_column", opts.text_column != "", "must not be empty"),
        ("bpe_sample_bytes", opts.bpe_sample_bytes >= 1 << 20, "must be at least 1048576"),
    ]
    problems = [(name, msg) for name, ok, msg in checks if not ok]
    sane = opts.markov_order >= 1 and opts.markov_alphabet >= 2
    if sane and opts.markov_alphabet**opts.markov_order > MARKOV_MAX_CONTEXTS:
        problems.append(("markov_order", f"markov_alphabet ** markov_order must be at most {MARKOV_MAX_CONTEXTS}"))
    for name in ("min_compression_ratio", "max_compression_ratio"):
        value = getattr(opts, name)
        if value is not None and not (math.isfinite(value) and value > 0):
            problems.append((name, "must be a positive finite number"))
    lo, hi = opts.min_compression_ratio, opts.max_compression_ratio
    if lo is not None and hi is not None and lo >= hi:
        problems.append(("max_compression_ratio", "must be greater than min_compression_ratio"))
    return problems


def _type_problem(name: str, value: object) -> str | None:
    if name in _OPTIONAL_FIELDS and value is None:
        return None
    if name == "dedup":
        ok = any(value is mode or (isinstance(mode, str) and value == mode) for mode in DEDUP_MODES)
        return None if ok else f'must be true or false, or "exact" or "near", got {value!r}'
    if name in _BOOL_FIELDS:
        return None if isinstance(value, bool) else f"must be true or false, got {value!r}"
    if name in _STR_FIELDS:
        return None if isinstance(value, str) else f"must be a string, got {value!r}"
    if isinstance(value, bool):
        return f"must be a number, got {value!r}"
    if name in _FLOAT_FIELDS:
        return None if isinstance(value, (int, float)) else f"must be a number, got {value!r}"
    return None if isinstance(value, int) else f"must be an integer, got {value!r}"


def validation_problems(opts: DataOptions) -> list[tuple[str, str]]:
    """Every (field, problem) of an options object; empty when it is valid."""
    type_problems = [(f.name, p) for f in fields(opts) if (p := _type_problem(f.name, getattr(opts, f.name)))]
    return type_problems or _range_problems(opts)


DEFAULT_OPTIONS = DataOptions()


def parse_data_options(table: dict, where: str) -> DataOptions:
    """Validate a spec's `[data]` table into DataOptions; the first problem raises SpecError(where, data.<key>)."""
    if not isinstance(table, dict):
        raise SpecError(where, "data", f"must be a table, got {type(table).__name__}")
    known = {f.name for f in fields(DataOptions)}
    for key in table:
        if key not in known:
            raise SpecError(where, f"data.{key}", f"unknown key (known: {', '.join(sorted(known))})")
    values = {
        k: (float(v) if k in _FLOAT_FIELDS and isinstance(v, int) and not isinstance(v, bool) else v)
        for k, v in table.items()
    }
    for key, value in values.items():
        problem = _type_problem(key, value)
        if problem:
            raise SpecError(where, f"data.{key}", problem)
    candidate = object.__new__(DataOptions)
    for f in fields(DataOptions):
        object.__setattr__(candidate, f.name, values.get(f.name, f.default))
    problems = _range_problems(candidate)
    if problems:
        field, problem = problems[0]
        raise SpecError(where, f"data.{field}", problem)
    return DataOptions(**values)
