"""A prepared data set named by its identity rather than by a path, so a worker on any machine can find it.

The driver prepares each data set once and hands workers a `DataRef`: the inputs that build it (source,
options, tokenizer), its directory name in any cache, and its identity (the cleaned text's sha256 and every
shard's sha256 from the manifest). A worker resolves the ref against its own cache (`SCALE_CACHE`): it uses
the prepared directory there when its identity matches; otherwise it writes the files the driver shipped
through the executor (Ray's object store), or, when nothing was shipped, prepares the data set itself.
Whatever the route, the shards are read back and checked against the identity before training starts, so a
machine whose source differs (another Python's standard library, an edited local file) stops with a DataError
instead of training on other data.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from filelock import FileLock

from scaling_cli.data import DataOptions, open_prepared, prepare
from scaling_cli.errors import DataError

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class DataRef:
    """What a worker needs to get and verify one prepared data set; picklable."""

    dataset: str
    options: DataOptions
    tokenizer: str
    vocab_size: int | None
    dirname: str
    text_sha256: str
    shard_sha256: tuple[str, ...]
    shipped: Any = None  # a handle whose .fetch() gives {file name: bytes} of the prepared directory, or None

    @property
    def identity(self) -> str:
        """One hash of the data's content: the same on every machine that holds the same data."""
        blob = json.dumps([self.text_sha256, list(self.shard_sha256)])
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def ref_for(dataset: str, prepared: Any, options: DataOptions, tokenizer: str, vocab_size: int | None) -> DataRef:
    """The ref of a data set the driver has prepared."""
    manifest = prepared.manifest
    return DataRef(
        dataset=dataset,
        options=options,
        tokenizer=tokenizer,
        vocab_size=vocab_size,
        dirname=prepared.path.name,
        text_sha256=manifest["text_sha256"],
        shard_sha256=tuple(shard["sha256"] for shard in manifest["shards"]),
    )


def directory_files(path: Path) -> dict[str, bytes]:
    """Every file of a prepared directory (manifest, shards, tokenizer), to ship to another machine."""
    return {item.name: item.read_bytes() for item in sorted(Path(path).iterdir()) if item.is_file()}


def with_shipment(ref: DataRef, shipped: Any) -> DataRef:
    return replace(ref, shipped=shipped)


def resolve(ref: DataRef, cache: Path | None = None):
    """The verified PreparedData for `ref` in this machine's cache, fetched or prepared when missing."""
    from scaling_cli.data.sources import cache_root

    root = (Path(cache) if cache is not None else cache_root()) / "prepared"
    target = root / ref.dirname
    if not _matches(target, ref):
        if ref.shipped is not None:
            _receive(ref, root, target)
        else:
            target = prepare(ref.dataset, ref.options, ref.tokenizer, ref.vocab_size, cache_dir=root.parent).path
    data = open_prepared(target)
    _verify(data, ref)
    return data


def _matches(path: Path, ref: DataRef) -> bool:
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    return _manifest_identity(manifest) == (ref.text_sha256, ref.shard_sha256)


def _manifest_identity(manifest: dict) -> tuple[str, tuple[str, ...]]:
    return manifest.get("text_sha256", ""), tuple(shard.get("sha256", "") for shard in manifest.get("shards", []))


def _receive(ref: DataRef, root: Path, target: Path) -> None:
    """Write the shipped files into this cache: built beside the target and renamed in under a lock."""
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if _matches(target, ref):
            return
        files = ref.shipped.fetch()
        staging = Path(tempfile.mkdtemp(prefix=f".{ref.dirname}.", dir=root))
        try:
            staging.chmod(0o755)  # mkdtemp makes it private; a shared cache should stay readable
            for name, blob in files.items():
                (staging / name).write_bytes(blob)
            if target.exists():
                shutil.rmtree(target)
            os.rename(staging, target)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)


def _verify(data: Any, ref: DataRef) -> None:
    """Every shard read back against its checksum, and the whole against the driver's identity."""
    where = f"{socket.gethostname()}:{data.path}"
    if _manifest_identity(data.manifest) != (ref.text_sha256, ref.shard_sha256):
        raise DataError(
            where,
            "dataset",
            f"{ref.dataset!r} prepared here differs from the driver's copy (text or shard checksums); "
            "this machine's source is not the same data",
        )
    data.train_tokens()  # each shard's sha256 is checked as it is read
    data.val_tokens()
