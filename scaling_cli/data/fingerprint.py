"""Content fingerprints of local files: the sha256 of their bytes, cached per file so unchanged files are not re-read.

A local data set is named by what it contains, not by where it lies or when it was touched: a file's
fingerprint is the sha256 of its bytes, and a directory's (or a glob's) is the sha256 over each file's
path relative to the source and that file's sha256. The same bytes at another path or with another
modification time give the same fingerprint; one changed byte gives another, whatever its size and times.

Reading 10 GB on every plan would cost minutes, so each file's sha256 is kept in `<cache>/file-hashes.json`
under its resolved path, with the file's state when it was read: size, mtime, ctime and inode. The entry is
used only while all four still match. The ctime is what catches an edit whose size and mtime were put
back (`os.utime`, `cp -p`, `rsync -t`, a tar extract): no call can set it. A file replaced by another gets
a new inode. A file changed within the filesystem's timestamp granularity of being read could keep its
state, so such a "racy" read is not cached. The cache is written atomically and is only a shortcut: when
it is missing, corrupt or cannot be written, files are hashed again.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import astuple, dataclass
from pathlib import Path

from filelock import FileLock, Timeout

from scaling_cli import atomic
from scaling_cli.errors import DataError

CACHE_FILE = "file-hashes.json"
CACHE_VERSION = 1
HASH_THREADS = max(1, min(4, os.cpu_count() or 1))  # hashlib releases the GIL on large buffers
RACY_NS_FINE = 100_000_000  # nanosecond timestamps: the kernel's coarse clock lags by at most a few ms
RACY_NS_COARSE = 2_000_000_000  # whole-second timestamps (and FAT's two seconds)
LOCK_SECONDS = 10


@dataclass(frozen=True)
class FileState:
    """What changes when a file's content can have changed: any write moves ctime, a replacement the inode."""

    size: int
    mtime_ns: int
    ctime_ns: int
    inode: int

    @classmethod
    def of(cls, path: Path) -> FileState:
        stat = os.stat(path)
        return cls(stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino)

    def settled_before(self, read_started_ns: int) -> bool:
        """Whether a later write is sure to move ctime past what this state recorded."""
        fine = self.ctime_ns % 1_000_000_000 or self.mtime_ns % 1_000_000_000
        return read_started_ns - self.ctime_ns > (RACY_NS_FINE if fine else RACY_NS_COARSE)


@dataclass(frozen=True)
class Fingerprint:
    """A source's content sha256 and how it was got: files read now and files whose hash came from the cache."""

    sha256: str
    files: int
    hashed: int
    cached: int
    bytes_hashed: int


def fingerprint_files(files: list[Path], root: Path | None, cache_dir: Path) -> Fingerprint:
    """The sha256 of one file's bytes (`root` None), or over each file's path relative to `root` and its sha256."""
    hashes, hashed, bytes_hashed = file_hashes(files, cache_dir)
    if root is None:
        [only] = hashes
        digest = only
    else:
        combined = hashlib.sha256()
        for path, sha in zip(files, hashes):
            relative = Path(os.path.relpath(path, root)).as_posix()
            combined.update(relative.encode("utf-8", "surrogateescape") + b"\0" + sha.encode() + b"\n")
        digest = combined.hexdigest()
    return Fingerprint(digest, len(files), hashed, len(files) - hashed, bytes_hashed)


def file_hashes(files: list[Path], cache_dir: Path) -> tuple[list[str], int, int]:
    """(each file's sha256, how many files were read, how many bytes were read): cached ones are not read."""
    cache_path = Path(cache_dir) / CACHE_FILE
    cached = _load(cache_path)
    keys = [str(Path(p).resolve()) for p in files]
    states = [_state(p) for p in files]
    hashes: list[str | None] = [_lookup(cached, key, state) for key, state in zip(keys, states)]
    missing = [i for i, sha in enumerate(hashes) if sha is None]
    fresh: dict[str, list] = {}
    with ThreadPoolExecutor(HASH_THREADS) as pool:
        for i, (sha, state_after, started_ns) in zip(missing, pool.map(_hash_file, [files[i] for i in missing])):
            hashes[i] = sha
            if state_after == states[i] and state_after.settled_before(started_ns):
                fresh[keys[i]] = [*astuple(state_after), sha]
    if fresh:
        _store(cache_path, fresh)
    return hashes, len(missing), sum(states[i].size for i in missing)


def _state(path: Path) -> FileState:
    try:
        return FileState.of(path)
    except OSError as exc:
        raise DataError(str(path), "file", f"cannot read {path} ({exc.strerror or exc})") from None


def _hash_file(path: Path) -> tuple[str, FileState, int]:
    started_ns = time.time_ns()
    try:
        with open(path, "rb") as handle:
            sha = hashlib.file_digest(handle, "sha256").hexdigest()
    except OSError as exc:
        raise DataError(str(path), "file", f"cannot read {path} ({exc.strerror or exc})") from None
    return sha, _state(path), started_ns


def _lookup(cached: dict, key: str, state: FileState) -> str | None:
    entry = cached.get(key)
    if isinstance(entry, list) and len(entry) == 5 and entry[:4] == list(astuple(state)):
        return entry[4]
    return None


def _load(cache_path: Path) -> dict:
    """The cached entries, or none when the file is missing, unreadable or not ours."""
    try:
        content = json.loads(cache_path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(content, dict) or content.get("version") != CACHE_VERSION:
        return {}
    entries = content.get("files")
    return entries if isinstance(entries, dict) else {}


def _store(cache_path: Path, fresh: dict) -> None:
    """Merge new entries into the cache file (atomically, under a lock), dropping files that no longer exist."""
    try:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(cache_path) + ".lock", timeout=LOCK_SECONDS):
            entries = {key: entry for key, entry in _load(cache_path).items() if os.path.exists(key)}
            entries.update(fresh)
            atomic.write_json(cache_path, {"version": CACHE_VERSION, "files": entries}, indent=None)
    except (OSError, Timeout):
        pass  # an unwritable cache only costs hashing again next time
