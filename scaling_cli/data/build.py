"""Building a prepared data set in two streaming passes, with memory bounded by a budget.

Pass 1 reads the source unit by unit, cleans it into documents and appends each document's UTF-8 bytes to
a spool file in the staging directory, keeping only 16 bytes per document in memory (its sha256 key and
size) and a running sha256 of all the text. The validation split is then chosen from the keys alone.
Pass 2 reads the spool back in order, tokenises (BPE first learns its merges from a sample of the
training documents through the library's iterator API) and streams the tokens into lz4 shards, which
are compressed on a thread pool. Shard contents depend only on the token stream, so the same input gives
the same shards and checksums whatever the piece size.

The memory budget sizes the pieces read and encoded at a time; what grows with the corpus is 16 bytes per
document, plus the deduplication sets when deduplication is on (see `clean`).
"""

from __future__ import annotations

import array
import hashlib
import json
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from scaling_cli.data import baselines, clean, quality, sources, split
from scaling_cli.data.cutting import MAX_BLOCK_CHARS
from scaling_cli.data.options import DataOptions
from scaling_cli.data.shards import ShardWriter
from scaling_cli.data import pretrained
from scaling_cli.data.pretrained import PretrainedTokenizer
from scaling_cli.data.tokenizer import BPE_FILE, BpeTokenizer, ByteTokenizer, is_pretrained
from scaling_cli.errors import DataError

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SPOOL = ".documents.spool"
DEFAULT_MAX_MEMORY = 1 << 30
MIN_MAX_MEMORY = 128 << 20
# The compressor baselines read at most this much validation text: lzma preset 9 runs at about 1 MB/s,
# and a few MB already pin bits per byte to the third decimal. Every built-in corpus's validation text
# is smaller, so their baselines are those of the whole validation text.
BASELINE_MAX_BYTES = 4 << 20
SHARD_THREADS = 2


@dataclass(frozen=True)
class Budget:
    """How much memory a build may use, and the piece size that follows from it."""

    max_memory: int
    chunk_bytes: int


def parse_size(text: str) -> int:
    """Bytes from '1G', '512M', '300K' or a plain number of bytes; ValueError when unreadable."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    value = text.strip().upper().removesuffix("B").removesuffix("I")
    factor = units.get(value[-1:], 1)
    number = value[:-1] if value[-1:] in units else value
    try:
        size = float(number) * factor
    except ValueError:
        raise ValueError(f"expected a size like 1G or 512M, got {text!r}") from None
    if not size > 0:
        raise ValueError(f"must be positive, got {text!r}")
    return int(size)


def default_budget(max_memory: int | None = None, chunk_bytes: int | None = None) -> Budget:
    """The budget of a build: max_memory, else SCALE_DATA_MAX_MEMORY, else 1 GiB; pieces of 1/64 of it
    (8 MiB at most, since larger pieces are no faster)."""
    if max_memory is None:
        env = os.environ.get("SCALE_DATA_MAX_MEMORY")
        try:
            max_memory = parse_size(env) if env else DEFAULT_MAX_MEMORY
        except ValueError as exc:
            raise DataError("SCALE_DATA_MAX_MEMORY", "max_memory", str(exc)) from None
    if max_memory < MIN_MAX_MEMORY:
        raise DataError("max_memory", "max_memory", f"must be at least {MIN_MAX_MEMORY >> 20} MiB, got {max_memory}")
    chunk = chunk_bytes if chunk_bytes is not None else min(max_memory // 64, 8 << 20)
    return Budget(max_memory, max(int(chunk), 1))


def entropy_of_counts(counts: np.ndarray) -> float:
    """Entropy of token frequencies in bits per token: the loss of a model that ignores context."""
    counts = counts.astype(np.float64)
    p = counts[counts > 0] / counts.sum() if counts.sum() else counts[:0]
    return float(-(p * np.log2(p)).sum()) if len(p) else 0.0


class Spool:
    """Cleaned documents on disk in corpus order, with their sha256 keys and sizes in memory."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file = open(path, "wb")  # noqa: SIM115 - closed in close()
        self.keys = array.array("Q")
        self.sizes = array.array("Q")
        self.text_digest = hashlib.sha256()

    def add(self, data: bytes) -> None:
        digest = hashlib.sha256(data).digest()
        self.keys.append(int.from_bytes(digest[:8], "big"))
        self.sizes.append(len(data))
        self.text_digest.update(data)
        self.file.write(data)

    def close(self) -> None:
        self.file.close()

    def documents(self, chunk_bytes: int) -> Iterator[list[tuple[int, memoryview]]]:
        """The documents back in order, in groups that fill about chunk_bytes: (index, bytes) pairs."""
        index, sizes = 0, self.sizes
        with open(self.path, "rb") as f:
            while index < len(sizes):
                end, total = index, 0
                while end < len(sizes) and (total == 0 or total + sizes[end] <= chunk_bytes):
                    total += sizes[end]
                    end += 1
                view = memoryview(f.read(total))
                group, offset = [], 0
                for i in range(index, end):
                    group.append((i, view[offset : offset + sizes[i]]))
                    offset += sizes[i]
                yield group
                index = end


class SplitWriter:
    """One split's token stream: shards, token count, and (for train) unigram counts."""

    def __init__(self, folder: Path, name: str, vocab: int, pool: ThreadPoolExecutor, count: bool) -> None:
        self.shards = ShardWriter(folder, name, vocab, pool)
        self.counts = np.zeros(vocab, dtype=np.int64) if count else None
        self.text_bytes = 0

    def add(self, tokens: np.ndarray | bytes, text_bytes: int) -> None:
        self.text_bytes += text_bytes
        if self.counts is not None:
            self.counts += (
                byte_counts(tokens) if isinstance(tokens, bytes) else np.bincount(tokens, minlength=len(self.counts))
            )
        self.shards.add(tokens)


def byte_counts(data: bytes) -> np.ndarray:
    """How often each byte value occurs. Counting byte pairs (a uint16 view, 65536 bins) and folding is
    about ten times faster than numpy's bincount of single bytes, which first widens every byte to 64 bits."""
    pairs = np.frombuffer(data, dtype=np.uint8, count=len(data) - len(data) % 2).view("<u2")
    table = np.bincount(pairs, minlength=1 << 16).reshape(256, 256)
    counts = table.sum(axis=0) + table.sum(axis=1)  # low byte of each pair, then high byte
    if len(data) % 2:
        counts[data[-1]] += 1
    return counts


def _read_pass(source: str, opts: DataOptions, cache: Path, folder: Path, budget: Budget, max_block: int):
    stream = sources.open_stream(source, opts, cache, budget.chunk_bytes)
    cleaner = clean.Cleaner(opts, max_block)
    spool = Spool(folder / SPOOL)
    try:
        for unit in stream.units:
            for doc in cleaner.unit(unit.name, unit.pieces):
                spool.add(doc.data)
    finally:
        spool.close()
    return stream, cleaner, spool


def _bpe_sample(spool: Spool, val: np.ndarray, sample_bytes: int, chunk_bytes: int) -> Iterator[str]:
    taken = 0
    for group in spool.documents(chunk_bytes):
        for index, data in group:
            if taken >= sample_bytes:
                return
            if not val[index]:
                taken += len(data)
                yield str(data, "utf-8")


def _tokenizer(kind: str, vocab: int, spool: Spool, val: np.ndarray, opts: DataOptions, budget: Budget, folder: Path):
    if kind == "bytes":
        return ByteTokenizer()
    if is_pretrained(kind):
        tok = PretrainedTokenizer.open(kind)
        tok.save(folder)
        return tok
    sample = _bpe_sample(spool, val, opts.bpe_sample_bytes, budget.chunk_bytes)
    tok = BpeTokenizer.train(sample, vocab)
    tok.save(folder / BPE_FILE)
    return tok


def _validation_text(spool: Spool, val: np.ndarray, chunk_bytes: int) -> bytes:
    """The validation text in corpus order, its first BASELINE_MAX_BYTES at most."""
    text = bytearray()
    for group in spool.documents(chunk_bytes):
        for index, data in group:
            if val[index]:
                text += data[: BASELINE_MAX_BYTES - len(text)]
                if len(text) >= BASELINE_MAX_BYTES:
                    return bytes(text)
    return bytes(text)


def _write_pass(
    tok,
    spool: Spool,
    val: np.ndarray,
    train_w: SplitWriter,
    val_w: SplitWriter,
    budget: Budget,
    training: quality.TrainingTransform,
) -> None:
    """Tokenise every document into its split's writer, in corpus order (training ones through `training`)."""
    for group in spool.documents(budget.chunk_bytes):
        train_docs, copies = training.documents(group)
        val_docs = [data for index, data in group if val[index]]
        for writer, docs in ((train_w, train_docs), (train_w, copies), (val_w, val_docs)):
            if not docs:
                continue
            if isinstance(tok, ByteTokenizer):
                tokens = b"".join(docs)
            else:
                tokens = tok.encode_many([str(d, "utf-8") for d in docs])
            writer.add(tokens, sum(len(d) for d in docs))
            if docs is copies:
                training.count_copy_tokens(len(tokens))


def build_dataset(
    source: str, opts: DataOptions, kind: str, vocab: int, cache: Path, folder: Path, dirname: str, budget: Budget
) -> None:
    """Build the data set's files (shards, tokenizer, manifest) in `folder`."""
    started = time.perf_counter()
    stream, cleaner, spool = _read_pass(source, opts, cache, folder, budget, MAX_BLOCK_CHARS)
    if len(spool.keys) < 2:
        # Too few documents to split (one paragraph of at most MAX_BLOCK_CHARS): read again, cutting every
        # paragraph longer than doc_bytes at lines. Only a corpus that would be refused pays for the second
        # read, and every corpus that splits at the usual cut keeps its documents, tokens and checksums.
        stream, cleaner, spool = _read_pass(source, opts, cache, folder, budget, opts.doc_bytes)
    n_docs = len(spool.keys)
    keys = np.frombuffer(spool.keys, dtype=np.uint64) if n_docs else np.zeros(0, np.uint64)
    sizes = np.frombuffer(spool.sizes, dtype=np.uint64).astype(np.int64) if n_docs else np.zeros(0, np.int64)
    val = split.validation_mask(keys, sizes, opts)
    if n_docs < 2:
        raise DataError(
            source,
            "data",
            f"{n_docs} document(s) left after cleaning, even cut at lines into pieces of {opts.doc_bytes} bytes; "
            "need at least 2 to split (give more text, or a smaller doc_bytes)",
        )
    tok = _tokenizer(kind, vocab, spool, val, opts, budget, folder)
    with ThreadPoolExecutor(SHARD_THREADS) as pool:
        # the compressors release the GIL, so the baselines run beside tokenising
        bits = pool.submit(_baselines, _validation_text(spool, val, budget.chunk_bytes), int(sizes[val].sum()))
        train_w = SplitWriter(folder, "train", tok.vocab_size, pool, count=True)
        val_w = SplitWriter(folder, "val", tok.vocab_size, pool, count=False)
        training = quality.TrainingTransform.plan(opts, val, sizes)
        _write_pass(tok, spool, val, train_w, val_w, budget, training)
        entries = train_w.shards.close() + val_w.shards.close()
        baseline_facts = bits.result()
    (folder / SPOOL).unlink()
    manifest = {
        "format": FORMAT_VERSION,
        "name": stream.label,
        "dirname": dirname,
        "source": source,
        "source_detail": stream.detail,
        "options": opts.to_dict(),
        "tokenizer": _tokenizer_facts(kind, tok, vocab),
        "text_sha256": spool.text_digest.hexdigest(),
        "documents": {
            "files": cleaner.units,
            "after_cleaning": n_docs,
            "train": int((~val).sum()),
            "val": int(val.sum()),
        },
        **_sizes(train_w, val_w, opts, cleaner.raw_bytes),
        "cleaning": cleaner.report().steps + training.steps(sizes),
        "train_unique": training.unique(train_w.shards.tokens, train_w.text_bytes),
        "baselines": baseline_facts,
        "unigram_entropy_bits_per_token": entropy_of_counts(train_w.counts),
        "shards": entries,
        "prepare_seconds": round(time.perf_counter() - started, 3),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if source == "markov":
        manifest["markov"] = stream.detail
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")


def _tokenizer_facts(kind: str, tok, vocab: int) -> dict:
    """The manifest's tokenizer: kind, vocabulary, file; a pretrained one also its name and file's sha256."""
    facts = {"kind": kind, "vocab_size": int(tok.vocab_size), "requested_vocab_size": vocab}
    facts["file"] = BPE_FILE if kind == "bpe" else None
    if is_pretrained(kind):
        facts.update(pretrained.identity(kind), name=kind, file=tok.file_name)
    return facts


def _sizes(train_w: SplitWriter, val_w: SplitWriter, opts: DataOptions, raw_bytes: int) -> dict:
    train_bytes, val_bytes = train_w.text_bytes, val_w.text_bytes
    return {
        "bytes": {"raw": raw_bytes, "clean": train_bytes + val_bytes, "train": train_bytes, "val": val_bytes},
        "tokens": {"train": train_w.shards.tokens, "val": val_w.shards.tokens},
        "bytes_per_token": val_bytes / max(val_w.shards.tokens, 1),
        "split": {
            "method": split.describe(opts),
            "val_target_bytes": split.val_target_bytes(train_bytes + val_bytes, opts),
        },
    }


def _baselines(text: bytes, val_bytes: int) -> dict:
    return {
        "text": "validation" if len(text) == val_bytes else f"the first {len(text)} bytes of the validation text",
        "bits_per_byte": baselines.bits_per_byte(text),
        "settings": baselines.describe(),
    }
