"""Quality and repetition of a data set's training split, changed by known amounts after the split.

Three `[data]` options act on the training documents only, after the train/validation split, so the
validation text (and the tokenizer, which learns from the training text before these steps) is the same
for every variant of a source and the losses of the variants compare:

- `max_train_bytes` keeps the training documents in corpus order up to that many bytes (the last one cut at
  a character boundary): the unique data U becomes a sweep axis;
- `noise_fraction` shuffles the characters of that share of the (kept) training documents: the bytes stay,
  their order is gone (for ASCII text this is a shuffle of the document's bytes);
- `duplicate_fraction` writes that share of the training documents `duplicate_copies` times in all, each
  extra copy right after its group of documents.

Which documents are chosen depends only on the options (`quality_seed`) and the document sizes, so a variant
is rebuilt byte for byte. Each step is written to the manifest's cleaning list with the documents and bytes
it changed, and the unique training bytes and tokens (without the extra copies) go to `train_unique`.

A variant can also be named inline as a data set, `"pystdlib?noise_fraction=0.3&duplicate_fraction=0.1"`
(`options.split_variant`), so one spec lists several quality levels of one corpus (each is its own data set in
fits and figures); how often runs pass over the unique tokens is `repetition.py`'s.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from scaling_cli.data.options import DataOptions

_NOISE_STREAM, _DUPLICATE_STREAM = 1, 2


@dataclass
class TrainingTransform:
    """What the quality options do to each training document, decided from the sizes before any is read."""

    opts: DataOptions
    keep_bytes: dict[int, int]  # training document index -> bytes kept (all, or a cut for the last under the cap)
    noised: frozenset[int]
    duplicated: frozenset[int]
    removed_docs: int
    train_bytes: int  # of the training split before the cap
    counts: dict = field(default_factory=lambda: {"noise_bytes_differing": 0, "copy_bytes": 0, "copy_tokens": 0})

    @classmethod
    def plan(cls, opts: DataOptions, val: np.ndarray, sizes: np.ndarray) -> TrainingTransform:
        train = np.flatnonzero(~val)
        keep = _capped(train, sizes, opts.max_train_bytes)
        kept = np.array(sorted(keep), dtype=np.int64)
        return cls(
            opts=opts,
            keep_bytes=keep,
            noised=_chosen(kept, opts.noise_fraction, opts.quality_seed, _NOISE_STREAM),
            duplicated=_chosen(kept, opts.duplicate_fraction, opts.quality_seed, _DUPLICATE_STREAM),
            removed_docs=int(len(train) - len(keep)),
            train_bytes=int(sizes[train].sum()),
        )

    def documents(self, group: list[tuple[int, memoryview]]) -> tuple[list, list]:
        """The group's training documents as they are written (validation ones left out), and the extra copies."""
        docs, copies = [], []
        for index, data in group:
            kept = self.keep_bytes.get(index)
            if kept is None:
                continue
            if kept < len(data):
                kept = self.keep_bytes[index] = cut_at_character(data, kept)
                data = data[:kept]
            if index in self.noised:
                data = self._noise(index, bytes(data))
            docs.append(data)
            if index in self.duplicated:
                copies.extend([data] * (self.opts.duplicate_copies - 1))
        self.counts["copy_bytes"] += sum(len(c) for c in copies)
        return docs, copies

    def count_copy_tokens(self, tokens: int) -> None:
        self.counts["copy_tokens"] += tokens

    def _noise(self, index: int, data: bytes) -> bytes:
        rng = np.random.default_rng([self.opts.quality_seed, _NOISE_STREAM, index])
        if data.isascii():
            original = np.frombuffer(data, dtype=np.uint8)
            shuffled = original[rng.permutation(len(original))]
            self.counts["noise_bytes_differing"] += int((shuffled != original).sum())
            return shuffled.tobytes()
        chars = np.array(list(data.decode("utf-8")), dtype=object)
        noised = "".join(chars[rng.permutation(len(chars))]).encode("utf-8")
        same = np.frombuffer(noised, dtype=np.uint8) == np.frombuffer(data, dtype=np.uint8)
        self.counts["noise_bytes_differing"] += int((~same).sum())
        return noised

    def unique(self, train_tokens: int, train_bytes: int) -> dict:
        """The training split's unique bytes and tokens: all of it but the extra copies."""
        return {
            "bytes": train_bytes - self.counts["copy_bytes"],
            "tokens": train_tokens - self.counts["copy_tokens"],
        }

    def steps(self, sizes: np.ndarray) -> list[dict]:
        """The manifest's cleaning entries of the three steps (applied to the training split only)."""
        opts = self.opts
        return [
            _entry("max_train_bytes", opts.max_train_bytes is not None, lambda: self._cap_details(sizes)),
            _entry("noise", opts.noise_fraction > 0, self._noise_details),
            _entry("duplicate", opts.duplicate_fraction > 0, self._duplicate_details),
        ]

    def _cap_details(self, sizes: np.ndarray) -> dict:
        kept_bytes = sum(self.keep_bytes.values())
        return {
            "cap": self.opts.max_train_bytes,
            "docs_kept": len(self.keep_bytes),
            "docs_removed": self.removed_docs,
            "docs_cut": sum(1 for i, kept in self.keep_bytes.items() if kept < sizes[i]),
            "bytes_kept": kept_bytes,
            "bytes_removed": self.train_bytes - kept_bytes,
        }

    def _noise_details(self) -> dict:
        return {
            "fraction": self.opts.noise_fraction,
            "seed": self.opts.quality_seed,
            "method": "characters of each chosen document shuffled (its bytes, for ASCII text)",
            "docs_changed": len(self.noised),
            "bytes_shuffled": sum(self.keep_bytes[i] for i in self.noised),
            "bytes_differing": self.counts["noise_bytes_differing"],
        }

    def _duplicate_details(self) -> dict:
        copies = self.opts.duplicate_copies
        return {
            "fraction": self.opts.duplicate_fraction,
            "copies": copies,
            "seed": self.opts.quality_seed,
            "docs_duplicated": len(self.duplicated),
            "docs_added": len(self.duplicated) * (copies - 1),
            "bytes_added": self.counts["copy_bytes"],
            "duplicated_doc_bytes": sum(self.keep_bytes[i] for i in self.duplicated),
        }


def _capped(train: np.ndarray, sizes: np.ndarray, cap: int | None) -> dict[int, int]:
    """Training document index -> bytes kept: every document, or those in corpus order up to `cap` bytes."""
    if cap is None:
        return {int(i): int(sizes[i]) for i in train}
    keep, total = {}, 0
    for i in train:
        if total >= cap:
            break
        kept = min(int(sizes[i]), cap - total)
        keep[int(i)] = kept
        total += kept
    return keep


def _chosen(kept: np.ndarray, fraction: float, seed: int, stream: int) -> frozenset[int]:
    """round(fraction x documents) of the kept training documents, chosen by a seeded permutation."""
    count = round(fraction * len(kept))
    if count == 0:
        return frozenset()
    order = np.random.default_rng([seed, stream]).permutation(len(kept))
    return frozenset(int(i) for i in kept[order[:count]])


def cut_at_character(data: memoryview, size: int) -> int:
    """`size`, moved back to the start of the UTF-8 character it falls in."""
    while size > 0 and size < len(data) and 0x80 <= data[size] < 0xC0:
        size -= 1
    return size


def _entry(step: str, enabled: bool, details) -> dict:
    """One cleaning entry: what the step is and, when it ran, what it changed in the training split."""
    entry = {"step": step, "enabled": enabled}
    if enabled:
        entry |= {"split": "train", **details()}
    return entry
