"""The corpus formats users have: JSON lines and parquet (each compressed or not, alone or mixed in a
directory), malformed records, and near-duplicate removal; each prepared on real files and trained on."""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard
from conftest import scale_in_process

from scaling_cli.data import DataOptions, prepare
from scaling_cli.data.tokenizer import ByteTokenizer
from scaling_cli.errors import DataError
from scaling_cli.model import ModelConfig
from scaling_cli.train import TrainConfig, train_run

SMALL = DataOptions(val_min_bytes=4096, doc_bytes=1024)


def _story(i: int) -> str:
    """A short document, distinct for every i, with a paragraph break and a non-ASCII word."""
    words = " ".join(f"w{(i * 7 + k) % 97}" for k in range(60))
    return f"Story {i}: café number {i}.\n\n{words}\n"


def _write_jsonl_zst(path: Path, records: list[dict]) -> None:
    lines = "".join(json.dumps(r) + "\n" for r in records).encode()
    path.write_bytes(zstandard.ZstdCompressor().compress(lines))


def _write_parquet(path: Path, column: str, texts: list[str | None]) -> None:
    pq.write_table(pa.table({column: pa.array(texts, pa.string()), "id": list(range(len(texts)))}), path)


def _all_text(data) -> str:
    return ByteTokenizer().decode(np.concatenate([data.train_tokens(), data.val_tokens()]))


def _train_briefly(data, tmp_path: Path):
    model = ModelConfig(d_model=16, n_layer=1, n_head=1, seq_len=32)
    train = TrainConfig(tokens=32 * 8 * 6, batch_size=8, eval_every=0, eval_batches=2, checkpoint_every=0, device="cpu")
    return train_run(model, train, data, tmp_path / "run")


def test_a_jsonl_zst_corpus_prepares_and_trains(tmp_path):
    corpus = tmp_path / "stories.jsonl.zst"
    _write_jsonl_zst(corpus, [{"id": i, "content": _story(i)} for i in range(120)])
    data = prepare(str(corpus), DataOptions(val_min_bytes=4096, text_field="content"), cache_dir=tmp_path / "c")
    assert data.manifest["documents"]["files"] == 120
    assert data.manifest["source_detail"]["formats"] == {"jsonl": 1}
    text = _all_text(data)
    assert all(f"Story {i}: café" in text for i in range(120))
    result = _train_briefly(data, tmp_path)
    assert result.status == "done" and np.isfinite(result.val_loss)


def test_a_parquet_corpus_prepares_and_trains(tmp_path):
    corpus = tmp_path / "stories.parquet"
    _write_parquet(corpus, "body", [_story(i) for i in range(120)])
    data = prepare(str(corpus), DataOptions(val_min_bytes=4096, text_column="body"), cache_dir=tmp_path / "c")
    assert data.manifest["documents"]["files"] == 120
    assert _all_text(data).count("Story ") == 120
    result = _train_briefly(data, tmp_path)
    assert result.status == "done" and np.isfinite(result.val_loss)


def test_a_directory_mixing_formats_and_compressions(tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "a.txt.gz").write_bytes(gzip.compress(_story(0).encode()))
    (folder / "b.txt.bz2").write_bytes(bz2.compress(_story(1).encode()))
    (folder / "c.jsonl.xz").write_bytes(lzma.compress((json.dumps({"text": _story(2)}) + "\n").encode()))
    (folder / "d.ndjson").write_text(json.dumps({"text": _story(3)}) + "\n\n" + json.dumps({"text": _story(4)}) + "\n")
    _write_parquet(folder / "e.parquet", "text", [_story(5), _story(6)])
    _write_jsonl_zst(folder / "f.jsonl.zst", [{"text": _story(7)}])
    (folder / "g.txt").write_text(_story(8))
    data = prepare(str(folder), DataOptions(val_min_bytes=100), cache_dir=tmp_path / "c")
    detail = data.manifest["source_detail"]
    assert detail["formats"] == {"jsonl": 3, "parquet": 1, "text": 3}
    assert data.manifest["documents"]["files"] == 9
    assert all(f"Story {i}:" in _all_text(data) for i in range(9))
    globbed = prepare(str(folder / "*.jsonl*"), DataOptions(val_min_bytes=100), cache_dir=tmp_path / "c")
    assert globbed.manifest["documents"]["files"] == 2


def _bad_jsonl(tmp_path: Path) -> Path:
    corpus = tmp_path / "bad.jsonl"
    lines = [json.dumps({"text": _story(i)}) for i in range(40)]
    lines[6] = '{"text": "unterminated'
    lines[20] = json.dumps({"body": "no text field"})
    lines[30] = json.dumps(["not", "an", "object"])
    corpus.write_text("\n".join(lines) + "\n")
    return corpus


def test_a_malformed_record_names_the_file_and_line(tmp_path):
    corpus = _bad_jsonl(tmp_path)
    with pytest.raises(DataError) as info:
        prepare(str(corpus), SMALL, cache_dir=tmp_path / "c")
    assert info.value.where == f"{corpus}:7" and "malformed JSON" in info.value.problem
    assert not list((tmp_path / "c" / "prepared").glob("bad*/manifest.json"))


def test_skip_bad_records_skips_and_counts_them(tmp_path):
    corpus = _bad_jsonl(tmp_path)
    data = prepare(str(corpus), DataOptions(val_min_bytes=4096, skip_bad_records=True), cache_dir=tmp_path / "c")
    detail = data.manifest["source_detail"]
    assert detail["bad_records_skipped"] == 3 and detail["first_bad_record"].startswith(f"{corpus}:7: malformed")
    assert data.manifest["documents"]["files"] == 37


def test_cli_reports_a_malformed_record_in_one_line_and_skips_on_request(tmp_path):
    corpus = _bad_jsonl(tmp_path)
    env = {"SCALE_CACHE": str(tmp_path / "c")}
    proc = scale_in_process("data", "prepare", corpus, "--set", "val_min_bytes=4096", env=env)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert proc.stderr.startswith(f"error: {corpus}:7: jsonl: malformed JSON")
    assert "--skip-bad-records" in proc.stderr
    skipped = scale_in_process("data", "prepare", corpus, "--set", "val_min_bytes=4096", "--skip-bad-records", env=env)
    assert skipped.returncode == 0, skipped.stderr
    assert "bad records skipped: 3" in skipped.stdout


def test_parquet_problems_are_data_errors(tmp_path):
    corpus = tmp_path / "t.parquet"
    _write_parquet(corpus, "body", [_story(0), None, _story(1)])
    with pytest.raises(DataError) as missing:
        prepare(str(corpus), SMALL, cache_dir=tmp_path / "c")
    assert missing.value.field == "text_column" and missing.value.problem == "no column 'text' (columns: body, id)"
    with pytest.raises(DataError) as null:
        prepare(str(corpus), DataOptions(val_min_bytes=100, text_column="body"), cache_dir=tmp_path / "c")
    assert null.value.where == f"{corpus}:row 2"


def test_near_dedup_removes_near_copies_and_the_manifest_says_what_each_step_removed(tmp_path):
    rng = np.random.default_rng(0)
    vocab = [f"word{i}" for i in range(500)]
    originals = [" ".join(rng.choice(vocab, 400)) + "\n" for _ in range(30)]
    near = []
    for text in originals[:10]:
        words = text.split()
        words[rng.integers(len(words))] = "CHANGED"  # one word in 400 differs: Jaccard of 5-grams about 0.98
        near.append(" ".join(words) + "\n")
    records = [{"text": t} for t in originals + near + originals[:5]]  # five exact copies too
    corpus = tmp_path / "dups.jsonl"
    corpus.write_text("".join(json.dumps(r) + "\n" for r in records))
    exact = prepare(str(corpus), DataOptions(val_min_bytes=1000, dedup=True), cache_dir=tmp_path / "c")
    near_data = prepare(str(corpus), DataOptions(val_min_bytes=1000, dedup="near"), cache_dir=tmp_path / "c")
    steps = {s["step"]: s for s in near_data.manifest["cleaning"]}
    assert steps["dedup_documents"]["docs_removed"] == 5
    assert steps["dedup_near"]["docs_removed"] == 10 and steps["dedup_near"]["threshold"] == 0.8
    assert near_data.manifest["documents"]["after_cleaning"] == 30
    assert exact.manifest["documents"]["after_cleaning"] == 40
    shown = scale_in_process(
        "data",
        "prepare",
        corpus,
        "--near-dedup",
        "--set",
        "val_min_bytes=1000",
        env={"SCALE_CACHE": str(tmp_path / "c")},
    )
    assert shown.returncode == 0, shown.stderr
    assert "removed: dedup_documents 5 docs" in shown.stdout and "dedup_near 10 docs" in shown.stdout
    assert {s["step"]: s for s in exact.manifest["cleaning"]}["dedup_near"] == {"step": "dedup_near", "enabled": False}
