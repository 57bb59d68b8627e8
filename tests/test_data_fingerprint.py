"""A local data set is identified by its content: the same bytes at another path or with another mtime keep the
run ids and the prepared data set, an edit that puts the size and mtime back is still seen, and a second plan
reads no unchanged file again."""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, scale_in_process

from scaling_cli.data import DataOptions, open_prepared, prepare
from scaling_cli.data.fingerprint import CACHE_FILE, FileState, fingerprint_files
from scaling_cli.data.sources import local_files
from scaling_cli.errors import DataError
from scaling_cli.plan import load_sweep

TINY = REPO / "sweeps" / "markov-tiny.toml"
OPTIONS = DataOptions(val_min_bytes=16_384)
SETTLED_S = 0.25  # a file read sooner after it changed is not cached (fingerprint.RACY_NS_FINE)


def _write_corpus(folder: Path, seed: int = 0) -> Path:
    """Three text files of word paragraphs, about 120 kB in all, last changed a moment ago."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    words = [f"w{i}" for i in range(300)]
    for name in ("a.txt", "b.txt", "sub/c.txt"):
        (folder / name).parent.mkdir(exist_ok=True)
        paragraphs = [" ".join(rng.choice(words, 30)) for _ in range(200)]
        (folder / name).write_text("\n\n".join(paragraphs))
    time.sleep(SETTLED_S)
    return folder


def _spec(tmp_path: Path, dataset: Path) -> Path:
    spec = tmp_path / f"spec-{len(list(tmp_path.glob('spec-*')))}.toml"
    spec.write_text(TINY.read_text().replace('dataset = "markov"', f'dataset = "{dataset}"', 1))
    return spec


def _run_ids(tmp_path: Path, dataset: Path) -> set[str]:
    return {r.run_id for r in load_sweep(_spec(tmp_path, dataset)).runs()}


def _dry_run_ids(tmp_path: Path, dataset: Path) -> set[str]:
    result = scale_in_process("sweep", _spec(tmp_path, dataset), "--dry-run", "--out", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    return set(re.findall(r"^\W*([0-9a-f]{12}) ", result.stdout, flags=re.MULTILINE))


def _edit_one_byte_keeping_size_and_mtime(path: Path) -> None:
    before = path.stat()
    with open(path, "r+b") as handle:
        handle.seek(before.st_size // 2)
        byte = handle.read(1)
        handle.seek(before.st_size // 2)
        handle.write(bytes([byte[0] ^ 1]))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (before.st_size, before.st_mtime_ns, before.st_ino)


def test_a_touched_or_moved_directory_keeps_its_run_ids_and_its_prepared_data(tmp_path):
    corpus = _write_corpus(tmp_path / "first" / "corpus")
    ids = _dry_run_ids(tmp_path, corpus)
    prepared = prepare(str(corpus), OPTIONS)
    assert len(ids) == 6

    for path in local_files(str(corpus)):
        os.utime(path, ns=(0, 1_000_000_000))  # same bytes, another mtime (and ctime)
    assert _dry_run_ids(tmp_path, corpus) == ids
    moved = tmp_path / "elsewhere" / "corpus"
    moved.parent.mkdir()
    shutil.move(corpus, moved)  # same bytes, another path
    assert _run_ids(tmp_path, moved) == ids
    again = prepare(str(moved), OPTIONS)
    assert again.path == prepared.path and again.manifest["created"] == prepared.manifest["created"]


SWEEP = """
name = "local-identity"
dataset = "{dataset}"
tokenizer = "bytes"
device = "cpu"
seeds = [0]

[data]
val_min_bytes = 16_384

[model]
d_model = [16]
n_layer = 1
head_dim = 16
seq_len = 32

[train]
tokens = [4_096, 8_192]
batch_size = 16
lr = 1e-2

[eval]
every = 8
batches = 2
"""


def _sweep(tmp_path: Path, dataset: Path) -> dict[str, bytes]:
    """Run the sweep on `dataset` into one results directory; every stored row file and its bytes."""
    spec = tmp_path / "sweep.toml"
    spec.write_text(SWEEP.format(dataset=dataset))
    out = tmp_path / "results"
    result = scale_in_process("sweep", spec, "--out", out)
    assert result.returncode == 0, result.stderr
    return {p.parent.name: p.read_bytes() for p in out.glob("runs/*/row.json")}


def test_a_sweep_on_touched_or_moved_data_trains_nothing_and_on_edited_data_keeps_what_it_stored(tmp_path):
    corpus = _write_corpus(tmp_path / "a" / "corpus")
    rows = _sweep(tmp_path, corpus)
    assert len(rows) == 2
    os.utime(corpus / "b.txt", ns=(0, 1_000_000_000))
    moved = tmp_path / "b" / "corpus"
    moved.parent.mkdir()
    shutil.move(corpus, moved)
    assert _sweep(tmp_path, moved) == rows  # no run was trained again, nothing stored was rewritten

    _edit_one_byte_keeping_size_and_mtime(moved / "sub" / "c.txt")
    after = _sweep(tmp_path, moved)
    assert len(after) == 4 and {run: after[run] for run in rows} == rows  # two new runs beside the old ones


def test_a_renamed_file_in_a_directory_changes_the_ids(tmp_path):
    """The files' paths within the source are part of its content: they set the reading order and the format."""
    corpus = _write_corpus(tmp_path / "corpus")
    ids = _run_ids(tmp_path, corpus)
    (corpus / "a.txt").rename(corpus / "z.txt")
    assert not _run_ids(tmp_path, corpus) & ids


def test_an_edit_that_puts_back_size_and_mtime_changes_the_ids_and_prepares_anew(tmp_path):
    corpus = _write_corpus(tmp_path / "corpus")
    single = corpus / "a.txt"
    for dataset in (corpus, single):
        ids = _run_ids(tmp_path, dataset)
        assert _run_ids(tmp_path, dataset) == ids  # the cache now holds the file's hash under its state
        prepared = prepare(str(dataset), OPTIONS)
        manifest_before = (prepared.path / "manifest.json").read_bytes()

        _edit_one_byte_keeping_size_and_mtime(single)
        assert not _run_ids(tmp_path, dataset) & ids
        anew = prepare(str(dataset), OPTIONS)
        assert anew.path != prepared.path and anew.manifest["text_sha256"] != prepared.manifest["text_sha256"]
        assert (prepared.path / "manifest.json").read_bytes() == manifest_before  # what was stored stays
        time.sleep(SETTLED_S)


def test_a_second_plan_reads_no_file_again(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("SCALE_CACHE", str(cache))
    corpus = _write_corpus(tmp_path / "corpus")
    files = local_files(str(corpus))
    ids = _run_ids(tmp_path, corpus)
    entries = json.loads((cache / CACHE_FILE).read_text())["files"]
    assert sorted(entries) == sorted(str(p.resolve()) for p in files)

    replan = fingerprint_files(files, corpus, cache)
    assert (replan.cached, replan.hashed, replan.bytes_hashed) == (3, 0, 0)
    assert _run_ids(tmp_path, corpus) == ids
    os.utime(files[0], ns=(0, 1_000_000_000))
    time.sleep(SETTLED_S)
    touched = fingerprint_files(files, corpus, cache)
    assert (touched.cached, touched.hashed, touched.sha256) == (2, 1, replan.sha256)  # only the touched file read


@pytest.mark.parametrize("damage", [b"{not json", b'{"version": 1, "files": {"x": 3}}', None])
def test_a_corrupt_or_missing_cache_means_hashing_again(tmp_path, damage):
    cache = tmp_path / "cache"
    corpus = _write_corpus(tmp_path / "corpus")
    files = local_files(str(corpus))
    first = fingerprint_files(files, corpus, cache)
    assert (first.hashed, first.cached) == (3, 0)
    if damage is None:
        (cache / CACHE_FILE).unlink()
    else:
        (cache / CACHE_FILE).write_bytes(damage)
    rehashed = fingerprint_files(files, corpus, cache)
    assert (rehashed.sha256, rehashed.hashed, rehashed.cached) == (first.sha256, 3, 0)
    assert fingerprint_files(files, corpus, cache).cached == 3  # and the cache is whole again


def test_a_cached_hash_is_trusted_only_for_a_file_that_had_settled_when_read(tmp_path):
    """Within the timestamp granularity a later write could leave the same ctime, so such a read is not cached."""
    path = tmp_path / "f.txt"
    path.write_text("x")
    state = FileState.of(path)
    assert not state.settled_before(state.ctime_ns + 1_000_000)
    assert state.settled_before(state.ctime_ns + 3_000_000_000)


def test_a_lone_file_is_its_bytes_and_its_format(tmp_path):
    corpus = _write_corpus(tmp_path / "corpus")
    text = corpus / "a.txt"
    elsewhere = tmp_path / "other" / "renamed.txt"
    elsewhere.parent.mkdir()
    shutil.copyfile(text, elsewhere)
    assert _run_ids(tmp_path, elsewhere) == _run_ids(tmp_path, text)
    as_jsonl = tmp_path / "other" / "a.jsonl"  # the same bytes read as JSON lines would be another data set
    shutil.copyfile(text, as_jsonl)
    assert not _run_ids(tmp_path, as_jsonl) & _run_ids(tmp_path, text)


def test_a_shard_edited_with_its_size_and_mtime_put_back_is_not_trusted(tmp_path):
    corpus = _write_corpus(tmp_path / "corpus")
    data = prepare(str(corpus), OPTIONS, cache_dir=tmp_path / "prepared-cache")
    assert len(data.train_tokens()) > 0  # builds train.tokens and its stamp
    [shard] = [s["file"] for s in data.manifest["shards"] if s["split"] == "train"][:1]
    _edit_one_byte_keeping_size_and_mtime(data.path / shard)
    with pytest.raises(DataError, match="checksum mismatch"):
        open_prepared(data.path).train_tokens()


def test_a_file_that_cannot_be_read_is_a_data_error_naming_it(tmp_path):
    corpus = _write_corpus(tmp_path / "corpus")
    files = local_files(str(corpus))
    (corpus / "b.txt").unlink()  # gone between listing and hashing
    with pytest.raises(DataError, match="b.txt"):
        fingerprint_files(files, corpus, tmp_path / "cache")
