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
"""

from __future__ import annotations

import hashlib

from scaling_cli.data.clean import Document
from scaling_cli.data.options import DataOptions

MAX_VAL_SHARE = 0.25


def val_target_bytes(total_bytes: int, opts: DataOptions) -> int:
    """How much validation text to take from a corpus of total_bytes."""
    floor = min(opts.val_min_bytes, int(MAX_VAL_SHARE * total_bytes))
    return max(int(opts.val_fraction * total_bytes), floor)


def split_documents(docs: list[Document], opts: DataOptions) -> tuple[list[Document], list[Document]]:
    """(train, validation), each in corpus order; validation gets at least one document when there are two."""
    sizes = [d.n_bytes for d in docs]
    target = val_target_bytes(sum(sizes), opts)
    hashes = [hashlib.sha256(d.text.encode("utf-8")).hexdigest() for d in docs]
    val_ids: set[int] = set()
    taken, last_hash = 0, None
    for i in sorted(range(len(docs)), key=lambda i: (hashes[i], i)):
        target_met = taken >= target and hashes[i] != last_hash  # never part a group of exact duplicates
        if (target_met and val_ids) or len(val_ids) + 1 >= len(docs):
            break
        val_ids.add(i)
        taken, last_hash = taken + sizes[i], hashes[i]
    train = [d for i, d in enumerate(docs) if i not in val_ids]
    val = [d for i, d in enumerate(docs) if i in val_ids]
    return train, val


def describe(opts: DataOptions) -> str:
    return (
        f"documents in sha256 order into validation until it holds max({opts.val_fraction:g} of the text, "
        f"min({opts.val_min_bytes} bytes, {MAX_VAL_SHARE:g} of the text)); exact duplicates share a side"
    )
