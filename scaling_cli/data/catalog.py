"""What `scale data list` and `scale data stats` report: the sources, what is cached, and a data set's facts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from scaling_cli.data import sources
from scaling_cli.data.options import DEFAULT_OPTIONS, DataOptions
from scaling_cli.data.build import MANIFEST, entropy_of_counts
from scaling_cli.data.prepared import PreparedData, open_prepared, prepare, prepared_root

STATS_CHUNK_TOKENS = 1 << 24


def _kind(source: sources.Source) -> str:
    if source.sdist is not None:
        return "download"
    return "synthetic" if source.name == "markov" else "built-in"


def prepared_summaries(cache: Path) -> list[dict]:
    """One line of facts per prepared directory in the cache (unreadable ones are skipped)."""
    root = prepared_root(cache)
    found = []
    for manifest_path in sorted(root.glob(f"*/{MANIFEST}")) if root.exists() else []:
        try:
            manifest = json.loads(manifest_path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        found.append(
            {
                "name": manifest.get("name"),
                "dir": str(manifest_path.parent),
                "source": manifest.get("source"),
                "tokenizer": manifest.get("tokenizer", {}).get("kind"),
                "vocab_size": manifest.get("tokenizer", {}).get("vocab_size"),
                "tokens": sum(manifest.get("tokens", {}).values()),
                "disk_bytes": sum(s["bytes_compressed"] for s in manifest.get("shards", [])),
            }
        )
    return found


def list_sources(cache_dir: Path | None = None) -> list[dict]:
    """Every built-in source with whether its download is cached and which data sets are prepared,
    then any prepared local data sets."""
    cache = Path(cache_dir) if cache_dir is not None else sources.cache_root()
    prepared = prepared_summaries(cache)
    rows = []
    for src in sources.SOURCES.values():
        download = sources.sdist_path(src.sdist, cache) if src.sdist else None
        rows.append(
            {
                "name": src.name,
                "kind": _kind(src),
                "description": src.description,
                "download": str(download) if download else None,
                "cached": download.exists() if download else True,
                "prepared": [p for p in prepared if p["source"] == src.name],
            }
        )
    for p in prepared:
        if p["source"] not in sources.SOURCES:
            rows.append(
                {
                    "name": p["name"],
                    "kind": "local",
                    "description": p["source"],
                    "download": None,
                    "cached": True,
                    "prepared": [p],
                }
            )
    return rows


def _resolve(name_or_path: str, options: DataOptions, prepare_args: dict[str, Any]) -> PreparedData:
    path = Path(name_or_path).expanduser()
    if (path / MANIFEST).exists():
        return open_prepared(path)
    return prepare(name_or_path, options, **prepare_args)


def stats(name_or_path: str, options: DataOptions = DEFAULT_OPTIONS, **prepare_args: Any) -> dict:
    """Sizes, what cleaning removed, compressor baselines and unigram entropy of a data set.

    `name_or_path` is a prepared directory or a source name, prepared first with `options` and the
    keyword arguments of `prepare` (tokenizer, vocab_size, cache_dir, ...); a no-op when it exists.
    Reading the tokens verifies every shard's checksum (when the token files are built, that is on first
    use or after a shard changed).
    """
    data = _resolve(name_or_path, options, prepare_args)
    m = data.manifest
    counts = np.zeros(data.vocab_size, dtype=np.int64)
    for tokens in (data.train_tokens(), data.val_tokens()):
        for start in range(0, len(tokens), STATS_CHUNK_TOKENS):  # in pieces: the maps may exceed memory
            counts += np.bincount(tokens[start : start + STATS_CHUNK_TOKENS], minlength=data.vocab_size)
    unigram = entropy_of_counts(counts)
    return {
        "name": data.name,
        "path": str(data.path),
        "source": m["source"],
        "tokenizer": m["tokenizer"],
        "documents": m["documents"],
        "bytes": m["bytes"],
        "tokens": m["tokens"],
        "bytes_per_token": data.bytes_per_token,
        "disk": {
            "compressed": sum(s["bytes_compressed"] for s in m["shards"]),
            "uncompressed": sum(s["bytes_raw"] for s in m["shards"]),
            "shards": len(m["shards"]),
        },
        "cleaning": m["cleaning"],
        "split": m["split"],
        "baselines": data.baselines,
        "unigram_entropy": {"bits_per_token": unigram, "bits_per_byte": unigram / data.bytes_per_token},
        "entropy_rate_bits": data.entropy_rate_bits,
        "prepare_seconds": m["prepare_seconds"],
    }
