"""Token shards: numpy arrays compressed with lz4.frame, each checked against its sha256 when read.

`ShardWriter` cuts a stream of tokens into the same shards `write_shards` makes from one array, and
compresses them on a small thread pool (lz4 releases the GIL), so prepare uses both cores.

On disk a shard holds little-endian uint8 ids when the vocabulary fits in a byte (halving the file for
byte tokens), else uint16, else int32; in memory arrays are uint16 or int32. The checksum covers the
compressed file, so a flipped byte or a truncated file is caught before anything is decompressed.
"""

from __future__ import annotations

import hashlib
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import lz4.frame
import numpy as np

from scaling_cli.errors import DataError

SHARD_TOKENS = 1 << 22
# lz4's lowest high-compression level: a quarter to a third smaller than the default fast mode on text, at
# about 60 MB/s (prepare pays it once) while decompression stays as fast as ever.
SHARD_LEVEL = 4


def disk_dtype(vocab_size: int) -> np.dtype:
    if vocab_size <= 256:
        return np.dtype("<u1")
    return np.dtype("<u2") if vocab_size <= 65535 else np.dtype("<i4")


def memory_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= 65535 else np.dtype(np.int32)


def _write_shard(folder: Path, prefix: str, index: int, raw: bytes, dtype: np.dtype) -> dict:
    blob = lz4.frame.compress(raw, compression_level=SHARD_LEVEL, content_checksum=True)
    name = f"{prefix}-{index:04d}.tok.lz4"
    (folder / name).write_bytes(blob)
    return {
        "file": name,
        "split": prefix,
        "tokens": len(raw) // dtype.itemsize,
        "dtype": dtype.str,
        "bytes_raw": len(raw),
        "bytes_compressed": len(blob),
        "sha256": hashlib.sha256(blob).hexdigest(),
    }


def write_shards(
    tokens: np.ndarray, folder: Path, prefix: str, vocab_size: int, shard_tokens: int = SHARD_TOKENS
) -> list[dict]:
    """Write tokens as `<prefix>-0000.tok.lz4`, ... and return one manifest entry per shard."""
    with ThreadPoolExecutor(1) as pool:
        writer = ShardWriter(folder, prefix, vocab_size, pool, shard_tokens)
        writer.add(tokens)
        return writer.close()


class ShardWriter:
    """Shards of `shard_tokens` tokens from tokens added in any pieces; at most `2 * workers` shards are
    waiting to be compressed at a time, which bounds the memory it holds."""

    def __init__(
        self, folder: Path, prefix: str, vocab_size: int, pool: ThreadPoolExecutor, shard_tokens: int = SHARD_TOKENS
    ) -> None:
        self.folder, self.prefix, self.pool = folder, prefix, pool
        self.dtype = disk_dtype(vocab_size)
        self.shard_bytes = shard_tokens * self.dtype.itemsize
        self.buffer = bytearray()
        self.waiting: deque[Future] = deque()
        self.entries: list[dict] = []
        self.index = 0
        self.tokens = 0

    def add(self, tokens: np.ndarray | bytes) -> None:
        """Append tokens: an integer array, or bytes already in the disk dtype (byte tokens)."""
        if isinstance(tokens, np.ndarray):
            tokens = np.ascontiguousarray(tokens, dtype=self.dtype).tobytes()
        self.tokens += len(tokens) // self.dtype.itemsize
        self.buffer += tokens
        while len(self.buffer) >= self.shard_bytes:
            self._submit(bytes(self.buffer[: self.shard_bytes]))
            del self.buffer[: self.shard_bytes]

    def _submit(self, raw: bytes) -> None:
        limit = 2 * max(getattr(self.pool, "_max_workers", 1), 1)
        while len(self.waiting) >= limit:
            self.entries.append(self.waiting.popleft().result())
        self.waiting.append(self.pool.submit(_write_shard, self.folder, self.prefix, self.index, raw, self.dtype))
        self.index += 1

    def close(self) -> list[dict]:
        """Write the last (possibly short, or empty when nothing was added) shard; the manifest entries."""
        if self.buffer or self.index == 0:
            self._submit(bytes(self.buffer))
            self.buffer = bytearray()
        while self.waiting:
            self.entries.append(self.waiting.popleft().result())
        return self.entries


def read_shard_disk(folder: Path, entry: dict) -> np.ndarray:
    """One verified shard in its disk dtype, read-only; DataError naming the file when it is damaged."""
    path = folder / entry["file"]
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise DataError(
            str(path), "shard", f"cannot read ({exc.strerror or exc}); prepare the data set again"
        ) from None
    digest = hashlib.sha256(blob).hexdigest()
    if digest != entry["sha256"]:
        raise DataError(
            str(path),
            "sha256",
            f"checksum mismatch, the shard is damaged (expected "
            f"{entry['sha256'][:12]}…, got {digest[:12]}…); delete {folder} and prepare again",
        )
    try:
        raw = lz4.frame.decompress(blob)
    except RuntimeError as exc:
        raise DataError(str(path), "lz4", f"cannot decompress ({exc}); delete {folder} and prepare again") from None
    array = np.frombuffer(raw, dtype=np.dtype(entry["dtype"]))
    if len(array) != entry["tokens"]:
        raise DataError(str(path), "tokens", f"holds {len(array)} tokens, the manifest says {entry['tokens']}")
    return array


def read_shard(folder: Path, entry: dict, vocab_size: int) -> np.ndarray:
    """One verified shard as an in-memory token array; DataError naming the file when it is damaged."""
    return read_shard_disk(folder, entry).astype(memory_dtype(vocab_size))


def read_split(folder: Path, entries: list[dict], split: str, vocab_size: int) -> np.ndarray:
    """All shards of one split, in order, concatenated."""
    parts = [read_shard(folder, e, vocab_size) for e in entries if e["split"] == split]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=memory_dtype(vocab_size))
