"""Cutting a source file into documents: at blank lines into pieces of about `doc_bytes`, from a whole
text or from a stream of pieces, with the same result either way.

Sources give whole files (a play, a module, a chapter). Files longer than `doc_bytes` are cut at blank
lines into documents of about `doc_bytes` (8 KiB by default: a scene or a few functions) so that the split
by document hash has hundreds of units even for a corpus of a few dozen plays. The cut is an exact
partition: the documents concatenate back to the source text.

A paragraph (a block between blank lines) longer than MAX_BLOCK_CHARS is cut at line boundaries instead,
and a line longer than that at character boundaries, so that a big file without blank lines (one record
per line, or raw text) still gives many documents, and memory stays bounded however long the block is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_PARAGRAPH_BREAK = re.compile(r"(\n(?:[ \t]*\n)+)")
_BLANK_TAIL = re.compile(r"[ \t]*")
_BLANK_LINE = re.compile(r"[ \t]*\n")
# Large enough that no block of the built-in corpora reaches it (the largest, pydoc_data/topics.py in the
# standard library, is 0.76 MB), so their documents stay what they were.
MAX_BLOCK_CHARS = 1 << 20


@dataclass
class Document:
    name: str
    text: str

    @property
    def n_bytes(self) -> int:
        return len(self.text.encode("utf-8"))


def split_paragraphs(text: str) -> list[str]:
    """Blank-line-separated blocks, each keeping the separator that follows it, so "".join restores text."""
    parts = _PARAGRAPH_BREAK.split(text)
    blocks = [parts[i] + (parts[i + 1] if i + 1 < len(parts) else "") for i in range(0, len(parts), 2)]
    return [b for b in blocks if b]


def utf8_len(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8"))


def _fragments(line: str, doc_bytes: int, max_block: int) -> list[str]:
    if len(line) <= max_block:
        return [line]
    return [line[i : i + doc_bytes] for i in range(0, len(line), doc_bytes)]


def _split_newlines(text: str) -> list[str]:
    parts = text.split("\n")
    lines = [p + "\n" for p in parts[:-1]]
    return lines + ([parts[-1]] if parts[-1] else [])


def cut_block(block: str, doc_bytes: int, max_block: int) -> list[str]:
    """An oversized block (a paragraph of more than max_block characters: a file without blank lines)
    as pieces of whole lines of at least doc_bytes each (the last may be shorter)."""
    pieces, current, size = [], [], 0
    for line in _split_lines(block, doc_bytes, max_block):
        current.append(line)
        size += utf8_len(line)
        if size >= doc_bytes:
            pieces.append("".join(current))
            current, size = [], 0
    if current:
        pieces.append("".join(current))
    return pieces


def _split_lines(text: str, doc_bytes: int, max_block: int) -> list[str]:
    out = []
    for line in _split_newlines(text):
        out.extend(_fragments(line, doc_bytes, max_block))
    return out


def cut_documents(name: str, text: str, doc_bytes: int, max_block: int = MAX_BLOCK_CHARS) -> list[Document]:
    """Cut one source file at blank lines into documents of at least doc_bytes (a short tail joins the last).

    A block without blank lines longer than max_block characters is first cut at line boundaries (and a
    line longer than that at character boundaries), so one huge file without blank lines still gives
    many documents. DocumentCutter does the same on a stream of pieces.
    """
    cutter = DocumentCutter(name, doc_bytes, max_block)
    return cutter.feed(text) + cutter.finish()


class DocumentCutter:
    """cut_documents on a text that arrives in pieces: the same documents whatever the pieces are.

    The last incomplete block is carried to the next piece; a separator that reaches the end of a piece
    may still grow, so its block is carried too. Documents are handed out one behind, because a short
    tail at the end of the file joins the last document.
    """

    def __init__(self, name: str, doc_bytes: int, max_block: int = MAX_BLOCK_CHARS) -> None:
        self.name, self.doc_bytes, self.max_block = name, doc_bytes, max_block
        self.head: list[str] = []
        self.head_chars = 0
        self.big = False
        self.carry = ""
        self.oversized: _OversizedBlock | None = None
        self.current: list[str] = []
        self.size = 0
        self.pending: str | None = None
        self.count = 0

    def feed(self, text: str) -> list[Document]:
        out: list[Document] = []
        if not self.big:  # a file of at most doc_bytes characters stays one document
            self.head.append(text)
            self.head_chars += len(text)
            if self.head_chars <= self.doc_bytes:
                return out
            self.big, text, self.head = True, "".join(self.head), []
        self._scan(text, out, final=False)
        return out

    def finish(self) -> list[Document]:
        if not self.big:
            text = "".join(self.head)
            return [Document(self.name, text)] if text else []
        out: list[Document] = []
        self._scan("", out, final=True)
        tail = "".join(self.current)
        if tail and self.pending is not None and self.size < self.doc_bytes // 2:
            self.pending, tail = self.pending + tail, ""
        if self.pending is not None:
            self._emit(self.pending, out)
        if tail:
            self._emit(tail, out)
        return out

    def _emit(self, text: str, out: list[Document]) -> None:
        out.append(Document(f"{self.name}#{self.count}", text))
        self.count += 1

    def _scan(self, buf: str, out: list[Document], final: bool) -> None:
        buf = self.carry + buf
        self.carry = ""
        while True:
            if self.oversized is not None:
                rest = self.oversized.feed(buf, final)
                for piece in self.oversized.take():
                    self._block(piece, out)
                if rest is None:
                    return
                self.oversized, buf = None, rest
            start, known = 0, None
            for match in _PARAGRAPH_BREAK.finditer(buf):
                end = match.end()
                if not final and _BLANK_TAIL.fullmatch(buf, end):
                    known = end - start  # the separator may continue in the next piece
                    break
                self._whole_block(buf[start:end], out)
                start = end
            rest = buf[start:]
            if final:
                if rest:
                    self._whole_block(rest, out)
                return
            if (known if known is not None else len(rest)) <= self.max_block:
                self.carry = rest
                return
            self.oversized, buf = _OversizedBlock(self.doc_bytes, self.max_block), rest

    def _whole_block(self, block: str, out: list[Document]) -> None:
        if len(block) <= self.max_block:
            self._block(block, out)
        else:
            for piece in cut_block(block, self.doc_bytes, self.max_block):
                self._block(piece, out)

    def _block(self, block: str, out: list[Document]) -> None:
        self.current.append(block)
        self.size += utf8_len(block)
        if self.size >= self.doc_bytes:
            if self.pending is not None:
                self._emit(self.pending, out)
            self.pending, self.current, self.size = "".join(self.current), [], 0


class _OversizedBlock:
    """cut_block on a block that arrives in pieces; finds the block's end by its lines: the block ends
    before the first non-blank line that follows a blank line (a line of spaces and tabs only)."""

    def __init__(self, doc_bytes: int, max_block: int) -> None:
        self.doc_bytes, self.max_block = doc_bytes, max_block
        self.partial = ""
        self.partial_is_huge = False
        self.lines_seen = 0
        self.previous_blank = False
        self.current: list[str] = []
        self.size = 0
        self.pieces: list[str] = []

    def take(self) -> list[str]:
        pieces, self.pieces = self.pieces, []
        return pieces

    def feed(self, buf: str, final: bool) -> str | None:
        """Consume the block's part of buf; the text after the block's end, or None if it goes on."""
        text = self.partial + buf
        self.partial = ""
        pos = 0
        while True:
            newline = text.find("\n", pos)
            if newline < 0:
                break
            line = text[pos : newline + 1]
            if self._ends_before(line):
                self._close()
                return text[pos:]
            self._line(line)
            pos = newline + 1
        rest = text[pos:]
        if final:
            if rest and self._ends_before(rest):
                self._close()
                return rest
            if rest:
                self._line(rest)
            self._close()
            return ""
        self.partial = rest
        if not self.partial_is_huge and len(rest) > self.max_block and self._ends_before(rest):
            self._close()  # the huge line starts the next block
            self.partial = ""
            return rest
        if self.partial_is_huge or len(rest) > self.max_block:  # a huge line: give out whole fragments now
            self.partial_is_huge = True
            whole = len(rest) - len(rest) % self.doc_bytes
            for i in range(0, whole, self.doc_bytes):
                self._add(rest[i : i + self.doc_bytes])
            self.partial = rest[whole:]
        return None

    def _ends_before(self, line: str) -> bool:
        blank = _BLANK_LINE.fullmatch(line) is not None
        return not blank and self.previous_blank and self.lines_seen >= 2

    def _line(self, line: str) -> None:
        if self.partial_is_huge or len(line) > self.max_block:
            for i in range(0, len(line), self.doc_bytes):
                self._add(line[i : i + self.doc_bytes])
        else:
            self._add(line)
        self.partial_is_huge = False
        self.previous_blank = _BLANK_LINE.fullmatch(line) is not None
        self.lines_seen += 1

    def _add(self, line: str) -> None:
        self.current.append(line)
        self.size += utf8_len(line)
        if self.size >= self.doc_bytes:
            self.pieces.append("".join(self.current))
            self.current, self.size = [], 0

    def _close(self) -> None:
        if self.current:
            self.pieces.append("".join(self.current))
            self.current, self.size = [], 0
