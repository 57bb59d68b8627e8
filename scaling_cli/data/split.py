"""The train/validation split: by document hash, so it is deterministic and never splits a document.

Documents are ordered by the sha256 of their text and taken into validation in that order until the
validation text reaches its target: `val_fraction` of the corpus (5%) but at least `val_min_bytes`
(256 KiB), never more than a quarter of a small corpus. Why that size: with byte tokens 256 KiB is
about a thousand windows of 256 tokens, several times more than one evaluation reads, and it spans
tens of 8 KiB documents, so the val loss is an average over many scenes, chapters or modules rather
than one lucky passage. The standard error of a mean per-byte loss over 256k bytes with a per-byte
spread of about 2 bits is 0.004 bits for independent bytes, and about 0.012 bits if correlations cut the
effective sample tenfold: small next to the loss gaps a scaling sweep measures.
Exact duplicates share a hash and therefore a side, so duplicated text cannot leak from train to val.
The order uses the first 64 bits of each sha256, so that a prepare keeps only 16 bytes per document.
"""

from __future__ import annotations

import hashlib

import numpy as np

from scaling_cli.data.options import DataOptions

MAX_VAL_SHARE = 0.25


def val_target_bytes(total_bytes: int, opts: DataOptions) -> int:
    """How much validation text to take from a corpus of total_bytes."""
    floor = min(opts.val_min_bytes, int(MAX_VAL_SHARE * total_bytes))
    return max(int(opts.val_fraction * total_bytes), floor)


def hash_key(data: bytes) -> int:
    """The document's sort key: the first 64 bits of its sha256, as an unsigned integer."""
    return int.from_bytes(hashlib.sha256(data).digest()[:8], "big")


def validation_mask(keys: np.ndarray, sizes: np.ndarray, opts: DataOptions) -> np.ndarray:
    """Which documents (given by sha256 key and size, in corpus order) go to validation.

    Documents are taken in key order (ties by position) until the validation text reaches its target and
    the next document does not share the last one's key; at most all but one document.
    """
    n = len(keys)
    mask = np.zeros(n, dtype=bool)
    if n < 2:
        return mask
    order = np.lexsort((np.arange(n), keys))
    sorted_keys = keys[order]
    taken_before = np.concatenate([[0], np.cumsum(sizes[order], dtype=np.int64)[:-1]])
    target = val_target_bytes(int(sizes.sum()), opts)
    position = np.arange(n)
    can_stop = (position >= 1) & (taken_before >= target)
    can_stop[1:] &= sorted_keys[1:] != sorted_keys[:-1]  # never part a group of exact duplicates
    stops = np.flatnonzero(can_stop)
    count = min(int(stops[0]) if len(stops) else n - 1, n - 1)
    mask[order[:count]] = True
    return mask


def describe(opts: DataOptions) -> str:
    return (
        f"documents in sha256 order into validation until it holds max({opts.val_fraction:g} of the text, "
        f"min({opts.val_min_bytes} bytes, {MAX_VAL_SHARE:g} of the text)); exact duplicates share a side"
    )
