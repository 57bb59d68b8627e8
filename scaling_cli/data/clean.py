"""Cleaning: normalise text, cut it into documents, remove exact duplicates and filter by length and
compressibility, counting what every step removed.

Documents. Sources give whole files (a play, a module, a chapter). Files longer than `doc_bytes` are
cut at blank lines into documents of about `doc_bytes` (8 KiB by default: a scene or a few functions)
so that the split by document hash has hundreds of units even for a corpus of a few dozen plays. The
cut is an exact partition: without cleaning, the documents concatenate back to the source text.

Paragraphs are blank-line-separated blocks. Paragraph deduplication only considers paragraphs of at
least `dedup_min_paragraph_bytes` (64) so that legitimately repeated short lines ("Exit.", a speaker's
"Ay, my lord.", `return None`) are kept; a paragraph is dropped when the same text appeared earlier.

The compression-ratio filter (raw bytes / zlib level 6 bytes of a document) drops documents outside a
band: very high ratios are repetitive boilerplate, very low ones look random (tables, encoded data).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
import zlib
from dataclasses import dataclass, field

from scaling_cli.data.options import DataOptions

_PARAGRAPH_BREAK = re.compile(r"(\n(?:[ \t]*\n)+)")


@dataclass
class Document:
    name: str
    text: str

    @property
    def n_bytes(self) -> int:
        return len(self.text.encode("utf-8"))


@dataclass
class CleanReport:
    """Per step: whether it ran and what it removed or changed; plus totals before and after."""

    steps: list[dict] = field(default_factory=list)

    def add(self, step: str, enabled: bool, **counts: float | str | None) -> None:
        self.steps.append({"step": step, "enabled": enabled, **counts})


def normalize_text(text: str) -> str:
    """Unicode NFC, no byte-order mark, and newlines as \\n only."""
    text = unicodedata.normalize("NFC", text).lstrip("\ufeff")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def split_paragraphs(text: str) -> list[str]:
    """Blank-line-separated blocks, each keeping the separator that follows it, so "".join restores text."""
    parts = _PARAGRAPH_BREAK.split(text)
    blocks = [parts[i] + (parts[i + 1] if i + 1 < len(parts) else "") for i in range(0, len(parts), 2)]
    return [b for b in blocks if b]


def cut_documents(name: str, text: str, doc_bytes: int) -> list[Document]:
    """Cut one source file at blank lines into documents of at least doc_bytes (a short tail joins the last)."""
    if len(text) <= doc_bytes:
        return [Document(name, text)] if text else []
    docs, current, size = [], [], 0
    for block in split_paragraphs(text):
        current.append(block)
        size += len(block.encode("utf-8"))
        if size >= doc_bytes:
            docs.append("".join(current))
            current, size = [], 0
    if current:
        tail = "".join(current)
        if docs and size < doc_bytes // 2:
            docs[-1] += tail
        else:
            docs.append(tail)
    return [Document(f"{name}#{i}", d) for i, d in enumerate(docs)]


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def dedup_documents(docs: list[Document]) -> tuple[list[Document], int, int]:
    """Keep the first of each exactly repeated document; returns (kept, documents removed, bytes removed)."""
    seen: set[str] = set()
    kept, removed_bytes = [], 0
    for doc in docs:
        key = text_hash(doc.text)
        if key in seen:
            removed_bytes += doc.n_bytes
        else:
            seen.add(key)
            kept.append(doc)
    return kept, len(docs) - len(kept), removed_bytes


def dedup_paragraphs(docs: list[Document], min_bytes: int) -> tuple[list[Document], int, int, int]:
    """Drop every repeat of a paragraph of at least min_bytes seen earlier in corpus order.

    Returns (kept documents, paragraphs removed, bytes removed, documents left empty and dropped).
    """
    seen: set[str] = set()
    kept, removed, removed_bytes, emptied = [], 0, 0, 0
    for doc in docs:
        blocks = []
        for block in split_paragraphs(doc.text):
            body = block.rstrip("\n \t")
            size = len(body.encode("utf-8"))
            if size >= min_bytes:
                key = text_hash(body)
                if key in seen:
                    removed += 1
                    removed_bytes += len(block.encode("utf-8"))
                    continue
                seen.add(key)
            blocks.append(block)
        if blocks:
            kept.append(Document(doc.name, "".join(blocks)))
        else:
            emptied += 1
    return kept, removed, removed_bytes, emptied


def compression_ratio(text: str) -> float:
    """Raw bytes over zlib level-6 bytes: about 2.5-3.5 for prose, higher for repetitive text."""
    raw = text.encode("utf-8")
    return len(raw) / len(zlib.compress(raw, 6)) if raw else 0.0


def _removed(before: list[Document], after: list[Document]) -> dict:
    return {
        "docs_removed": len(before) - len(after),
        "bytes_removed": sum(d.n_bytes for d in before) - sum(d.n_bytes for d in after),
    }


def clean_corpus(units: list[tuple[str, str]], opts: DataOptions) -> tuple[list[Document], CleanReport]:
    """The whole cleaning pipeline in its fixed order, with a report of what each step did."""
    report = CleanReport()
    raw_bytes = sum(len(t.encode("utf-8")) for _, t in units)
    if opts.normalize:
        normalized = [(n, normalize_text(t)) for n, t in units]
        changed = sum(a[1] != b[1] for a, b in zip(units, normalized))
        delta = raw_bytes - sum(len(t.encode("utf-8")) for _, t in normalized)
        report.add("normalize", True, files_changed=changed, bytes_removed=delta)
        units = normalized
    else:
        report.add("normalize", False)
    docs = [d for name, text in units for d in cut_documents(name, text, opts.doc_bytes)]
    report.add("cut", True, files=len(units), documents=len(docs), doc_bytes=opts.doc_bytes)
    if opts.dedup:
        docs, n_docs, n_bytes = dedup_documents(docs)
        report.add("dedup_documents", True, docs_removed=n_docs, bytes_removed=n_bytes)
        docs, n_par, n_bytes, emptied = dedup_paragraphs(docs, opts.dedup_min_paragraph_bytes)
        report.add(
            "dedup_paragraphs",
            True,
            paragraphs_removed=n_par,
            bytes_removed=n_bytes,
            docs_removed=emptied,
            min_paragraph_bytes=opts.dedup_min_paragraph_bytes,
        )
    else:
        report.add("dedup_documents", False)
        report.add("dedup_paragraphs", False)
    if opts.min_doc_bytes > 0:
        before, docs = docs, [d for d in docs if d.n_bytes >= opts.min_doc_bytes]
        report.add("min_doc_bytes", True, threshold=opts.min_doc_bytes, **_removed(before, docs))
    else:
        report.add("min_doc_bytes", False)
    lo, hi = opts.min_compression_ratio, opts.max_compression_ratio
    if lo is not None or hi is not None:
        before = docs
        ratios = [compression_ratio(d.text) for d in docs]
        docs = [d for d, r in zip(docs, ratios) if (lo is None or r >= lo) and (hi is None or r <= hi)]
        report.add(
            "compression_ratio",
            True,
            band=[lo, hi],
            too_random=sum(lo is not None and r < lo for r in ratios),
            too_repetitive=sum(hi is not None and r > hi for r in ratios),
            **_removed(before, docs),
        )
    else:
        report.add("compression_ratio", False)
    return docs, report
