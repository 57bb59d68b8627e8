"""Local corpus files in the formats users have, read as a stream so that no file is ever held whole.

Formats, by file name: `.jsonl` / `.ndjson` (one JSON object per line, its `text_field` is a unit),
`.parquet` (each row's `text_column` is a unit), anything else is plain text (the whole file is one unit,
delivered in pieces). Each may end in `.gz`, `.zst`, `.xz` or `.bz2`. Text whose first 8 KiB hold a NUL
byte is taken for binary and skipped (counted).

A plain-text unit arrives as raw bytes in pieces of about `chunk_bytes` that end right after a newline,
so that decoding and normalising piece by piece (NFC, CRLF) gives exactly what doing it to the whole file
would. A line longer than a piece is cut just before an ASCII character, which ends any UTF-8 sequence and
never composes with what precedes it.

Malformed records (a line that is not a JSON object, a missing or non-string text field, a null parquet
value) raise DataError naming the file and the line or row, unless `skip_bad_records` is set: then they
are skipped and counted.
"""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from scaling_cli.errors import DataError

COMPRESSIONS = (".gz", ".zst", ".xz", ".bz2")
JSONL_SUFFIXES = (".jsonl", ".ndjson")
PARQUET_SUFFIXES = (".parquet",)
BINARY_SNIFF_BYTES = 8192
PARQUET_BATCH_ROWS = 1024
SKIP_HINT = "set skip_bad_records = true (or --skip-bad-records) to skip and count such records"


@dataclass
class Unit:
    """One source unit (a text file, a JSON record, a parquet row): its name and its text in pieces (raw
    UTF-8 bytes for text files, strings for records)."""

    name: str
    pieces: Iterator[bytes] | list[str]


@dataclass
class ReadReport:
    """What reading found besides text: files by format, binary files skipped, bad records skipped."""

    formats: dict[str, int] = field(default_factory=dict)
    binary_files_skipped: int = 0
    bad_records_skipped: int = 0
    first_bad_record: str | None = None

    def bad_record(self, where: str, problem: str, skip: bool, field_name: str) -> None:
        if not skip:
            raise DataError(where, field_name, f"{problem}; {SKIP_HINT}")
        self.bad_records_skipped += 1
        if self.first_bad_record is None:
            self.first_bad_record = f"{where}: {problem}"


def split_name(path: Path) -> tuple[str, str | None]:
    """(format, compression) of a file from its name: format is text, jsonl or parquet."""
    name = path.name.lower()
    compression = next((c for c in COMPRESSIONS if name.endswith(c)), None)
    if compression:
        name = name[: -len(compression)]
    if name.endswith(JSONL_SUFFIXES):
        return "jsonl", compression
    if name.endswith(PARQUET_SUFFIXES):
        return "parquet", compression
    return "text", compression


def open_binary(path: Path) -> BinaryIO:
    """The file's decompressed bytes as a buffered stream."""
    _, compression = split_name(path)
    try:
        if compression == ".gz":
            return gzip.open(path, "rb")
        if compression == ".xz":
            return lzma.open(path, "rb")
        if compression == ".bz2":
            return bz2.open(path, "rb")
        if compression == ".zst":
            import zstandard

            raw = open(path, "rb")  # noqa: SIM115 - closed with the reader (closefd)
            return io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(raw, closefd=True), 1 << 20)
        return open(path, "rb")  # noqa: SIM115 - the caller closes it
    except OSError as exc:
        raise DataError(str(path), "file", f"cannot open ({exc.strerror or exc})") from None


def _read(stream: BinaryIO, size: int, path: Path) -> bytes:
    try:
        return stream.read(size)
    except (OSError, EOFError, lzma.LZMAError, ValueError) as exc:
        raise DataError(str(path), "file", f"cannot read or decompress ({exc})") from None
    except Exception as exc:  # zstandard raises its own ZstdError
        if type(exc).__name__ == "ZstdError":
            raise DataError(str(path), "file", f"cannot decompress ({exc})") from None
        raise


def _safe_cut(data: bytes) -> int:
    """Where to end a piece of a very long line: before its last ASCII byte that does not follow a CR (an
    ASCII character ends any UTF-8 sequence and never composes with what precedes it); 0 when none."""
    for i in range(len(data) - 1, 0, -1):
        if data[i] < 0x80 and data[i - 1] != 0x0D:
            return i
    return 0


def byte_pieces(stream: BinaryIO, path: Path, chunk_bytes: int, first: bytes = b"") -> Iterator[bytes]:
    """The file's bytes in pieces of about chunk_bytes, each ending after a newline (or, in a line longer
    than two pieces, before an ASCII byte), so that decoding and normalising piece by piece gives what
    doing it to the whole file would."""
    parts: list[bytes] = []
    size = 0
    data = first or _read(stream, chunk_bytes, path)
    while data:
        parts.append(data)
        size += len(data)
        if size >= chunk_bytes:
            newline = data.rfind(b"\n")
            if newline >= 0:  # the usual case: cut after the last newline of what was just read
                yield b"".join(parts[:-1]) + data[: newline + 1]
                parts = [data[newline + 1 :]]
                size = len(parts[0])
            elif size >= 2 * chunk_bytes:  # a very long line
                whole = b"".join(parts)
                cut = _safe_cut(whole)
                if cut:
                    yield whole[:cut]
                    parts, size = [whole[cut:]], len(whole) - cut
                else:
                    parts = [whole]
        data = _read(stream, max(chunk_bytes // 4, 1), path)
    last = b"".join(parts)
    if last:
        yield last


def _text_unit(path: Path, chunk_bytes: int, report: ReadReport) -> Iterator[Unit]:
    stream = open_binary(path)
    try:
        head = _read(stream, BINARY_SNIFF_BYTES, path)
        if b"\0" in head:
            report.binary_files_skipped += 1
            return
        report.formats["text"] = report.formats.get("text", 0) + 1
        yield Unit(str(path), byte_pieces(stream, path, chunk_bytes, head))
    finally:
        stream.close()


def _record_text(line: bytes, where: str, text_field: str) -> tuple[str | None, str]:
    """(text, problem): the record's text field, or None and why the line is not a usable record."""
    try:
        record = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return None, f"malformed JSON ({exc.msg if hasattr(exc, 'msg') else exc})"
    if not isinstance(record, dict):
        return None, f"expected a JSON object, got {type(record).__name__}"
    if text_field not in record:
        keys = ", ".join(sorted(record)[:8]) or "none"
        return None, f"no field {text_field!r} (keys: {keys}); choose another with text_field"
    text = record[text_field]
    if not isinstance(text, str):
        return None, f"field {text_field!r} is {type(text).__name__}, not a string"
    return text, ""


def _jsonl_units(path: Path, text_field: str, skip: bool, report: ReadReport) -> Iterator[Unit]:
    report.formats["jsonl"] = report.formats.get("jsonl", 0) + 1
    with open_binary(path) as stream:
        for lineno, line in enumerate(_lines(stream, path), start=1):
            if not line.strip():
                continue
            text, problem = _record_text(line, f"{path}:{lineno}", text_field)
            if text is None:
                report.bad_record(f"{path}:{lineno}", problem, skip, "jsonl")
            else:
                yield Unit(f"{path}:{lineno}", [text])


def _lines(stream: BinaryIO, path: Path) -> Iterator[bytes]:
    try:
        yield from stream
    except (OSError, EOFError, lzma.LZMAError) as exc:
        raise DataError(str(path), "file", f"cannot read or decompress ({exc})") from None


def _parquet_units(path: Path, column: str, skip: bool, report: ReadReport) -> Iterator[Unit]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    report.formats["parquet"] = report.formats.get("parquet", 0) + 1
    with _seekable(path) as local:
        try:
            parquet = pq.ParquetFile(local)
        except (pa.ArrowException, OSError) as exc:
            raise DataError(str(path), "parquet", f"not a readable parquet file ({exc})") from None
        schema = parquet.schema_arrow
        if column not in schema.names:
            raise DataError(str(path), "text_column", f"no column {column!r} (columns: {', '.join(schema.names[:8])})")
        kind = schema.field(column).type
        if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
            raise DataError(str(path), "text_column", f"column {column!r} is {kind}, not text")
        row = 0
        for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=[column]):
            for text in batch.column(0).to_pylist():
                row += 1
                if text is None:
                    report.bad_record(f"{path}:row {row}", f"{column!r} is null", skip, "parquet")
                else:
                    yield Unit(f"{path}:row {row}", [text])


class _seekable:
    """A parquet file as a local seekable path: itself, or decompressed into a temporary file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.temp: tempfile._TemporaryFileWrapper | None = None

    def __enter__(self) -> str:
        if split_name(self.path)[1] is None:
            return str(self.path)
        self.temp = tempfile.NamedTemporaryFile(suffix=".parquet")  # noqa: SIM115 - closed in __exit__
        with open_binary(self.path) as stream:
            shutil.copyfileobj(stream, self.temp, 1 << 20)
        self.temp.flush()
        return self.temp.name

    def __exit__(self, *exc) -> None:
        if self.temp is not None:
            self.temp.close()


def read_units(
    files: list[Path], chunk_bytes: int, report: ReadReport, *, text_field: str, text_column: str, skip_bad: bool
) -> Iterator[Unit]:
    """Every unit of every file, in file order then record order."""
    for path in files:
        kind, _ = split_name(path)
        if kind == "jsonl":
            yield from _jsonl_units(path, text_field, skip_bad, report)
        elif kind == "parquet":
            yield from _parquet_units(path, text_column, skip_bad, report)
        else:
            yield from _text_unit(path, chunk_bytes, report)
