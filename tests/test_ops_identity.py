"""Run identity covers exactly what changes a result: the resolved device type and dtype, the data set's content
identity, and only the model, schedule and training fields that apply to the run."""

from __future__ import annotations

import pytest
from conftest import REPO

from scaling_cli.plan import load_sweep

TINY = REPO / "sweeps" / "markov-tiny.toml"


def ids(tmp_path, *replacements: tuple[str, str], name: str = "v.toml") -> set[str]:
    text = TINY.read_text()
    for old, new in replacements:
        assert old in text, old
        text = text.replace(old, new, 1)
    path = tmp_path / name
    path.write_text(text)
    return {r.run_id for r in load_sweep(path).runs()}


SHAKESPEARE = ('dataset = "markov"', 'dataset = "shakespeare"')
COSINE = ('schedule = "wsd"', 'schedule = "cosine"')


@pytest.mark.parametrize(
    "fixed, edit",
    [
        ((SHAKESPEARE,), ("markov_order = 1", "markov_order = 1\nmarkov_seed = 9")),  # markov options, other data
        ((COSINE,), ("cooldown_frac = 0.25", "cooldown_frac = 0.5")),  # cooldown options on cosine
        ((COSINE,), ("cooldown_frac = 0.25", 'cooldown_frac = 0.25\ncooldown_shape = "linear"')),
        ((), ("cooldown_frac = 0.25", "cooldown_frac = 0.25\nmin_lr_frac = 0.3")),  # cosine's floor on WSD
        ((), ('device = "cpu"', 'device = "auto"')),  # auto is the CPU on a machine without a GPU
        ((), ("checkpoint_every = 8", 'checkpoint_every = 8\ndtype = "fp32"')),  # auto is fp32 on a CPU
        ((), ("checkpoint_every = 8", 'checkpoint_every = 8\ndtype = "auto"')),
    ],
    ids=["markov-on-shakespeare", "cooldown-on-cosine", "shape-on-cosine", "floor-on-wsd", "auto-device",
         "explicit-fp32", "explicit-auto"],
)  # fmt: skip
def test_fields_that_do_not_apply_keep_the_id(tmp_path, fixed, edit):
    if edit[0] == 'device = "cpu"':
        import torch

        if torch.cuda.is_available():
            pytest.skip("auto means CUDA here")
    assert ids(tmp_path, *fixed, edit, name="edited.toml") == ids(tmp_path, *fixed, name="base.toml")


@pytest.mark.parametrize(
    "fixed, edit",
    [
        ((), ("markov_order = 1", "markov_order = 1\nmarkov_seed = 9")),  # markov options on markov data
        ((COSINE,), ("cooldown_frac = 0.25", "cooldown_frac = 0.25\nmin_lr_frac = 0.3")),  # cosine's floor
        ((), ("cooldown_frac = 0.25", "cooldown_frac = 0.5")),  # WSD's cooldown
        ((), ("checkpoint_every = 8", 'checkpoint_every = 8\ndtype = "bf16"')),  # another dtype
        ((), ("batches = 4", "batches = 5")),  # evaluation windows change the measured loss
    ],
    ids=["markov-on-markov", "floor-on-cosine", "cooldown-on-wsd", "bf16", "eval-batches"],
)
def test_fields_that_apply_change_every_id(tmp_path, fixed, edit):
    assert not ids(tmp_path, *fixed, edit, name="edited.toml") & ids(tmp_path, *fixed, name="base.toml")


def test_a_local_data_file_is_identified_by_its_content_fingerprint(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("to be or not to be\n\n" * 2000)
    spec = ('dataset = "markov"', f'dataset = "{corpus}"')
    before = ids(tmp_path, spec)
    assert ids(tmp_path, spec) == before
    corpus.write_text("that is the question\n\n" * 2000)
    assert not ids(tmp_path, spec) & before


def test_resolved_device_and_dtype_are_what_the_runs_train_with():
    runs = load_sweep(TINY).runs()
    assert {(r.train.device, r.train.dtype) for r in runs} == {("cpu", "fp32")}
