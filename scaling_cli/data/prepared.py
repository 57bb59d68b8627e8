"""Prepared data sets: run source → clean → split → tokenise → shards + manifest once, then reopen.

A prepared data set is the directory `<cache>/prepared/<label>-<hash>` where the hash covers the
source's identity (built-in name and sdist, or the local files' paths, sizes and times), the cleaning
and split options, and the tokenizer, so preparing again with the same inputs is a no-op. It is built
in a temporary directory and renamed into place under a file lock, so concurrent workers that ask for
the same data set build it once and never see a partial directory.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from filelock import FileLock

from scaling_cli.data import baselines, clean, shards, sources, split
from scaling_cli.data.options import DEFAULT_OPTIONS, DataOptions
from scaling_cli.data.tokenizer import BPE_FILE, BpeTokenizer, ByteTokenizer, check_tokenizer
from scaling_cli.errors import DataError

FORMAT_VERSION = 1
MANIFEST = "manifest.json"


def prepared_root(cache: Path) -> Path:
    return cache / "prepared"


def dataset_key(source: str, opts: DataOptions, tokenizer: str, vocab_size: int) -> dict:
    """Everything that changes a prepared data set's content."""
    return {
        "format": FORMAT_VERSION,
        "source": sources.source_identity(source, opts),
        "options": opts.pipeline_dict(),
        "tokenizer": tokenizer,
        "vocab_size": vocab_size,
    }


def dataset_dirname(source: str, opts: DataOptions, tokenizer: str, vocab_size: int) -> str:
    """`<label>-<12 hex digits of the key's hash>` (plus the tokenizer when it is not bytes)."""
    key = json.dumps(dataset_key(source, opts, tokenizer, vocab_size), sort_keys=True)
    builtin, _ = sources.resolve(source)
    label = builtin.name if builtin else sources.local_label(source)
    suffix = "" if tokenizer == "bytes" else f"-bpe{vocab_size}"
    return f"{label}{suffix}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


@dataclass
class PreparedData:
    """A prepared data set on disk; token arrays are read and checksum-verified on first use."""

    path: Path
    manifest: dict
    _arrays: dict = field(default_factory=dict, repr=False)

    @property
    def name(self) -> str:
        return self.manifest["name"]

    @property
    def vocab_size(self) -> int:
        return int(self.manifest["tokenizer"]["vocab_size"])

    @property
    def bytes_per_token(self) -> float:
        return float(self.manifest["bytes_per_token"])

    @property
    def baselines(self) -> dict[str, float]:
        return dict(self.manifest["baselines"]["bits_per_byte"])

    @property
    def entropy_rate_bits(self) -> float | None:
        value = self.manifest.get("markov", {}).get("entropy_rate_bits")
        return None if value is None else float(value)

    def _split(self, name: str) -> np.ndarray:
        if name not in self._arrays:
            self._arrays[name] = shards.read_split(self.path, self.manifest["shards"], name, self.vocab_size)
        return self._arrays[name]

    def train_tokens(self) -> np.ndarray:
        return self._split("train")

    def val_tokens(self) -> np.ndarray:
        return self._split("val")

    def tokenizer(self) -> ByteTokenizer | BpeTokenizer:
        """The tokenizer that made the shards (to decode tokens back to text)."""
        if self.manifest["tokenizer"]["kind"] == "bytes":
            return ByteTokenizer()
        return BpeTokenizer.load(self.path / BPE_FILE)


def open_prepared(path: Path | str) -> PreparedData:
    """Reopen a prepared directory; DataError when it has no readable manifest."""
    path = Path(path)
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except FileNotFoundError:
        raise DataError(str(path), MANIFEST, "not a prepared data set (no manifest.json)") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(str(path / MANIFEST), "json", f"unreadable ({exc})") from None
    if manifest.get("format") != FORMAT_VERSION:
        raise DataError(
            str(path / MANIFEST),
            "format",
            f"version {manifest.get('format')!r}, expected {FORMAT_VERSION}; prepare the data set again",
        )
    return PreparedData(path, manifest)


def prepare(
    source: str,
    options: DataOptions = DEFAULT_OPTIONS,
    tokenizer: str = "bytes",
    vocab_size: int | None = None,
    cache_dir: Path | None = None,
) -> PreparedData:
    """The prepared data set for these inputs, building it if it does not exist yet (safe to race)."""
    vocab = check_tokenizer(tokenizer, vocab_size)
    cache = Path(cache_dir) if cache_dir is not None else sources.cache_root()
    root = prepared_root(cache)
    final = root / dataset_dirname(source, options, tokenizer, vocab)
    if (final / MANIFEST).exists():
        return open_prepared(final)
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(final) + ".lock"):
        if (final / MANIFEST).exists():
            return open_prepared(final)
        if final.exists():  # a directory without a manifest was not made by prepare: rebuild it
            shutil.rmtree(final)
        for stale in root.glob(f".{final.name}.*"):  # staging left by a killed build; we hold the lock
            shutil.rmtree(stale, ignore_errors=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=root))
        try:
            staging.chmod(0o755)  # mkdtemp makes it private; a shared cache should stay readable
            _build(source, options, tokenizer, vocab, cache, staging, final.name)
            os.rename(staging, final)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
    return open_prepared(final)


def unigram_entropy_bits(tokens: np.ndarray, vocab: int) -> float:
    """Entropy of the token frequencies in bits per token: the loss of a model that ignores context."""
    counts = np.bincount(tokens, minlength=vocab).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum()) if len(p) else 0.0


def _tokenize(kind: str, vocab: int, train_texts: list[str], val_texts: list[str], folder: Path):
    """(tokenizer, train tokens, val tokens); BPE learns its merges from the training text only."""
    tok = ByteTokenizer() if kind == "bytes" else BpeTokenizer.train(train_texts, vocab)
    if kind == "bpe":
        tok.save(folder / BPE_FILE)
    return tok, tok.encode_many(train_texts), tok.encode_many(val_texts)


def _build(source: str, opts: DataOptions, kind: str, vocab: int, cache: Path, folder: Path, dirname: str) -> None:
    started = time.perf_counter()
    raw = sources.load_raw(source, opts, cache)
    docs, report = clean.clean_corpus(raw.units, opts)
    train_docs, val_docs = split.split_documents(docs, opts)
    if not train_docs or not val_docs:
        raise DataError(source, "data", f"{len(docs)} document(s) left after cleaning; need at least 2 to split")
    train_texts, val_texts = [d.text for d in train_docs], [d.text for d in val_docs]
    tok, train_tokens, val_tokens = _tokenize(kind, vocab, train_texts, val_texts, folder)
    val_bytes = "".join(val_texts).encode("utf-8")
    train_bytes = sum(d.n_bytes for d in train_docs)
    text_digest = hashlib.sha256()
    for d in docs:
        text_digest.update(d.text.encode("utf-8"))
    shard_entries = shards.write_shards(train_tokens, folder, "train", tok.vocab_size) + shards.write_shards(
        val_tokens, folder, "val", tok.vocab_size
    )
    raw_bytes = sum(len(t.encode("utf-8")) for _, t in raw.units)
    manifest = {
        "format": FORMAT_VERSION,
        "name": raw.label,
        "dirname": dirname,
        "source": source,
        "source_detail": raw.detail,
        "options": opts.to_dict(),
        "tokenizer": {
            "kind": kind,
            "vocab_size": int(tok.vocab_size),
            "requested_vocab_size": vocab,
            "file": BPE_FILE if kind == "bpe" else None,
        },
        "text_sha256": text_digest.hexdigest(),
        "documents": {
            "files": len(raw.units),
            "after_cleaning": len(docs),
            "train": len(train_docs),
            "val": len(val_docs),
        },
        "bytes": {"raw": raw_bytes, "clean": train_bytes + len(val_bytes), "train": train_bytes, "val": len(val_bytes)},
        "tokens": {"train": len(train_tokens), "val": len(val_tokens)},
        "bytes_per_token": len(val_bytes) / max(len(val_tokens), 1),
        "split": {
            "method": split.describe(opts),
            "val_target_bytes": split.val_target_bytes(train_bytes + len(val_bytes), opts),
        },
        "cleaning": report.steps,
        "baselines": {
            "text": "validation",
            "bits_per_byte": baselines.bits_per_byte(val_bytes),
            "settings": baselines.describe(),
        },
        "unigram_entropy_bits_per_token": unigram_entropy_bits(train_tokens, tok.vocab_size),
        "shards": shard_entries,
        "prepare_seconds": round(time.perf_counter() - started, 3),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if source == "markov":
        manifest["markov"] = raw.detail
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
