"""The `[data]` options of a spec: cleaning, splitting and synthetic-source settings, validated strictly."""

from __future__ import annotations

import dataclasses
import re
import tomllib
from dataclasses import asdict, dataclass, fields

from scaling_cli.errors import DataError, SpecError
from scaling_cli.validate import boolean, integer, number, one_of, optional, text, unknown_keys

MARKOV_MAX_CONTEXTS = 1 << 22
# Markov symbols are printed as the ASCII bytes from '!' upwards, so they stay text through cleaning and BPE.
MARKOV_MAX_ALPHABET = 94
MARKOV_KINDS = ("sparse", "backoff")
# A back-off chain holds a dense table of alphabet ** (order + 1) probabilities.
MARKOV_MAX_BACKOFF_ENTRIES = 1 << 24
_QUERY = re.compile(r"^[a-z_]+=[^&=]+(&[a-z_]+=[^&=]+)*$")


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
    markov_kind: str = "sparse"  # or "backoff": a hierarchical Dirichlet n-gram (see data/markov.py)
    markov_concentration: float = 8.0  # backoff only: how close each order's table stays to the one below
    near_dedup_threshold: float = 0.8
    text_field: str = "text"
    text_column: str = "text"
    skip_bad_records: bool = False
    bpe_sample_bytes: int = 64 << 20
    # Quality and repetition of the training split only (see data/quality.py); validation text stays as cleaned.
    # A data set name can set these, as any other key (split_variant).
    max_train_bytes: int | None = None  # cap on unique training bytes: U as a sweep axis
    noise_fraction: float = 0.0  # share of training documents whose characters are shuffled
    duplicate_fraction: float = 0.0  # share of training documents repeated duplicate_copies times in all
    duplicate_copies: int = 2
    quality_seed: int = 0

    def __post_init__(self) -> None:
        if self.dedup == "exact":
            object.__setattr__(self, "dedup", True)  # one spelling, so both name the same data set
        for name, check in _CHECKS.items():
            try:
                value = check(getattr(self, name))
            except ValueError as exc:
                raise ValueError(f"{name}: {exc}") from None
            object.__setattr__(self, name, value)  # numbers become floats, so 1 and 1.0 name the same data set
        problems = _cross_field_problems(self)
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


DEDUP_MODES = (False, True, "exact", "near")
LATER_DEFAULTS = {
    "near_dedup_threshold": 0.8,
    "text_field": "text",
    "text_column": "text",
    "skip_bad_records": False,
    "bpe_sample_bytes": 64 << 20,
    "markov_kind": "sparse",
    "markov_concentration": 8.0,
    "max_train_bytes": None,
    "noise_fraction": 0.0,
    "duplicate_fraction": 0.0,
    "duplicate_copies": 2,
    "quality_seed": 0,
}


def _dedup_mode(value: object) -> bool | str:
    if any(value is mode or (isinstance(mode, str) and value == mode) for mode in DEDUP_MODES):
        return value
    raise ValueError(f'must be true or false, or "exact" or "near", got {value!r}')


_CHECKS = {
    "normalize": boolean,
    "dedup": _dedup_mode,
    "dedup_min_paragraph_bytes": integer(1),
    "min_doc_bytes": integer(0),
    "min_compression_ratio": optional(number(0.0, low_open=True)),
    "max_compression_ratio": optional(number(0.0, low_open=True)),
    "doc_bytes": integer(256),
    "val_fraction": number(0.0, 0.5, low_open=True),
    "val_min_bytes": integer(0),
    "markov_order": integer(1, 8),
    "markov_alphabet": integer(2, MARKOV_MAX_ALPHABET),
    "markov_branching": integer(1),
    "markov_bytes": integer(10_000, 2_000_000_000),
    "markov_seed": integer(0),
    "markov_kind": one_of(MARKOV_KINDS),
    "markov_concentration": number(0.0, low_open=True),
    "near_dedup_threshold": number(0.0, 1.0, low_open=True, high_open=True),
    "text_field": text,
    "text_column": text,
    "skip_bad_records": boolean,
    "bpe_sample_bytes": integer(1 << 20),
    "max_train_bytes": optional(integer(1)),
    "noise_fraction": number(0.0, 1.0),
    "duplicate_fraction": number(0.0, 1.0),
    "duplicate_copies": integer(2, 1000),
    "quality_seed": integer(0),
}


def _cross_field_problems(opts: DataOptions) -> list[tuple[str, str]]:
    """Problems of options that are each valid alone but not together."""
    problems = []
    if opts.markov_branching > opts.markov_alphabet:
        problems.append(("markov_branching", "must be between 1 and markov_alphabet"))
    if opts.markov_alphabet**opts.markov_order > MARKOV_MAX_CONTEXTS:
        problems.append(("markov_order", f"markov_alphabet ** markov_order must be at most {MARKOV_MAX_CONTEXTS}"))
    dense = opts.markov_kind == "backoff"
    if dense and opts.markov_alphabet ** (opts.markov_order + 1) > MARKOV_MAX_BACKOFF_ENTRIES:
        limit = MARKOV_MAX_BACKOFF_ENTRIES
        problems.append(("markov_order", f"backoff: markov_alphabet ** (markov_order + 1) must be at most {limit}"))
    lo, hi = opts.min_compression_ratio, opts.max_compression_ratio
    if lo is not None and hi is not None and lo >= hi:
        problems.append(("max_compression_ratio", "must be greater than min_compression_ratio"))
    return problems


DEFAULT_OPTIONS = DataOptions()


def parse_data_options(table: dict, where: str) -> DataOptions:
    """Validate a spec's `[data]` table into DataOptions; the first problem raises SpecError(where, data.<key>)."""
    if not isinstance(table, dict):
        raise SpecError(where, "data", f"must be a table, got {type(table).__name__}")
    for key, problem in unknown_keys(table, [f.name for f in fields(DataOptions)]):
        raise SpecError(where, f"data.{key}", problem)
    try:
        return DataOptions(**table)
    except ValueError as exc:
        field, _, problem = str(exc).partition(": ")
        raise SpecError(where, f"data.{field}", problem) from None


def split_variant(source: str, opts: DataOptions) -> tuple[str, DataOptions]:
    """`source?key=value&...` as (source, opts with those keys set); any other name as it is."""
    base, mark, query = source.rpartition("?")
    if not mark or not base or not _QUERY.match(query):
        return source, opts
    known = {f.name for f in fields(DataOptions)}
    changes = {}
    for pair in query.split("&"):
        key, _, value = pair.partition("=")
        if key not in known:
            raise DataError(source, f"dataset.{key}", "not a [data] option")
        changes[key] = _option_value(value)
    try:
        return base, dataclasses.replace(opts, **changes)
    except ValueError as exc:
        key, _, problem = str(exc).partition(": ")
        raise DataError(source, f"dataset.{key}", problem) from None


def _option_value(value: str):
    try:
        return tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        return value  # a bare word, such as dedup=near
