"""Streaming prepare and memory-mapped tokens: the same data set whatever the piece size, big files
without blank lines, token files shared by training workers, and batches unchanged by the memory map."""

from __future__ import annotations

import io
import json
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import TWO_WIDTHS, scale_in_process
from hypothesis import given, settings
from hypothesis import strategies as st

from scaling_cli.data import DataOptions, clean, get_batch, open_prepared, prepare, readers, shards
from scaling_cli.data.cutting import MAX_BLOCK_CHARS, DocumentCutter, cut_documents
from scaling_cli.data.tokenizer import ByteTokenizer
from scaling_cli.errors import DataError

VOLATILE = ("created", "prepare_seconds")


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from(["a", "b", " ", "\t", "\n", "é", "日", "x" * 40, "\n\n", "y" * 500]), max_size=600).map(
        "".join
    ),
    st.lists(st.integers(1, 700), min_size=1, max_size=40),
    st.sampled_from([256, 300]),
    st.sampled_from([400, 900, MAX_BLOCK_CHARS]),
)
def test_streamed_pieces_cut_like_the_whole_text(text, piece_sizes, doc_bytes, max_block):
    cutter, docs, pos, i = DocumentCutter("f", doc_bytes, max_block), [], 0, 0
    while pos < len(text):
        size = piece_sizes[i % len(piece_sizes)]
        docs += cutter.feed(text[pos : pos + size])
        pos, i = pos + size, i + 1
    docs += cutter.finish()
    whole = cut_documents("f", text, doc_bytes, max_block)
    assert [d.data for d in docs] == [d.data for d in whole]
    assert "".join(d.text for d in docs) == text


def _corpus(folder: Path) -> Path:
    """A directory with the awkward cases: CRLF and decomposed accents, duplicates, a big file without blank
    lines, and one huge line."""
    folder.mkdir()
    rng = np.random.default_rng(3)
    words = [f"w{i}" for i in range(300)]
    for i in range(12):
        paragraphs = [" ".join(rng.choice(words, 30)) for _ in range(40)]
        (folder / f"doc{i:02d}.txt").write_bytes(("cafe\u0301 \r\n\r\n" + "\r\n\r\n".join(paragraphs)).encode())
    (folder / "copy.txt").write_bytes((folder / "doc03.txt").read_bytes())
    lines = "".join(f"record {i}: " + " ".join(rng.choice(words, 12)) + "\n" for i in range(25_000))
    (folder / "records.txt").write_text(lines)  # about 1.4 MB (over MAX_BLOCK_CHARS) and no blank line
    (folder / "oneline.txt").write_text("ü" + "".join(rng.choice(words, 400_000)))  # 1.5 MB, no newline at all
    return folder


@pytest.fixture(scope="module")
def awkward(tmp_path_factory) -> Path:
    return _corpus(tmp_path_factory.mktemp("corpus") / "awkward")


def _strip(manifest: dict) -> dict:
    return {k: v for k, v in manifest.items() if k not in VOLATILE}


def test_two_piece_sizes_give_identical_manifests_and_shards(awkward, tmp_path):
    opts = DataOptions(dedup=True, val_min_bytes=20_000)
    small = prepare(str(awkward), opts, cache_dir=tmp_path / "a", chunk_bytes=4096)
    large = prepare(str(awkward), opts, cache_dir=tmp_path / "b", chunk_bytes=4 << 20)
    assert _strip(small.manifest) == _strip(large.manifest)
    for entry in small.manifest["shards"]:
        assert (small.path / entry["file"]).read_bytes() == (large.path / entry["file"]).read_bytes()
    assert small.manifest["cleaning"][2]["docs_removed"] == 1  # the copied file


def test_a_big_file_without_blank_lines_is_cut_at_lines(awkward, tmp_path):
    data = prepare(str(awkward / "records.txt"), DataOptions(), cache_dir=tmp_path)
    m = data.manifest
    assert m["documents"]["after_cleaning"] > 150 and m["documents"]["val"] >= 20
    text = ByteTokenizer().decode(np.concatenate([data.train_tokens(), data.val_tokens()]))
    assert sorted(text.splitlines()) == sorted((awkward / "records.txt").read_text().splitlines())


def test_a_huge_line_is_cut_at_character_boundaries(awkward, tmp_path):
    data = prepare(str(awkward / "oneline.txt"), DataOptions(val_min_bytes=50_000), cache_dir=tmp_path)
    assert data.manifest["documents"]["after_cleaning"] > 100
    assert data.manifest["bytes"]["clean"] == len((awkward / "oneline.txt").read_bytes())


def test_tokens_are_memory_mapped_with_the_narrowest_dtype(tmp_path):
    opts = DataOptions(markov_bytes=200_000, val_min_bytes=20_000)
    data = prepare("markov", opts, cache_dir=tmp_path)
    train = data.train_tokens()
    assert isinstance(train, np.memmap) and train.dtype == np.uint8 and not train.flags.writeable
    in_memory = shards.read_split(data.path, data.manifest["shards"], "train", data.vocab_size)
    assert np.array_equal(train, in_memory)
    for step in (0, 7, 1234):  # batches from the map are those of the in-memory array of before
        x, y = get_batch(train, 64, 8, seed=3, step=step)
        x_ref, y_ref = get_batch(in_memory, 64, 8, seed=3, step=step)
        assert (x == x_ref).all() and (y == y_ref).all()
    bpe = prepare("markov", opts, tokenizer="bpe", vocab_size=300, cache_dir=tmp_path)
    assert bpe.val_tokens().dtype == np.uint16


def test_a_replaced_shard_makes_the_token_file_be_rebuilt_and_checked(tmp_path):
    data = prepare("markov", DataOptions(markov_bytes=100_000, val_min_bytes=10_000), cache_dir=tmp_path)
    assert len(data.train_tokens()) == data.manifest["tokens"]["train"]
    shard = data.path / data.manifest["shards"][0]["file"]
    blob = bytearray(shard.read_bytes())
    blob[len(blob) // 2] ^= 1
    shard.write_bytes(bytes(blob))
    with pytest.raises(DataError, match="checksum mismatch"):
        open_prepared(data.path).train_tokens()
    # the failed rebuild leaves the old token file and stamp, and no temporary file
    assert (data.path / "train.tokens").stat().st_size == data.manifest["tokens"]["train"]
    assert not [p.name for p in data.path.iterdir() if ".tmp" in p.name]


SPEC = (
    """
name = "local-mmap"
dataset = "{dataset}"
tokenizer = "bytes"
device = "cpu"
seeds = [0]

[data]
val_min_bytes = 16_384

"""
    + TWO_WIDTHS
    + """
[train]
tokens = [8_192]
batch_size = 16
lr = 1e-2

[eval]
every = 8
batches = 2
"""
)


def test_a_sweep_with_two_workers_trains_from_the_memory_mapped_tokens(awkward, tmp_path):
    spec = tmp_path / "local.toml"
    spec.write_text(textwrap.dedent(SPEC.format(dataset=awkward / "records.txt")))
    cache = tmp_path / "cache"
    out = tmp_path / "out"
    result = scale_in_process("sweep", spec, "--out", out, "--workers", "2", env={"SCALE_CACHE": str(cache)})
    assert result.returncode == 0, result.stderr
    runs = pd.read_parquet(tmp_path / "out" / "runs.parquet")
    assert len(runs) == 2 and set(runs["status"]) == {"done"} and runs["val_loss"].notna().all()
    [prepared] = [p for p in (cache / "prepared").iterdir() if p.is_dir()]
    token_file = prepared / "train.tokens"
    manifest = json.loads((prepared / "manifest.json").read_text())
    assert token_file.stat().st_size == manifest["tokens"]["train"]  # one byte per token, built once
    stamp = json.loads((prepared / "train.tokens.json").read_text())
    assert [row[1] for row in stamp] == [s["sha256"] for s in manifest["shards"] if s["split"] == "train"]


def test_bpe_learns_from_a_sample_of_bpe_sample_bytes(tmp_path):
    """The first bpe_sample_bytes of training text teach the merges: words that only come later stay long."""
    early = "".join(f"alpha beta gamma delta {i % 7}\n\n" for i in range(60_000))  # 1.56 MB, all in the sample
    late = "".join(f"omega sigma kappa theta {i % 7}\n\n" for i in range(15_000))
    (tmp_path / "corpus.txt").write_text(early + late)
    opts = {"val_min_bytes": 20_000, "val_fraction": 0.01}
    sampled = prepare(
        str(tmp_path / "corpus.txt"),
        DataOptions(**opts, bpe_sample_bytes=1 << 20),
        tokenizer="bpe",
        vocab_size=300,
        cache_dir=tmp_path / "c",
    )
    whole = prepare(
        str(tmp_path / "corpus.txt"), DataOptions(**opts), tokenizer="bpe", vocab_size=300, cache_dir=tmp_path / "c"
    )
    late_word = "omega sigma kappa theta"
    assert len(sampled.tokenizer().encode(late_word)) > 2 * len(whole.tokenizer().encode(late_word))
    assert len(sampled.tokenizer().encode("alpha beta gamma delta")) <= 4


_RAW_BITS = [b"a", b"word ", b"\n", b"\r\n", b"\r", b"\n\n", "é".encode(), "e\u0301".encode(), b"\xff", b"\xe6\x97"]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.sampled_from(_RAW_BITS), max_size=3000).map(b"".join),
    st.sampled_from([b"", "\ufeff".encode()]),
    st.integers(1, 3000),
    st.booleans(),
)
def test_raw_bytes_read_in_pieces_clean_like_the_decoded_file(body, bom, chunk_bytes, normalize):
    """Reading a text file as byte pieces (bad bytes, BOM, CR LF, accents cut anywhere) and cleaning them
    gives the documents and the report of cleaning the whole decoded file."""
    data = bom + body
    opts = DataOptions(doc_bytes=256, normalize=normalize)
    pieces = list(readers.byte_pieces(io.BytesIO(data), Path("f"), chunk_bytes))
    assert b"".join(pieces) == data
    cleaner = clean.Cleaner(opts)
    streamed = [d.data for d in cleaner.unit("f", pieces)]
    whole, report = clean.clean_corpus([("f", data.decode("utf-8", errors="replace"))], opts)
    assert streamed == [d.data for d in whole]
    assert cleaner.report().steps == report.steps


def _records(n: int) -> str:
    rng = np.random.default_rng(5)
    words = [f"w{i}" for i in range(300)]
    return "".join(f"record {i}: " + " ".join(rng.choice(words, 12)) + "\n" for i in range(n))


def test_a_file_under_the_block_limit_without_blank_lines_is_cut_at_lines(tmp_path):
    """One record per line, no blank line, far under MAX_BLOCK_CHARS: one paragraph, which alone cannot be
    split, so the file is cut at lines into pieces of about doc_bytes."""
    path = tmp_path / "records.txt"
    path.write_text(_records(5_500))  # about 300 KB
    data = prepare(str(path), DataOptions(), cache_dir=tmp_path / "c")
    m = data.manifest
    assert m["documents"]["after_cleaning"] >= 30 and m["documents"]["val"] >= 1 and m["documents"]["train"] >= 1
    cut = next(step for step in m["cleaning"] if step["step"] == "cut")
    assert cut["cut_at_lines_over_bytes"] == m["options"]["doc_bytes"]
    text = ByteTokenizer().decode(np.concatenate([data.train_tokens(), data.val_tokens()]))
    assert sorted(text.splitlines()) == sorted(path.read_text().splitlines())


def test_a_corpus_that_splits_at_blank_lines_is_not_cut_at_lines(tmp_path):
    (tmp_path / "two.txt").write_text(_records(4_000) + "\n" + _records(4_000))  # two paragraphs of 220 KB
    m = prepare(str(tmp_path / "two.txt"), DataOptions(), cache_dir=tmp_path / "c").manifest
    assert m["documents"]["after_cleaning"] == 2
    assert "cut_at_lines_over_bytes" not in next(step for step in m["cleaning"] if step["step"] == "cut")


def test_a_corpus_too_small_to_split_says_how_to_give_more(tmp_path):
    (tmp_path / "one.txt").write_text("one line after another\n" * 300)  # 6.9 KB: under one document
    with pytest.raises(DataError) as info:
        prepare(str(tmp_path / "one.txt"), DataOptions(), cache_dir=tmp_path / "c")
    assert info.value.problem.startswith("1 document(s) left after cleaning, even cut at lines into pieces of 8192")
    result = scale_in_process("data", "prepare", tmp_path / "one.txt", env={"SCALE_CACHE": str(tmp_path / "c")})
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: ") and len(result.stderr.strip().splitlines()) == 1
    assert "need at least 2 to split (give more text, or a smaller doc_bytes)" in result.stderr
    assert not list((tmp_path / "c").glob("prepared/*/manifest.json"))
