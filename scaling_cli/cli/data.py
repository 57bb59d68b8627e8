"""`scale data list | prepare | stats`: the data sources, preparing a corpus, and what a prepared set holds."""

from __future__ import annotations

import json

import typer
from rich.table import Table

from scaling_cli.cli.render import out, size_in_bytes
from scaling_cli.errors import SpecError

# Data options that have a flag of their own; the rest are given as --set KEY=VALUE.
DATA_FLAGS = {
    "dedup": "--dedup",
    "min_doc_bytes": "--min-doc-bytes",
    "val_fraction": "--val-fraction",
    "min_compression_ratio": "--min-compression-ratio",
    "max_compression_ratio": "--max-compression-ratio",
    "text_field": "--text-field",
    "text_column": "--text-column",
    "skip_bad_records": "--skip-bad-records",
}
SET_HELP = "A [data] option as KEY=VALUE (repeatable), e.g. --set markov_order=3 --set doc_bytes=4096."
TOKENIZER_HELP = "Tokenizer: bytes (vocabulary 256) or bpe (needs --vocab-size)."


def parse_set(items: list[str] | None) -> dict:
    """--set KEY=VALUE pairs as a [data] table; values are read as TOML (3, 0.1, true), else kept as text."""
    import tomllib

    table = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise SpecError("--set", item, "expected KEY=VALUE, e.g. --set markov_order=3")
        try:
            table[key.strip()] = tomllib.loads(f"v = {raw.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            table[key.strip()] = raw.strip()  # a bare word; the option's own type check reports it
    return table


def data_options(sets: list[str] | None, **flags):
    """DataOptions from --set KEY=VALUE pairs and the named flags (flags win); errors name the option."""
    from scaling_cli.data import parse_data_options

    table = {**parse_set(sets), **{k: v for k, v in flags.items() if v is not None}}
    try:
        return parse_data_options(table, where="--set")
    except SpecError as exc:
        key = exc.field.removeprefix("data.")
        where = DATA_FLAGS[key] if key in flags and flags[key] is not None else "--set"
        raise SpecError(where, exc.field, exc.problem) from None


def data_list(json_out: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> None:
    """List the data sources, whether their download is cached, and the prepared data sets.

    \b
    Example:
      scale data list
    """
    from rich.table import Column

    from scaling_cli.data import list_sources
    from scaling_cli.data.sources import cache_root

    rows = list_sources()
    if json_out:
        out.print_json(json.dumps(rows))
        return
    table = Table("kind", "cached", "prepared", "description")
    table.columns.insert(0, Column("name", no_wrap=True))
    for row in rows:
        sets = row["prepared"]
        prepared = f"{len(sets)}, {size_in_bytes(sum(p['disk_bytes'] for p in sets))}" if sets else "-"
        cached = "yes" if row["cached"] else "no"
        table.add_row(row["name"], row["kind"], cached, prepared, row["description"])
    out.print(table)
    out.print(f"cache: {cache_root()} (set SCALE_CACHE to move it)")


def data_prepare(
    name: str = typer.Argument(
        ...,
        help="Source name (shakespeare, shakespeare-folio, kjv, pystdlib, markov) or a local file, directory or glob.",
    ),
    tokenizer: str = typer.Option("bytes", "--tokenizer", help=TOKENIZER_HELP),
    vocab_size: int | None = typer.Option(None, "--vocab-size", help="BPE vocabulary size."),
    dedup: bool | None = typer.Option(
        None, "--dedup/--no-dedup", help="Remove exact duplicate documents and paragraphs."
    ),
    min_doc_bytes: int | None = typer.Option(None, "--min-doc-bytes", help="Drop shorter documents."),
    min_ratio: float | None = typer.Option(
        None, "--min-compression-ratio", help="Drop documents that compress worse (random-looking)."
    ),
    max_ratio: float | None = typer.Option(
        None, "--max-compression-ratio", help="Drop documents that compress better (repetitive)."
    ),
    val_fraction: float | None = typer.Option(None, "--val-fraction", help="Share of text for validation."),
    near_dedup: bool = typer.Option(
        False, "--near-dedup", help='Also remove near duplicates (MinHash LSH, Jaccard >= 0.8): dedup = "near".'
    ),
    text_field: str | None = typer.Option(None, "--text-field", help="JSON lines: the field holding the text."),
    text_column: str | None = typer.Option(None, "--text-column", help="Parquet: the column holding the text."),
    skip_bad_records: bool | None = typer.Option(
        None, "--skip-bad-records", help="Skip and count malformed JSON lines and null parquet values."
    ),
    max_memory: str | None = typer.Option(
        None, "--max-memory", help="Memory budget of the build, e.g. 512M or 2G (default 1G or SCALE_DATA_MAX_MEMORY)."
    ),
    sets: list[str] | None = typer.Option(None, "--set", help=SET_HELP),  # noqa: B008
    json_out: bool = typer.Option(False, "--json", help="Print the manifest as JSON."),
) -> None:
    """Fetch, clean, tokenise and shard a corpus (a no-op when it is prepared already).

    Local corpora: .txt (or any text), .jsonl with a text field, .parquet with a text column, each
    optionally .gz/.zst/.xz/.bz2, or a directory or glob mixing them. Memory stays within --max-memory
    whatever the corpus size.

    \b
    Examples:
      scale data prepare shakespeare
      scale data prepare kjv --dedup --tokenizer bpe --vocab-size 2048
      scale data prepare markov --set markov_order=3 --set markov_bytes=4000000
      scale data prepare ./my_texts/ --min-doc-bytes 200
      scale data prepare 'notes/**/*.md' --dedup   (quote globs)
      scale data prepare dump.jsonl.zst --text-field content --near-dedup --max-memory 2G
    """
    import time

    from scaling_cli.data import prepare

    opts = data_options(
        sets,
        dedup="near" if near_dedup else dedup,
        min_doc_bytes=min_doc_bytes,
        min_compression_ratio=min_ratio,
        max_compression_ratio=max_ratio,
        val_fraction=val_fraction,
        text_field=text_field,
        text_column=text_column,
        skip_bad_records=skip_bad_records,
    )
    budget = _memory_budget(max_memory)
    started = time.perf_counter()
    data = prepare(name, opts, tokenizer=tokenizer, vocab_size=vocab_size, max_memory=budget)
    if json_out:
        out.print_json(json.dumps({"path": str(data.path), **data.manifest}))
        return
    m = data.manifest
    out.print(f"{data.name}: {data.path}")
    out.print(
        f"  documents {m['documents']['after_cleaning']:,} (train {m['documents']['train']:,}, "
        f"val {m['documents']['val']:,});  text {size_in_bytes(m['bytes']['clean'])} of "
        f"{size_in_bytes(m['bytes']['raw'])} raw;  tokens train {m['tokens']['train']:,}, val {m['tokens']['val']:,} "
        f"({data.bytes_per_token:.3f} bytes/token, vocab {data.vocab_size})"
    )
    out.print(f"  baselines, bits/byte of val text: {_baseline_line(data.baselines)}")
    removed = _removed_line(m)
    if removed:
        out.print(f"  removed: {removed}")
    if m["source_detail"].get("bad_records_skipped"):
        out.print(
            f"  bad records skipped: {m['source_detail']['bad_records_skipped']:,} "
            f"(first: {m['source_detail']['first_bad_record']})"
        )
    if data.entropy_rate_bits is not None:
        out.print(f"  entropy rate of the chain: {data.entropy_rate_bits:.4f} bits/byte")
    out.print(f"  ready in {time.perf_counter() - started:.2f} s (built in {m['prepare_seconds']:.2f} s)")


def data_stats(
    name: str = typer.Argument(..., help="Source name, local path, or a prepared data set's directory."),
    tokenizer: str = typer.Option("bytes", "--tokenizer", help=TOKENIZER_HELP),
    vocab_size: int | None = typer.Option(None, "--vocab-size", help="BPE vocabulary size."),
    dedup: bool | None = typer.Option(None, "--dedup/--no-dedup", help="Stats of the deduplicated set."),
    sets: list[str] | None = typer.Option(None, "--set", help=SET_HELP),  # noqa: B008
    json_out: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
) -> None:
    """Sizes, what cleaning removed, compressor baselines and unigram entropy (prepares first if needed).

    \b
    Examples:
      scale data stats shakespeare
      scale data stats kjv --dedup
      scale data stats ~/.cache/scale/prepared/markov-d39728908bb9 --json
    """
    from scaling_cli.data import stats

    opts = data_options(sets, dedup=dedup)
    info = stats(name, opts, tokenizer=tokenizer, vocab_size=vocab_size)
    if json_out:
        out.print_json(json.dumps(info))
        return
    out.print(f"{info['name']}: {info['path']}")
    sizes = Table("", "documents", "text bytes", "tokens", title="sizes")
    for split in ("train", "val"):
        sizes.add_row(split, f"{info['documents'][split]:,}", f"{info['bytes'][split]:,}", f"{info['tokens'][split]:,}")
    sizes.add_row("raw source", f"{info['documents']['files']:,} files", f"{info['bytes']['raw']:,}", "")
    out.print(sizes)
    disk = info["disk"]
    ratio = disk["uncompressed"] / max(disk["compressed"], 1)
    out.print(
        f"on disk: {size_in_bytes(disk['compressed'])} in {disk['shards']} lz4 shards "
        f"({size_in_bytes(disk['uncompressed'])} uncompressed, ratio {ratio:.2f}); "
        f"{info['bytes_per_token']:.3f} bytes/token, tokenizer {info['tokenizer']['kind']} "
        f"(vocab {info['tokenizer']['vocab_size']})"
    )
    cleaning = Table("step", "removed / done", title="cleaning")
    for row in _cleaning_rows(info["cleaning"]):
        cleaning.add_row(*row)
    out.print(cleaning)
    base = Table("compressor", "bits/byte (val text)", title="compressor baselines")
    for key, value in info["baselines"].items():
        base.add_row(key, f"{value:.4f}")
    out.print(base)
    uni = info["unigram_entropy"]
    out.print(f"unigram entropy: {uni['bits_per_token']:.4f} bits/token = {uni['bits_per_byte']:.4f} bits/byte")
    if info["entropy_rate_bits"] is not None:
        out.print(f"markov entropy rate: {info['entropy_rate_bits']:.4f} bits/byte (the irreducible loss)")


def _memory_budget(text: str | None) -> int | None:
    from scaling_cli.data.build import parse_size

    if text is None:
        return None
    try:
        return parse_size(text)
    except ValueError as exc:
        raise SpecError("--max-memory", "max_memory", str(exc)) from None


def _removed_line(manifest: dict) -> str:
    """What each enabled dedup or filter step removed, e.g. 'dedup_documents 12 docs, dedup_near 3 docs'."""
    parts = []
    for step in manifest.get("cleaning", []):
        if step["enabled"] and step.get("bytes_removed") is not None and step["step"] not in ("normalize", "cut"):
            count, unit = step.get("paragraphs_removed"), "paragraphs"
            if count is None:
                count, unit = step.get("docs_removed", 0), "docs"
            parts.append(f"{step['step']} {count:,} {unit} ({size_in_bytes(step['bytes_removed'])})")
    return ", ".join(parts)


def _baseline_line(baselines: dict) -> str:
    return "  ".join(f"{k} {v:.3f}" for k, v in baselines.items())


def _cleaning_rows(steps: list[dict]) -> list[tuple[str, str]]:
    rows = []
    for step in steps:
        if not step["enabled"]:
            rows.append((step["step"], "off"))
            continue
        facts = ", ".join(
            f"{k.replace('_', ' ')} {v:,}" if isinstance(v, int) else f"{k.replace('_', ' ')} {v}"
            for k, v in step.items()
            if k not in ("step", "enabled")
        )
        rows.append((step["step"], facts))
    return rows
