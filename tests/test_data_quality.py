"""Quality and repetition options: each changes exactly the training documents and bytes the manifest says,
validation stays byte-identical across variants, the dry run warns past 4 epochs, and a real sweep's loss
at a fixed budget rises as the unique data shrinks."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import scale_in_process
from scaling_cli.data import prepare
from scaling_cli.data.options import DataOptions
from scaling_cli.data.options import split_variant
from scaling_cli.errors import DataError, SpecError
from scaling_cli.plan import plan_runs
from scaling_cli.spec import load_spec

WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "café", "naïve"]
OPTS = DataOptions(doc_bytes=1024, val_min_bytes=8192)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """Six files of word paragraphs (some non-ASCII), cut into documents of about 1 KiB."""
    folder = tmp_path_factory.mktemp("corpus")
    rng = random.Random(0)
    for index in range(6):
        lines = [" ".join(rng.choice(WORDS) for _ in range(12)) for _ in range(160)]
        paragraphs = ["\n".join(lines[i : i + 4]) for i in range(0, len(lines), 4)]
        (folder / f"part{index}.txt").write_text("\n\n".join(paragraphs) + "\n", encoding="utf-8")
    return folder


def _prepared(corpus: Path, query: str, cache: Path):
    return prepare(f"{corpus}{query}", OPTS, cache_dir=cache)


def _step(manifest: dict, name: str) -> dict:
    return next(step for step in manifest["cleaning"] if step["step"] == name)


@pytest.fixture(scope="module")
def variants(corpus, tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    queries = {
        "clean": "",
        "noise": "?noise_fraction=0.3",
        "dup": "?duplicate_fraction=0.2&duplicate_copies=3",
        "cap": "?max_train_bytes=20000",
    }
    return {name: _prepared(corpus, query, cache) for name, query in queries.items()}


def test_validation_text_is_identical_in_every_variant(variants):
    clean = variants["clean"].val_tokens()
    for data in variants.values():
        assert np.array_equal(data.val_tokens(), clean)
    assert len({data.path for data in variants.values()}) == len(variants)


def test_noise_shuffles_exactly_the_documents_and_bytes_it_reports(variants):
    clean, noised = variants["clean"].train_tokens(), variants["noise"].train_tokens()
    step = _step(variants["noise"].manifest, "noise")
    n_train = variants["clean"].manifest["documents"]["train"]
    assert step["docs_changed"] == round(0.3 * n_train) > 0
    assert len(noised) == len(clean)  # a shuffle keeps every byte
    assert np.array_equal(np.bincount(noised, minlength=256), np.bincount(clean, minlength=256))
    assert int((noised != clean).sum()) == step["bytes_differing"] > 0
    assert step["bytes_differing"] <= step["bytes_shuffled"] < len(clean)
    assert variants["noise"].manifest["train_unique"]["tokens"] == len(clean)


def test_duplicates_add_exactly_the_copies_they_report(variants):
    clean, duplicated = variants["clean"], variants["dup"]
    step = _step(duplicated.manifest, "duplicate")
    n_train = clean.manifest["documents"]["train"]
    assert step["docs_duplicated"] == round(0.2 * n_train) > 0
    assert step["docs_added"] == 2 * step["docs_duplicated"]
    assert step["bytes_added"] == 2 * step["duplicated_doc_bytes"]
    assert len(duplicated.train_tokens()) == len(clean.train_tokens()) + step["bytes_added"]
    assert duplicated.manifest["train_unique"] == {
        "bytes": len(clean.train_tokens()),
        "tokens": len(clean.train_tokens()),
    }
    assert clean.manifest["train_unique"]["tokens"] == len(clean.train_tokens())


def test_the_cap_keeps_the_first_training_bytes_in_corpus_order(variants):
    clean, capped = variants["clean"].train_tokens(), variants["cap"].train_tokens()
    step = _step(variants["cap"].manifest, "max_train_bytes")
    assert len(capped) == step["bytes_kept"] == 20000  # ASCII at the cut, so no character moves it back
    assert np.array_equal(capped, clean[: len(capped)])
    assert step["bytes_removed"] == len(clean) - 20000
    assert variants["cap"].manifest["train_unique"]["tokens"] == 20000


def test_variants_are_rebuilt_byte_for_byte_and_the_seed_matters(corpus, variants, tmp_path):
    again = _prepared(corpus, "?noise_fraction=0.3", tmp_path / "other")
    reseeded = _prepared(corpus, "?noise_fraction=0.3&quality_seed=1", tmp_path / "other")
    shards = [s["sha256"] for s in variants["noise"].manifest["shards"]]
    assert [s["sha256"] for s in again.manifest["shards"]] == shards
    assert again.path.name == variants["noise"].path.name
    assert [s["sha256"] for s in reseeded.manifest["shards"]] != shards


def test_with_bpe_every_variant_shares_the_tokenizer_and_validation_tokens(corpus, tmp_path):
    def bpe(query):
        return prepare(f"{corpus}{query}", OPTS, tokenizer="bpe", vocab_size=320, cache_dir=tmp_path)

    clean, noised, duplicated = bpe(""), bpe("?noise_fraction=0.5"), bpe("?duplicate_fraction=0.5")
    vocab = (clean.path / "tokenizer.json").read_bytes()
    for data in (noised, duplicated):
        assert (data.path / "tokenizer.json").read_bytes() == vocab
        assert np.array_equal(data.val_tokens(), clean.val_tokens())
    assert duplicated.manifest["train_unique"]["tokens"] == len(clean.train_tokens()) < len(duplicated.train_tokens())
    assert noised.tokenizer().decode(noised.train_tokens()) != clean.tokenizer().decode(clean.train_tokens())


def test_default_options_leave_data_set_names_unchanged():
    assert not {"noise_fraction", "duplicate_fraction", "max_train_bytes", "quality_seed"} & set(OPTS.to_dict())
    assert split_variant("markov", OPTS) == ("markov", OPTS)
    assert split_variant("data/part?.txt", OPTS) == ("data/part?.txt", OPTS)  # a glob's ? is not a variant


@pytest.mark.parametrize(
    ("query", "field"),
    [("?noise_fraction=2", "dataset.noise_fraction"), ("?nosie_fraction=0.1", "dataset.nosie_fraction")],
)
def test_a_bad_variant_names_the_option(query, field):
    with pytest.raises(DataError) as caught:
        split_variant(f"markov{query}", OPTS)
    assert caught.value.field == field


SPEC = """
name = "repeat-tiny"
dataset = {datasets}
tokenizer = "bytes"
device = "cpu"

[data]
val_min_bytes = 16_384

[model]
d_model = [32]
n_layer = 1
head_dim = 16
seq_len = 32

[train]
tokens = [{tokens}]
batch_size = 16
lr = 1e-2
schedule = "cosine"
warmup_tokens = 1_024

[eval]
every = 1000
batches = 8
"""


def _spec(tmp_path: Path, datasets: list[str], tokens: int) -> Path:
    path = tmp_path / "repeat.toml"
    path.write_text(SPEC.format(datasets=repr(datasets).replace("'", '"'), tokens=tokens))
    return path


def test_a_spec_with_a_bad_variant_is_a_spec_error_naming_it(tmp_path):
    spec = load_spec(_spec(tmp_path, ["markov", "markov?noise_fraction=1.5"], 16_384))
    with pytest.raises(SpecError) as caught:
        plan_runs(spec)
    assert caught.value.field == "dataset.noise_fraction"
    assert "[0, 1]" in caught.value.problem


def test_dry_run_warns_past_four_epochs(tmp_path):
    spec = _spec(tmp_path, ["markov?max_train_bytes=4096", "markov?max_train_bytes=2048"], 16_384)
    result = scale_in_process("sweep", spec, "--dry-run", "--out", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "epochs" in line]
    assert len(warnings) == 1 and warnings[0].startswith("warning: markov?max_train_bytes=2048: 1 run(s) exceed 4")
    assert "8.0 passes over 2,048 unique training tokens" in warnings[0]


def test_loss_at_a_fixed_budget_rises_as_unique_data_shrinks(tmp_path):
    datasets = ["pystdlib", "pystdlib?max_train_bytes=2048", "pystdlib?max_train_bytes=256"]
    result = scale_in_process("sweep", _spec(tmp_path, datasets, 16_384), "--out", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    runs = pd.read_parquet(tmp_path / "out" / "runs.parquet").set_index("dataset")
    assert runs.loc["pystdlib?max_train_bytes=256", "unique_tokens"] == 256
    assert runs.loc["pystdlib?max_train_bytes=256", "epochs"] == pytest.approx(16_384 / 256)
    assert runs.loc["pystdlib", "epochs"] < 1
    losses = [runs.loc[name, "val_loss"] for name in datasets]
    assert losses[0] < losses[1] < losses[2], losses
