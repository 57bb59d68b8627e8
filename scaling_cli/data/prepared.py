"""Prepared data sets: run source → clean → split → tokenise → shards + manifest once, then reopen.

A prepared data set is the directory `<cache>/prepared/<label>-<hash>` where the hash covers the
source's identity (built-in name and sdist, or the local files' content fingerprint), the cleaning
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
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from filelock import FileLock

from scaling_cli.data import sources, tokenfile
from scaling_cli.data.build import FORMAT_VERSION, MANIFEST, build_dataset, default_budget
from scaling_cli.data.options import DEFAULT_OPTIONS, DataOptions
from scaling_cli.data.options import split_variant
from scaling_cli.data import pretrained
from scaling_cli.data.tokenizer import BPE_FILE, BpeTokenizer, ByteTokenizer, check_tokenizer, is_pretrained
from scaling_cli.errors import DataError


def prepared_root(cache: Path) -> Path:
    return cache / "prepared"


def dataset_key(source: str, opts: DataOptions, tokenizer: str, vocab_size: int) -> dict:
    """Everything that changes a prepared data set's content."""
    source, opts = split_variant(source, opts)
    return {
        "format": FORMAT_VERSION,
        "source": sources.source_identity(source, opts),
        "options": opts.pipeline_dict(),
        "tokenizer": pretrained.identity(tokenizer) if is_pretrained(tokenizer) else tokenizer,
        "vocab_size": vocab_size,
    }


def dataset_dirname(source: str, opts: DataOptions, tokenizer: str, vocab_size: int) -> str:
    """`<label>-<12 hex digits of the key's hash>` (plus the tokenizer when it is not bytes)."""
    key = json.dumps(dataset_key(source, opts, tokenizer, vocab_size), sort_keys=True)
    source, opts = split_variant(source, opts)
    builtin, _ = sources.resolve(source)
    label = builtin.name if builtin else sources.local_label(source)
    suffix = "" if tokenizer == "bytes" else f"-{tokenizer.split(':')[0]}{vocab_size}"
    return f"{label}{suffix}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


@dataclass
class PreparedData:
    """A prepared data set on disk. `train_tokens()` and `val_tokens()` are read-only memory maps of the
    token files, built from the checksum-verified shards on first use (see `tokenfile`)."""

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
            self._arrays[name] = tokenfile.open_tokens(self.path, self.manifest["shards"], name, self.vocab_size)
        return self._arrays[name]

    def train_tokens(self) -> np.ndarray:
        return self._split("train")

    def val_tokens(self) -> np.ndarray:
        return self._split("val")

    def tokenizer(self) -> ByteTokenizer | BpeTokenizer | pretrained.PretrainedTokenizer:
        """The tokenizer that made the shards (to decode tokens back to text)."""
        kind = self.manifest["tokenizer"]["kind"]
        if kind == "bytes":
            return ByteTokenizer()
        if kind in ("hf", "tiktoken"):  # its file was copied in when the data set was built
            file = self.path / self.manifest["tokenizer"]["file"]
            return pretrained.PretrainedTokenizer(f"{kind}:{file}", file)
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
    *,
    max_memory: int | None = None,
    chunk_bytes: int | None = None,
) -> PreparedData:
    """The prepared data set for these inputs, building it if it does not exist yet (safe to race).

    `max_memory` (bytes; default `SCALE_DATA_MAX_MEMORY` or 1 GiB) sizes the build's buffers; `chunk_bytes`
    overrides the piece size it implies (tests use it to show the result does not depend on it).
    """
    source, options = split_variant(source, options)
    vocab = check_tokenizer(tokenizer, vocab_size)
    budget = default_budget(max_memory, chunk_bytes)
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
            build_dataset(source, options, tokenizer, vocab, cache, staging, final.name, budget)
            os.rename(staging, final)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
    return open_prepared(final)
