"""Pretrained tokenizers, offline: `hf:` (a tokenizer.json the test builds) and `tiktoken:` (a rank file the test
writes) prepare, train and report exact bits per byte; the tokenizer's file hash names the data set and the runs;
a missing one is one line and exit 2 naming where it looked."""

from __future__ import annotations

import base64
import json
import math
import shutil
from collections import Counter

import pandas as pd
import pytest
from conftest import scale_in_process

from scaling_cli.data import DataOptions, prepare
from scaling_cli.errors import SpecError
from scaling_cli.model import ModelConfig
from scaling_cli.plan import load_sweep
from scaling_cli.train import TrainConfig, train_run

tokenizers = pytest.importorskip("tokenizers")
MARKOV = DataOptions(markov_bytes=60_000)
SPEC = """
name = "pretrained"
dataset = "markov"
tokenizer = "{tokenizer}"
device = "cpu"
[data]
markov_bytes = 60000
[model]
d_model = 32
n_layer = 2
n_head = 2
seq_len = 32
[train]
tokens = 8192
lr = 0.01
batch_size = 8
[eval]
batches = 1
"""


def sample_text() -> str:
    """Training text for the test's tokenizers: the markov source's own text (what the specs train on)."""
    data = prepare("markov", MARKOV)
    return data.tokenizer().decode(data.train_tokens()[:20_000])


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    """A byte-level BPE of 320 tokens trained on the source's text, saved as tokenizer.json."""
    folder = tmp_path_factory.mktemp("hf-tokenizer")
    tok = tokenizers.Tokenizer(tokenizers.models.BPE())
    tok.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = tokenizers.decoders.ByteLevel()
    trainer = tokenizers.trainers.BpeTrainer(
        vocab_size=320, show_progress=False, initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator([sample_text()], trainer=trainer)
    tok.save(str(folder / "tokenizer.json"))
    return folder


@pytest.fixture(scope="module")
def tiktoken_file(tmp_path_factory):
    """A tiktoken rank file: every byte, then the 40 most frequent byte pairs of the source's text."""
    pytest.importorskip("tiktoken")
    raw = sample_text().encode()
    pairs = [bytes(pair) for pair, _ in Counter(zip(raw, raw[1:])).most_common(40)]
    tokens = [bytes([b]) for b in range(256)] + pairs
    path = tmp_path_factory.mktemp("tiktoken") / "markov.tiktoken"
    path.write_text("".join(f"{base64.b64encode(t).decode()} {rank}\n" for rank, t in enumerate(tokens)))
    return path


def check_exact_bits_per_byte(data, val_loss: float, val_bpb: float) -> None:
    """bytes per token is the validation text's bytes over its tokens, recounted by decoding the tokens."""
    manifest = data.manifest
    text = data.tokenizer().decode(data.val_tokens())
    assert len(text.encode()) == manifest["bytes"]["val"]
    assert len(data.val_tokens()) == manifest["tokens"]["val"]
    assert data.bytes_per_token == pytest.approx(manifest["bytes"]["val"] / manifest["tokens"]["val"], rel=1e-12)
    assert data.bytes_per_token > 1.0  # the tokenizer merged bytes: not the bytes tokenizer in disguise
    assert val_bpb == pytest.approx(val_loss / math.log(2) / data.bytes_per_token, rel=1e-9)


def test_an_hf_tokenizer_prepares_trains_and_reports_exact_bits_per_byte(hf_dir, tmp_path):
    spec = tmp_path / "hf.toml"
    spec.write_text(SPEC.format(tokenizer=f"hf:{hf_dir}"))
    result = scale_in_process("sweep", spec, "--out", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    row = pd.read_parquet(tmp_path / "out" / "runs.parquet").iloc[0]
    assert row.status == "done" and row.vocab_size == 320 and row.tokenizer == f"hf:{hf_dir}"
    data = prepare("markov", MARKOV, tokenizer=f"hf:{hf_dir}")
    tokenizer = data.manifest["tokenizer"]
    assert tokenizer["kind"] == "hf" and tokenizer["vocab_size"] == 320 and tokenizer["file"] == "tokenizer.json"
    assert tokenizer["sha256"] == __import__("hashlib").sha256((hf_dir / "tokenizer.json").read_bytes()).hexdigest()
    assert (data.path / "tokenizer.json").read_bytes() == (hf_dir / "tokenizer.json").read_bytes()
    check_exact_bits_per_byte(data, row.val_loss, row.val_bpb)


def test_an_hf_hub_name_is_found_in_the_hugging_face_cache(hf_dir, tmp_path, monkeypatch):
    snapshot = tmp_path / "hub" / "models--some-org--some-model" / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    shutil.copy(hf_dir / "tokenizer.json", snapshot / "tokenizer.json")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    (tmp_path / "hub.toml").write_text(SPEC.format(tokenizer="hf:some-org/some-model"))
    (tmp_path / "path.toml").write_text(SPEC.format(tokenizer=f"hf:{hf_dir}"))
    runs = [load_sweep(tmp_path / f"{name}.toml").runs()[0] for name in ("hub", "path")]
    assert runs[0].vocab_size == 320 and runs[0].run_id == runs[1].run_id


def test_the_tokenizer_file_not_its_path_names_the_runs(hf_dir, tmp_path):
    copy = tmp_path / "elsewhere"
    shutil.copytree(hf_dir, copy)
    ids = {}
    for name, folder in (("original", hf_dir), ("copy", copy)):
        (tmp_path / f"{name}.toml").write_text(SPEC.format(tokenizer=f"hf:{folder}"))
        ids[name] = load_sweep(tmp_path / f"{name}.toml").runs()[0].run_id
    assert ids["original"] == ids["copy"]
    doc = json.loads((copy / "tokenizer.json").read_text())
    doc["model"]["merges"] = doc["model"]["merges"][:-1]  # one merge fewer: another tokenizer
    (copy / "tokenizer.json").write_text(json.dumps(doc))
    assert load_sweep(tmp_path / "copy.toml").runs()[0].run_id != ids["original"]


def test_a_tiktoken_rank_file_prepares_trains_and_reports_exact_bits_per_byte(tiktoken_file, tmp_path):
    data = prepare("markov", MARKOV, tokenizer=f"tiktoken:{tiktoken_file}")
    assert data.vocab_size == 296 and data.manifest["tokenizer"]["file"] == "tokenizer.tiktoken"
    model = ModelConfig(d_model=32, n_layer=2, n_head=2, seq_len=32, vocab_size=296)
    train = TrainConfig(tokens=8192, batch_size=8, lr=0.01, eval_batches=1, device="cpu", dtype="fp32", threads=1)
    result = train_run(model, train, data, tmp_path / "run")
    assert result.status == "done" and result.val_loss < math.log(296)
    check_exact_bits_per_byte(data, result.val_loss, result.val_bpb)


def test_a_missing_tokenizer_is_one_line_naming_where_it_looked(tmp_path, monkeypatch):
    spec = tmp_path / "missing.toml"
    spec.write_text(SPEC.format(tokenizer=f"hf:{tmp_path / 'nope'}"))
    result = scale_in_process("sweep", spec, "--out", tmp_path / "out")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"error: {spec}: tokenizer: 'hf:{tmp_path / 'nope'}' not found offline; "
        f"looked in: {tmp_path / 'nope' / 'tokenizer.json'}"
    ]
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "cache"))
    spec.write_text(SPEC.format(tokenizer="tiktoken:cl100k_base"))
    with pytest.raises(SpecError, match=f"'tiktoken:cl100k_base' not found offline; looked in: {tmp_path}/cache/"):
        load_sweep(spec)
    spec.write_text(SPEC.format(tokenizer="hf:some-org/some-model").replace('device = "cpu"', "vocab_size = 300"))
    with pytest.raises(SpecError, match="vocab_size: a pretrained tokenizer brings its own vocabulary"):
        load_sweep(spec)
