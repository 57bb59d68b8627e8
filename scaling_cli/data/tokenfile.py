"""Memory-mapped token files: each split of a prepared data set decompressed once into `<split>.tokens`,
a flat little-endian array (uint8 for a byte vocabulary, uint16 up to 65536 tokens, else uint32).

Training reads windows straight from the map, so a worker's memory does not grow with the corpus and
all workers on a machine share one copy through the page cache. The file is built on first use under a
lock from the checksum-verified lz4 shards (the stored form) and written atomically (`atomic`); a stamp
beside it (`<split>.tokens.json`) records each shard's checksum, size, mtime, ctime and inode, so a shard that
is replaced or damaged later (even with its size and mtime put back) makes the file be rebuilt (and the damage
reported) instead of trusted. In a prepared directory this process cannot write to, the tokens are
decompressed into memory as before.
"""

from __future__ import annotations

import json
import os
import weakref
from dataclasses import astuple
from pathlib import Path
from typing import BinaryIO

import numpy as np
from filelock import FileLock

from scaling_cli import atomic
from scaling_cli.data.fingerprint import FileState
from scaling_cli.data.shards import read_shard_disk, read_split
from scaling_cli.errors import DataError


def token_dtype(vocab_size: int) -> np.dtype:
    """The narrowest unsigned little-endian dtype that holds every token id."""
    if vocab_size <= 1 << 8:
        return np.dtype("<u1")
    return np.dtype("<u2") if vocab_size <= 1 << 16 else np.dtype("<u4")


def _stamp(folder: Path, entries: list[dict]) -> list[list]:
    """Each shard's name, checksum and file state (see `fingerprint.FileState`: an edit that puts the size and
    mtime back still moves the ctime, and a replaced shard has a new inode)."""
    stamp = []
    for entry in entries:
        try:
            state = FileState.of(folder / entry["file"])
        except OSError:
            return []
        stamp.append([entry["file"], entry["sha256"], *astuple(state)])
    return stamp


def _is_current(path: Path, stamp_path: Path, stamp: list, n_bytes: int) -> bool:
    try:
        recorded = json.loads(stamp_path.read_text())
        return recorded == stamp and bool(stamp) and path.stat().st_size == n_bytes
    except (OSError, json.JSONDecodeError):
        return False


def open_tokens(folder: Path, entries: list[dict], split: str, vocab_size: int) -> np.ndarray:
    """The split's tokens as a read-only memory map, building the token file first when needed."""
    parts = [e for e in entries if e["split"] == split]
    dtype = token_dtype(vocab_size)
    n_tokens = sum(int(e["tokens"]) for e in parts)
    path, stamp_path = folder / f"{split}.tokens", folder / f"{split}.tokens.json"
    if not _is_current(path, stamp_path, _stamp(folder, parts), n_tokens * dtype.itemsize):
        if not os.access(folder, os.W_OK):  # a read-only shared cache: decompress into memory instead
            return read_split(folder, parts, split, vocab_size).astype(dtype)
        with FileLock(str(folder / f".{split}.tokens.lock")):
            stamp = _stamp(folder, parts)
            if not _is_current(path, stamp_path, stamp, n_tokens * dtype.itemsize):
                _build(folder, parts, path, stamp_path, dtype, stamp)
    if n_tokens == 0:
        return np.zeros(0, dtype=dtype)
    tokens = np.memmap(path, dtype=dtype, mode="r", shape=(n_tokens,))
    # batches read their windows with pread from this descriptor (see batches.read_windows); views and
    # slices of the map do not carry it, so they are read through the map
    tokens.token_fd = os.open(path, os.O_RDONLY)
    weakref.finalize(tokens, os.close, tokens.token_fd)
    return tokens


def _build(folder: Path, parts: list[dict], path: Path, stamp_path: Path, dtype: np.dtype, stamp: list) -> None:
    def write_tokens(out: BinaryIO) -> None:
        for entry in parts:
            out.write(read_shard_disk(folder, entry).astype(dtype, copy=False).tobytes())

    try:
        atomic.write_stream(path, write_tokens)
        atomic.write_text(stamp_path, json.dumps(stamp))
    except OSError as exc:
        raise DataError(str(path), "tokens", f"cannot write the token file ({exc.strerror or exc})") from None
