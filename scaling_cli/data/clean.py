"""Cleaning: normalise text, cut it into documents, remove exact and near duplicates and filter by length
and compressibility, counting what every step removed. It runs on a stream: units arrive one by one (a
file's text in pieces) and documents leave one by one, so memory does not grow with the corpus, except for
the hashes that deduplication keeps (8 bytes of key, about 60 bytes in a Python set, per unique document
or paragraph) and the near-duplicate index.

Documents: see `cutting` (at blank lines into pieces of about `doc_bytes`).

Paragraphs are blank-line-separated blocks. Paragraph deduplication only considers paragraphs of at
least `dedup_min_paragraph_bytes` (64) so that legitimately repeated short lines ("Exit.", a speaker's
"Ay, my lord.", `return None`) are kept; a paragraph is dropped when the same text appeared earlier.
Exact duplicates are found by a 64-bit BLAKE2b key of the text (a false match needs about 4e9 distinct
paragraphs to become likely). Near duplicates: see `neardup`.

The compression-ratio filter (raw bytes / zlib level 6 bytes of a document) drops documents outside a
band: very high ratios are repetitive boilerplate, very low ones look random (tables, encoded data).
"""

from __future__ import annotations

import hashlib
import unicodedata
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from scaling_cli.data.cutting import (
    MAX_BLOCK_CHARS,
    Document,
    DocumentCutter,
    cut_documents,
    split_paragraphs,
    utf8_len,
)
from scaling_cli.data.options import DataOptions

__all__ = ["Cleaner", "CleanReport", "Document", "clean_corpus", "cut_documents", "split_paragraphs"]


@dataclass
class CleanReport:
    """Per step: whether it ran and what it removed or changed; plus totals before and after."""

    steps: list[dict] = field(default_factory=list)

    def add(self, step: str, enabled: bool, **counts: float | str | None) -> None:
        self.steps.append({"step": step, "enabled": enabled, **counts})


def normalize_text(text: str) -> str:
    """Unicode NFC, no byte-order mark, and newlines as \\n only."""
    return _normalize_piece(text, at_start=True)


def _normalize_piece(text: str, at_start: bool) -> str:
    text = _normalize_spans(text)
    return text.lstrip("\ufeff") if at_start else text


NFC_SPAN = 1 << 16


def _normalize_span(span: str) -> str:
    if not span.isascii():
        span = unicodedata.normalize("NFC", span)
    return span.replace("\r\n", "\n").replace("\r", "\n") if "\r" in span else span


def _normalize_spans(text: str) -> str:
    """NFC and newlines, span by span: spans of about 64 KiB cut after a newline (where neither composition
    nor a CR LF pair can reach across), so that only the spans that need it pay for it; normalising a
    whole piece costs about 20 ms per MB as soon as it holds one accent."""
    if len(text) <= NFC_SPAN:
        return _normalize_span(text)
    spans, start = [], 0
    while start < len(text):
        end = text.find("\n", start + NFC_SPAN) + 1 or len(text)
        spans.append(_normalize_span(text[start:end]))
        start = end
    return "".join(spans)


def _clean_bytes(data: bytes, at_start: bool, normalize: bool) -> tuple[bytes, int, bool]:
    """(cleaned UTF-8 bytes, UTF-8 size of the raw text, whether normalising changed it) of a piece of raw
    bytes that ends at a newline or before an ASCII byte. Spans of plain ASCII without a carriage return
    stay bytes; only the others are decoded (bad bytes replaced), normalised and encoded again."""
    out, raw_bytes, changed, start = [], 0, False, 0
    while start < len(data):
        end = data.find(b"\n", start + NFC_SPAN) + 1 or len(data)
        span = data[start:end]
        start = end
        if span.isascii() and (b"\r" not in span or not normalize):
            out.append(span)
            raw_bytes += len(span)
            continue
        text = span.decode("utf-8", errors="replace")
        raw = text.encode("utf-8")
        raw_bytes += len(raw)
        if normalize:
            text = _normalize_span(text)
            if at_start and not out:
                text = text.lstrip("\ufeff")
            raw_changed = text.encode("utf-8")
            changed = changed or raw_changed != raw
            raw = raw_changed
        out.append(raw)
    return b"".join(out), raw_bytes, changed


def key64(text: str | bytes) -> int:
    """A 64-bit key of the text (or its UTF-8 bytes) for exact-duplicate sets."""
    data = text.encode("utf-8") if isinstance(text, str) else text
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


class ExactDedup:
    """Keeps the first of each exactly repeated document, then drops repeats of long paragraphs."""

    def __init__(self, min_paragraph_bytes: int) -> None:
        self.min_paragraph_bytes = min_paragraph_bytes
        self.documents: set[int] = set()
        self.paragraphs: set[int] = set()
        self.docs_removed = self.doc_bytes_removed = 0
        self.paragraphs_removed = self.paragraph_bytes_removed = self.docs_emptied = 0

    def document(self, doc: Document) -> Document | None:
        key = key64(doc.data)
        if key in self.documents:
            self.docs_removed += 1
            self.doc_bytes_removed += doc.n_bytes
            return None
        self.documents.add(key)
        return doc

    def paragraphs_of(self, doc: Document) -> Document | None:
        blocks = []
        for block in split_paragraphs(doc.text):
            body = block.rstrip("\n \t")
            if utf8_len(body) >= self.min_paragraph_bytes:
                key = key64(body)
                if key in self.paragraphs:
                    self.paragraphs_removed += 1
                    self.paragraph_bytes_removed += utf8_len(block)
                    continue
                self.paragraphs.add(key)
            blocks.append(block)
        if not blocks:
            self.docs_emptied += 1
            return None
        return doc if len(blocks) == 1 and blocks[0] is doc.text else Document(doc.name, "".join(blocks))


def dedup_documents(docs: list[Document]) -> tuple[list[Document], int, int]:
    """Keep the first of each exactly repeated document; returns (kept, documents removed, bytes removed)."""
    dedup = ExactDedup(1)
    kept = [d for d in docs if dedup.document(d) is not None]
    return kept, dedup.docs_removed, dedup.doc_bytes_removed


def dedup_paragraphs(docs: list[Document], min_bytes: int) -> tuple[list[Document], int, int, int]:
    """Drop every repeat of a paragraph of at least min_bytes seen earlier in corpus order.

    Returns (kept documents, paragraphs removed, bytes removed, documents left empty and dropped).
    """
    dedup = ExactDedup(min_bytes)
    kept = [k for d in docs if (k := dedup.paragraphs_of(d)) is not None]
    return kept, dedup.paragraphs_removed, dedup.paragraph_bytes_removed, dedup.docs_emptied


def compression_ratio(text: str) -> float:
    """Raw bytes over zlib level-6 bytes: about 2.5-3.5 for prose, higher for repetitive text."""
    raw = text.encode("utf-8")
    return len(raw) / len(zlib.compress(raw, 6)) if raw else 0.0


@dataclass
class _Counter:
    docs: int = 0
    bytes: int = 0

    def add(self, doc: Document) -> None:
        self.docs += 1
        self.bytes += doc.n_bytes


class Cleaner:
    """The whole cleaning pipeline in its fixed order, one unit at a time; `report()` says what each step did."""

    def __init__(self, opts: DataOptions, max_block: int = MAX_BLOCK_CHARS) -> None:
        self.opts, self.max_block = opts, max_block
        self.units = self.units_changed = self.raw_bytes = self.normalize_removed = self.cut_docs = 0
        self.exact = ExactDedup(opts.dedup_min_paragraph_bytes) if opts.dedup else None
        self.near = None
        if opts.dedup == "near":
            from scaling_cli.data.neardup import NearDedup

            self.near = NearDedup(opts.near_dedup_threshold)
        self.short, self.too_random, self.too_repetitive = _Counter(), _Counter(), _Counter()

    def unit(self, name: str, pieces: Iterable[str] | Iterable[bytes]) -> Iterator[Document]:
        """The cleaned documents of one unit (a file, a record) whose text arrives in pieces: strings, or
        raw bytes (decoded as UTF-8 with bad bytes replaced)."""
        cutter = DocumentCutter(name, self.opts.doc_bytes, self.max_block)
        at_start, changed = True, False
        for piece in pieces:
            if isinstance(piece, bytes):
                piece, raw_bytes, piece_changed = _clean_bytes(piece, at_start, self.opts.normalize)
                self.raw_bytes += raw_bytes
                if piece_changed:
                    changed = True
                    self.normalize_removed += raw_bytes - len(piece)
            else:
                raw_bytes = utf8_len(piece)
                self.raw_bytes += raw_bytes
                if self.opts.normalize:
                    normalized = _normalize_piece(piece, at_start)
                    if normalized is not piece and normalized != piece:
                        changed = True
                        self.normalize_removed += raw_bytes - utf8_len(normalized)
                        piece = normalized
            at_start = at_start and not piece
            yield from self._after_cut(cutter.feed(piece))
        yield from self._after_cut(cutter.finish())
        self.units += 1
        self.units_changed += changed

    def _after_cut(self, docs: list[Document]) -> Iterator[Document]:
        for doc in docs:
            self.cut_docs += 1
            kept = self._filter(doc)
            if kept is not None:
                yield kept

    def _filter(self, doc: Document) -> Document | None:
        if self.exact is not None:
            doc = self.exact.document(doc)
            doc = doc and self.exact.paragraphs_of(doc)
        if doc is not None and self.near is not None and not self.near.keep(doc.text):
            return None
        if doc is None:
            return None
        if self.opts.min_doc_bytes > 0 and doc.n_bytes < self.opts.min_doc_bytes:
            self.short.add(doc)
            return None
        lo, hi = self.opts.min_compression_ratio, self.opts.max_compression_ratio
        if lo is not None or hi is not None:
            ratio = compression_ratio(doc.text)
            if lo is not None and ratio < lo:
                self.too_random.add(doc)
                return None
            if hi is not None and ratio > hi:
                self.too_repetitive.add(doc)
                return None
        return doc

    def report(self) -> CleanReport:
        report, opts = CleanReport(), self.opts
        if opts.normalize:
            report.add("normalize", True, files_changed=self.units_changed, bytes_removed=self.normalize_removed)
        else:
            report.add("normalize", False)
        at_lines = {} if self.max_block == MAX_BLOCK_CHARS else {"cut_at_lines_over_bytes": self.max_block}
        report.add("cut", True, files=self.units, documents=self.cut_docs, doc_bytes=opts.doc_bytes, **at_lines)
        self._dedup_steps(report)
        if opts.min_doc_bytes > 0:
            report.add(
                "min_doc_bytes",
                True,
                threshold=opts.min_doc_bytes,
                docs_removed=self.short.docs,
                bytes_removed=self.short.bytes,
            )
        else:
            report.add("min_doc_bytes", False)
        lo, hi = opts.min_compression_ratio, opts.max_compression_ratio
        if lo is not None or hi is not None:
            report.add(
                "compression_ratio",
                True,
                band=[lo, hi],
                too_random=self.too_random.docs,
                too_repetitive=self.too_repetitive.docs,
                docs_removed=self.too_random.docs + self.too_repetitive.docs,
                bytes_removed=self.too_random.bytes + self.too_repetitive.bytes,
            )
        else:
            report.add("compression_ratio", False)
        return report

    def _dedup_steps(self, report: CleanReport) -> None:
        exact = self.exact
        if exact is None:
            report.add("dedup_documents", False)
            report.add("dedup_paragraphs", False)
        else:
            report.add("dedup_documents", True, docs_removed=exact.docs_removed, bytes_removed=exact.doc_bytes_removed)
            report.add(
                "dedup_paragraphs",
                True,
                paragraphs_removed=exact.paragraphs_removed,
                bytes_removed=exact.paragraph_bytes_removed,
                docs_removed=exact.docs_emptied,
                min_paragraph_bytes=self.opts.dedup_min_paragraph_bytes,
            )
        if self.near is None:
            report.add("dedup_near", False)
        else:
            report.add("dedup_near", True, **self.near.summary())


def clean_corpus(units: list[tuple[str, str]], opts: DataOptions) -> tuple[list[Document], CleanReport]:
    """Clean whole units held in memory (the streaming Cleaner on one piece per unit)."""
    cleaner = Cleaner(opts)
    docs = [doc for name, text in units for doc in cleaner.unit(name, [text])]
    return docs, cleaner.report()
