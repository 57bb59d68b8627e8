"""Cutting a source file into documents: at blank lines into pieces of about `doc_bytes`, from a whole
text or from a stream of pieces, with the same result either way.

Sources give whole files (a play, a module, a chapter). Files longer than `doc_bytes` are cut at blank
lines into documents of about `doc_bytes` (8 KiB by default: a scene or a few functions) so that the split
by document hash has hundreds of units even for a corpus of a few dozen plays. The cut is an exact
partition: the documents concatenate back to the source text.

A paragraph (a block between blank lines) longer than MAX_BLOCK_CHARS is cut at line boundaries instead,
and a line longer than that at character boundaries, so that a big file without blank lines (one record
per line, or raw text) still gives many documents, and memory stays bounded however long the block is.
A smaller file without blank lines is one paragraph; when the whole corpus gives fewer than 2 documents,
the build reads it again with max_block = doc_bytes (see `build`), which cuts that paragraph at lines.

The cutter works on UTF-8 bytes (sizes are in bytes, and the paragraph break is ASCII, so it never matches
inside a multi-byte character). On a stream it jumps from one document end to the next with a regex
search instead of visiting every paragraph, and falls back to visiting paragraphs near a piece's end or
an oversized block; `cut_documents` is the plain whole-text definition the stream must agree with.
"""

from __future__ import annotations

import re

_BREAK = re.compile(rb"\n(?:[ \t]*\n)+")
_BLANK_TAIL = re.compile(rb"[ \t]*")
_BLANK_LINE = re.compile(rb"[ \t]*\n")
_PARAGRAPH_BREAK = re.compile(r"(\n(?:[ \t]*\n)+)")
_WHITESPACE = (9, 10, 32)
# Large enough that no block of the built-in corpora reaches it (the largest, pydoc_data/topics.py in the
# standard library, is 0.76 MB), so their documents stay what they were.
MAX_BLOCK_CHARS = 1 << 20


class Document:
    """A named document, held as text or as UTF-8 bytes (each made from the other when first asked for)."""

    __slots__ = ("name", "_text", "_data")

    def __init__(self, name: str, text: str | None = None, data: bytes | None = None) -> None:
        self.name, self._text, self._data = name, text, data

    @property
    def text(self) -> str:
        if self._text is None:
            self._text = self._data.decode("utf-8")
        return self._text

    @property
    def data(self) -> bytes:
        if self._data is None:
            self._data = self._text.encode("utf-8")
        return self._data

    @property
    def n_bytes(self) -> int:
        return len(self.data)

    def __repr__(self) -> str:
        return f"Document({self.name!r}, {self.n_bytes} bytes)"


def split_paragraphs(text: str) -> list[str]:
    """Blank-line-separated blocks, each keeping the separator that follows it, so "".join restores text."""
    parts = _PARAGRAPH_BREAK.split(text)
    blocks = [parts[i] + (parts[i + 1] if i + 1 < len(parts) else "") for i in range(0, len(parts), 2)]
    return [b for b in blocks if b]


def utf8_len(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8"))


def _split_blocks(data: bytes) -> list[bytes]:
    blocks, start = [], 0
    for match in _BREAK.finditer(data):
        blocks.append(data[start : match.end()])
        start = match.end()
    return blocks + ([data[start:]] if start < len(data) else [])


def _char_boundary(data: bytes, pos: int, floor: int) -> int:
    """pos, moved back to the start of the UTF-8 character it falls in (never to floor or before)."""
    while pos > floor + 1 and 0x80 <= data[pos] < 0xC0:
        pos -= 1
    return pos


def _fragments(line: bytes, doc_bytes: int, max_block: int) -> list[bytes]:
    """The line itself, or when longer than max_block bytes, pieces of about doc_bytes at character ends."""
    if len(line) <= max_block:
        return [line]
    pieces, start = [], 0
    while len(line) - start > doc_bytes:
        end = _char_boundary(line, start + doc_bytes, start)
        pieces.append(line[start:end])
        start = end
    return pieces + [line[start:]]


def _lines(data: bytes) -> list[bytes]:
    parts = data.split(b"\n")
    lines = [p + b"\n" for p in parts[:-1]]
    return lines + ([parts[-1]] if parts[-1] else [])


def cut_block(block: bytes, doc_bytes: int, max_block: int) -> list[bytes]:
    """An oversized block (more than max_block bytes between blank lines) as pieces of whole lines of at
    least doc_bytes each (the last may be shorter)."""
    pieces, current, size = [], [], 0
    for line in _lines(block):
        for part in _fragments(line, doc_bytes, max_block):
            current.append(part)
            size += len(part)
            if size >= doc_bytes:
                pieces.append(b"".join(current))
                current, size = [], 0
    return pieces + ([b"".join(current)] if current else [])


def cut_documents(name: str, text: str, doc_bytes: int, max_block: int = MAX_BLOCK_CHARS) -> list[Document]:
    """Cut one source file at blank lines into documents of at least doc_bytes (a short tail joins the last).

    A file of at most doc_bytes characters is one document. A block without blank lines longer than
    max_block bytes is first cut at line boundaries (a line longer than that at character boundaries).
    """
    if len(text) <= doc_bytes:
        return [Document(name, text)] if text else []
    blocks = []
    for block in _split_blocks(text.encode("utf-8")):
        blocks.extend(cut_block(block, doc_bytes, max_block) if len(block) > max_block else [block])
    docs, current, size = [], [], 0
    for block in blocks:
        current.append(block)
        size += len(block)
        if size >= doc_bytes:
            docs.append(b"".join(current))
            current, size = [], 0
    if current:
        tail = b"".join(current)
        if docs and size < doc_bytes // 2:
            docs[-1] += tail
        else:
            docs.append(tail)
    return [Document(f"{name}#{i}", data=d) for i, d in enumerate(docs)]


class DocumentCutter:
    """cut_documents on a text that arrives in pieces: the same documents whatever the pieces are.

    Documents are handed out one behind, because a short tail at the end of the file joins the last one.
    """

    def __init__(self, name: str, doc_bytes: int, max_block: int = MAX_BLOCK_CHARS) -> None:
        self.name, self.doc_bytes, self.max_block = name, doc_bytes, max_block
        self.head: list[bytes] = []
        self.head_chars = 0
        self.big = False
        self.carry = b""
        self.oversized: _OversizedBlock | None = None
        self.current: list[bytes] = []
        self.size = 0
        self.pending: bytes | None = None
        self.count = 0

    def feed(self, text: str | bytes) -> list[Document]:
        """Take the next piece: text, or its UTF-8 bytes."""
        out: list[Document] = []
        data = text.encode("utf-8") if isinstance(text, str) else text
        if not self.big:  # a file of at most doc_bytes characters stays one document
            self.head.append(data)
            self.head_chars += len(text) if isinstance(text, str) or text.isascii() else len(text.decode("utf-8"))
            if self.head_chars <= self.doc_bytes:
                return out
            self.big, data, self.head = True, b"".join(self.head), []
        self._scan(data, out, final=False)
        return out

    def finish(self) -> list[Document]:
        if not self.big:
            data = b"".join(self.head)
            return [Document(self.name, data=data)] if data else []
        out: list[Document] = []
        self._scan(b"", out, final=True)
        tail = b"".join(self.current)
        if tail and self.pending is not None and self.size < self.doc_bytes // 2:
            self.pending, tail = self.pending + tail, b""
        if self.pending is not None:
            self._emit(self.pending, out)
        if tail:
            self._emit(tail, out)
        return out

    def _emit(self, data: bytes, out: list[Document]) -> None:
        out.append(Document(f"{self.name}#{self.count}", data=data))
        self.count += 1

    def _scan(self, buf: bytes, out: list[Document], final: bool) -> None:
        buf = self.carry + buf if self.carry else buf
        self.carry = b""
        while True:
            if self.oversized is not None:
                rest = self.oversized.feed(buf, final)
                for piece in self.oversized.take():
                    self._block(piece, out)
                if rest is None:
                    return
                self.oversized, buf = None, rest
            pos, stop_at = self._jump(buf, out, final)
            buf = buf[pos:] if pos else buf
            rest = self._walk(buf, out, final, None if stop_at is None else stop_at - pos)
            if rest is None:
                return
            buf = rest

    def _jump(self, buf: bytes, out: list[Document], final: bool) -> tuple[int, int | None]:
        """Take whole documents from buf by searching for the first block end past each document's size.

        Returns where it stopped, and the end of the next document when that may hold an oversized block
        (then `_walk` goes through it block by block)."""
        pos = 0
        while True:
            target = pos + self.doc_bytes - self.size
            if target > len(buf):
                return pos, None
            search = target
            while search > pos and buf[search - 1] in _WHITESPACE:
                search -= 1  # a break that starts before the target and ends past it
            match = _BREAK.search(buf, search)
            while match is not None and match.end() < target:
                match = _BREAK.search(buf, match.end())
            if match is None:
                return pos, None
            end = match.end()
            if not final and _BLANK_TAIL.fullmatch(buf, end):
                return pos, None  # the break may continue in the next piece
            if end - pos > self.max_block:
                return pos, end
            self.current.append(buf[pos:end])
            self._flush(out)
            pos = end

    def _walk(self, buf: bytes, out: list[Document], final: bool, stop_at: int | None) -> bytes | None:
        """Go through buf block by block: up to stop_at (then return the rest), or to the end, where the
        incomplete last block is carried (None is returned) or starts an oversized block (returned)."""
        start, known = 0, None
        for match in _BREAK.finditer(buf):
            end = match.end()
            if not final and _BLANK_TAIL.fullmatch(buf, end):
                known = end - start  # the separator may continue in the next piece
                break
            self._whole_block(buf[start:end], out)
            start = end
            if stop_at is not None and end >= stop_at:
                return buf[end:]
        rest = buf[start:]
        if final:
            if rest:
                self._whole_block(rest, out)
            return None
        if (known if known is not None else len(rest)) <= self.max_block:
            self.carry = rest
            return None
        self.oversized = _OversizedBlock(self.doc_bytes, self.max_block)
        return rest

    def _whole_block(self, block: bytes, out: list[Document]) -> None:
        if len(block) <= self.max_block:
            self._block(block, out)
        else:
            for piece in cut_block(block, self.doc_bytes, self.max_block):
                self._block(piece, out)

    def _block(self, block: bytes, out: list[Document]) -> None:
        self.current.append(block)
        self.size += len(block)
        if self.size >= self.doc_bytes:
            self._flush(out)

    def _flush(self, out: list[Document]) -> None:
        if self.pending is not None:
            self._emit(self.pending, out)
        self.pending = self.current[0] if len(self.current) == 1 else b"".join(self.current)
        self.current, self.size = [], 0


class _OversizedBlock:
    """cut_block on a block that arrives in pieces; finds the block's end by its lines: the block ends
    before the first non-blank line that follows a blank line (a line of spaces and tabs only)."""

    def __init__(self, doc_bytes: int, max_block: int) -> None:
        self.doc_bytes, self.max_block = doc_bytes, max_block
        self.partial = b""
        self.partial_is_huge = False
        self.lines_seen = 0
        self.previous_blank = False
        self.current: list[bytes] = []
        self.size = 0
        self.pieces: list[bytes] = []

    def take(self) -> list[bytes]:
        pieces, self.pieces = self.pieces, []
        return pieces

    def feed(self, buf: bytes, final: bool) -> bytes | None:
        """Consume the block's part of buf; the bytes after the block's end, or None if it goes on."""
        text = self.partial + buf
        self.partial = b""
        pos = 0
        while True:
            newline = text.find(b"\n", pos)
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
            return b""
        if not self.partial_is_huge and len(rest) > self.max_block and self._ends_before(rest):
            self._close()  # the huge line starts the next block
            return rest
        if self.partial_is_huge or len(rest) > self.max_block:  # a huge line: give out whole fragments now
            self.partial_is_huge = True
            start = 0
            while len(rest) - start > self.doc_bytes:
                end = _char_boundary(rest, start + self.doc_bytes, start)
                self._add(rest[start:end])
                start = end
            rest = rest[start:]
        self.partial = rest
        return None

    def _ends_before(self, line: bytes) -> bool:
        blank = _BLANK_LINE.fullmatch(line) is not None
        return not blank and self.previous_blank and self.lines_seen >= 2

    def _line(self, line: bytes) -> None:
        if self.partial_is_huge:
            for part in _fragments(line, self.doc_bytes, 0):
                self._add(part)
        else:
            for part in _fragments(line, self.doc_bytes, self.max_block):
                self._add(part)
        self.partial_is_huge = False
        self.previous_blank = _BLANK_LINE.fullmatch(line) is not None
        self.lines_seen += 1

    def _add(self, part: bytes) -> None:
        self.current.append(part)
        self.size += len(part)
        if self.size >= self.doc_bytes:
            self.pieces.append(b"".join(self.current))
            self.current, self.size = [], 0

    def _close(self) -> None:
        if self.current:
            self.pieces.append(b"".join(self.current))
            self.current, self.size = [], 0
