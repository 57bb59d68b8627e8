"""Write files atomically: a reader of the target sees its old content or its new content, never a partial file.

Every writer here follows one recipe: create a temporary file with a unique name in the target's own
directory (so the rename stays on one filesystem), write it, flush and fsync it, `os.replace` it over the
target, then fsync the directory. Two processes writing the same target at once both succeed; the target
ends up holding one of the two complete contents, and neither leaves its temporary file behind.

Directory fsync policy: the directory is fsynced after every rename, so that once a writer returns, the new
name survives a power loss (POSIX makes a rename durable only when its directory entry is flushed). Where a
directory cannot be opened or fsynced (Windows, some network filesystems answer EINVAL), that step is
skipped: the write stays atomic, only its durability across a power cut is weaker.

New files get mode 0o666 less the umask, as `open(path, "w")` would give them (not mkstemp's 0o600).
Temporary names are `.<target name>.<random>.tmp<target suffix>`: hidden, and keeping the target's
suffix so writers that choose a format by extension (matplotlib's savefig) still see it.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO


def write_bytes(path: str | Path, data: bytes) -> None:
    """Replace `path` with `data` atomically."""
    write_stream(path, lambda handle: handle.write(data))


def write_text(path: str | Path, text: str, encoding: str = "utf-8") -> None:
    """Replace `path` with `text` atomically."""
    write_bytes(path, text.encode(encoding))


def write_json(path: str | Path, obj: Any, indent: int | None = 1) -> None:
    """Replace `path` with `obj` as JSON atomically; numpy scalars are written as plain numbers."""
    write_bytes(path, json.dumps(obj, indent=indent, default=_json_default).encode())


def write_stream(path: str | Path, write: Callable[[BinaryIO], Any]) -> None:
    """Replace `path` with what `write(handle)` writes to a binary file handle (torch.save, to_parquet, savefig)."""
    path = Path(path)
    tmp = _create_temp(path)
    try:
        with open(tmp, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        _publish(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_via_path(path: str | Path, write: Callable[[Path], Any]) -> None:
    """Replace `path` with the file `write(temp_path)` creates, for writers that only take a file name."""
    path = Path(path)
    tmp = _create_temp(path)
    try:
        write(tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        _publish(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def fsync_directory(directory: str | Path) -> None:
    """Flush a directory's entries to disk; skipped where the platform or filesystem does not allow it."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _create_temp(path: Path) -> Path:
    """An empty new file beside `path`, created exclusively with mode 0o666 less the umask."""
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp{path.suffix}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp


def _publish(tmp: Path, path: Path) -> None:
    os.replace(tmp, path)
    fsync_directory(path.parent)


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
