"""Token shards: numpy arrays compressed with lz4.frame, each checked against its sha256 when read.

On disk a shard holds little-endian uint8 ids when the vocabulary fits in a byte (halving the file for
byte tokens), else uint16, else int32; in memory arrays are uint16 or int32. The checksum covers the
compressed file, so a flipped byte or a truncated file is caught before anything is decompressed.
"""

from __future__ import annotations

import hashlib
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


def write_shards(
    tokens: np.ndarray, folder: Path, prefix: str, vocab_size: int, shard_tokens: int = SHARD_TOKENS
) -> list[dict]:
    """Write tokens as `<prefix>-0000.tok.lz4`, ... and return one manifest entry per shard."""
    dtype = disk_dtype(vocab_size)
    entries = []
    for index, start in enumerate(range(0, max(len(tokens), 1), shard_tokens)):
        chunk = np.ascontiguousarray(tokens[start : start + shard_tokens], dtype=dtype)
        blob = lz4.frame.compress(chunk.tobytes(), compression_level=SHARD_LEVEL, content_checksum=True)
        name = f"{prefix}-{index:04d}.tok.lz4"
        (folder / name).write_bytes(blob)
        entries.append(
            {
                "file": name,
                "split": prefix,
                "tokens": len(chunk),
                "dtype": dtype.str,
                "bytes_raw": int(chunk.nbytes),
                "bytes_compressed": len(blob),
                "sha256": hashlib.sha256(blob).hexdigest(),
            }
        )
    return entries


def read_shard(folder: Path, entry: dict, vocab_size: int) -> np.ndarray:
    """One verified shard as an in-memory token array; DataError naming the file when it is damaged."""
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
    return array.astype(memory_dtype(vocab_size))


def read_split(folder: Path, entries: list[dict], split: str, vocab_size: int) -> np.ndarray:
    """All shards of one split, in order, concatenated."""
    parts = [read_shard(folder, e, vocab_size) for e in entries if e["split"] == split]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=memory_dtype(vocab_size))
