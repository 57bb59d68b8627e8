"""The `[data]` options of a spec: cleaning, splitting and synthetic-source settings, validated strictly."""

from __future__ import annotations

import dataclasses
import re
import tomllib
from dataclasses import asdict, dataclass, fields

from scaling_cli.errors import DataError, SpecError
from scaling_cli.validate import boolean, check_fields, integer, number, one_of, optional, setting, text, unknown_keys

MARKOV_MAX_CONTEXTS = 1 << 22
# Markov symbols are printed as the ASCII bytes from '!' upwards, so they stay text through cleaning and BPE.
MARKOV_MAX_ALPHABET = 94
MARKOV_KINDS = ("sparse", "backoff")
# A back-off chain holds a dense table of alphabet ** (order + 1) probabilities.
MARKOV_MAX_BACKOFF_ENTRIES = 1 << 24
_QUERY = re.compile(r"^[a-z_]+=[^&=]+(&[a-z_]+=[^&=]+)*$")


DEDUP_MODES = (False, True, "exact", "near")


def _dedup_mode(value: object) -> bool | str:
    if any(value is mode or (isinstance(mode, str) and value == mode) for mode in DEDUP_MODES):
        return value
    raise ValueError(f'must be true or false, or "exact" or "near", got {value!r}')


_dedup_mode.kind = "boolean or string"
_dedup_mode.rule = "false, true, exact or near"


@dataclass(frozen=True)
class DataOptions:
    """How a corpus is cleaned, cut into documents and split; and the parameters of the `markov` source.

    Cleaning defaults are conservative (only Unicode NFC and newline normalisation) so that a data set
    is the corpus as published unless the spec asks for more.
    """

    normalize: bool = setting(True, boolean, "Unicode NFC and newline normalisation")
    dedup: bool | str = setting(
        False, _dedup_mode, 'false, true (= "exact") or "near" (exact, then MinHash LSH near-duplicates)'
    )
    dedup_min_paragraph_bytes: int = setting(64, integer(1), "exact dedup: shorter paragraphs are never removed")
    min_doc_bytes: int = setting(0, integer(0), "drop documents shorter than this after cleaning")
    min_compression_ratio: float | None = setting(
        None, optional(number(0.0, low_open=True)), "drop documents that compress less than this (gzip ratio)"
    )
    max_compression_ratio: float | None = setting(
        None, optional(number(0.0, low_open=True)), "drop documents that compress more than this (repetitive text)"
    )
    doc_bytes: int = setting(8192, integer(256), "a corpus without document breaks is cut into documents this long")
    val_fraction: float = setting(0.05, number(0.0, 0.5, low_open=True), "share of documents held out for validation")
    val_min_bytes: int = setting(262_144, integer(0), "validation text is at least this many bytes")
    markov_order: int = setting(2, integer(1, 8), "markov source: context length of the chain")
    markov_alphabet: int = setting(32, integer(2, MARKOV_MAX_ALPHABET), "markov source: number of symbols")
    markov_branching: int = setting(4, integer(1), "markov source (sparse): successors of each context")
    markov_bytes: int = setting(1_500_000, integer(10_000, 2_000_000_000), "markov source: bytes generated")
    markov_seed: int = setting(0, integer(0), "markov source: seed of the chain and of its sample")
    markov_kind: str = setting(
        "sparse", one_of(MARKOV_KINDS), "markov source: sparse, or backoff (a hierarchical Dirichlet n-gram)"
    )
    markov_concentration: float = setting(
        8.0, number(0.0, low_open=True), "markov backoff: how close each order's table stays to the one below"
    )
    near_dedup_threshold: float = setting(
        0.8, number(0.0, 1.0, low_open=True, high_open=True), 'dedup = "near": Jaccard similarity that counts'
    )
    text_field: str = setting("text", text, "JSON lines sources: the field that holds the text")
    text_column: str = setting("text", text, "parquet and CSV sources: the column that holds the text")
    skip_bad_records: bool = setting(False, boolean, "skip unreadable records instead of stopping")
    bpe_sample_bytes: int = setting(64 << 20, integer(1 << 20), "bpe: bytes of training text the tokenizer learns from")
    # Quality and repetition of the training split only (see data/quality.py); validation text stays as cleaned.
    # A data set name can set these, as any other key (split_variant).
    max_train_bytes: int | None = setting(
        None, optional(integer(1)), "cap on unique training bytes (U as a sweep axis, via dataset names)"
    )
    noise_fraction: float = setting(0.0, number(0.0, 1.0), "share of training documents whose characters are shuffled")
    duplicate_fraction: float = setting(
        0.0, number(0.0, 1.0), "share of training documents repeated duplicate_copies times in all"
    )
    duplicate_copies: int = setting(2, integer(2, 1000), "copies of each duplicated training document")
    quality_seed: int = setting(0, integer(0), "seed of the noise and duplicate choices")

    def __post_init__(self) -> None:
        if self.dedup == "exact":
            object.__setattr__(self, "dedup", True)  # one spelling, so both name the same data set
        check_fields(self)  # numbers become floats, so 1 and 1.0 name the same data set
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
