"""Bring your own model: the README's example plug-in (examples/conv_lm.py) trains in a real sweep with its own
counts in runs.parquet; plug-ins that break the contract are refused at plan time in one line, exit 2."""

from __future__ import annotations

import math
import os

import pandas as pd
import pytest
from conftest import REPO, scale_in_process

from scaling_cli.errors import SpecError
from scaling_cli.model import ModelConfig, build_model
from scaling_cli.model.plugin import count_params, flops_per_token
from scaling_cli.plan import load_sweep

EXAMPLES = REPO / "examples"
SPEC = """
name = "plugin"
dataset = "markov"
device = "cpu"
[data]
markov_bytes = 60000
markov_alphabet = 16
markov_order = 1
[model]
architecture = "{architecture}"
d_model = [16, 32]
n_layer = 2
n_head = 1
seq_len = 32
[train]
tokens = 16384
lr = 0.01
batch_size = 8
[eval]
batches = 1
"""
BROKEN = """
import torch
from torch import nn
import conv_lm


class Changed(nn.Module):
    def __init__(self, inner, before=None, after=None):
        super().__init__()
        self.inner = inner
        self.before, self.after = before or (lambda idx: idx), after or (lambda logits: logits)
    def forward(self, idx, targets=None):
        logits, loss = self.inner(self.before(idx), targets)
        return self.after(logits), loss


def wrong_shape(config):
    model, counts = conv_lm.build(config)
    return Changed(model, after=lambda logits: logits[..., :-1]), counts


def wrong_count(config):
    model, counts = conv_lm.build(config)
    return model, {**counts, "params": counts["params"] + 1}


def peeks_ahead(config):
    model, counts = conv_lm.build(config)
    return Changed(model, before=lambda idx: torch.roll(idx, -1, dims=1)), counts
"""


def env() -> dict:
    return {"PYTHONPATH": os.pathsep.join([str(EXAMPLES), os.environ.get("PYTHONPATH", "")])}


@pytest.fixture
def on_path(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(EXAMPLES))
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "broken_models.py").write_text(BROKEN)
    return tmp_path


def test_the_readme_example_trains_in_a_sweep_with_its_own_counts(on_path, tmp_path):
    spec = tmp_path / "plugin.toml"
    spec.write_text(SPEC.format(architecture="conv_lm:build"))
    result = scale_in_process("sweep", spec, "--out", tmp_path / "out", "--keep-final", env=env())
    assert result.returncode == 0, result.stderr
    runs = pd.read_parquet(tmp_path / "out" / "runs.parquet").sort_values("d_model")
    assert list(runs.status) == ["done", "done"] and set(runs.architecture) == {"conv_lm:build"}
    for row in runs.itertuples():
        config = ModelConfig(d_model=row.d_model, n_layer=2, n_head=1, seq_len=32, architecture="conv_lm:build")
        assert (row.params, row.params_nonembed) == count_params(config)
        assert row.params == sum(p.numel() for p in build_model(config).parameters())
        assert row.flops == row.tokens * flops_per_token(config)["chinchilla"]
        assert row.val_loss < math.log(16)  # it learned: from ln 256 at init to below uniform over the 16 symbols
    run_id = runs.run_id.iloc[0]
    export = scale_in_process("export", tmp_path / "out", "--run", run_id, "--out", tmp_path / "hf")
    assert export.returncode == 2
    assert export.stderr.strip().endswith("architecture: plug-in 'conv_lm:build' has no Hugging Face mapping")
    assert export.stderr.count("\n") == 1


@pytest.mark.parametrize(
    "function, problem",
    [
        ("wrong_shape", "logits have shape (2, 32, 255), expected (2, 32, 256)"),
        ("wrong_count", "counts say params = 8673, the module has 8672 parameters"),
        ("peeks_ahead", "not causal: changing the last token changed the logits of earlier positions"),
        ("missing", "module 'broken_models' has no function 'missing'"),
        ("muP", "muP needs to know a model's hidden matrices: plug-ins train with parametrization 'sp'"),
    ],
)
def test_a_plugin_that_breaks_the_contract_is_refused_at_plan_time(on_path, function, problem):
    spec = on_path / "broken.toml"
    text = SPEC.format(architecture=f"broken_models:{function}").replace("[16, 32]", "[16]")
    if function == "muP":
        text = text.replace("broken_models:muP", "conv_lm:build").replace(
            "n_head = 1", 'n_head = 1\nparametrization = "mup"'
        )
    spec.write_text(text)
    with pytest.raises(SpecError) as caught:
        load_sweep(spec)
    assert caught.value.line() == f"{spec}: model.d_model: architecture: {problem}"


def test_the_cli_refuses_a_broken_plugin_in_one_line_before_writing_anything(on_path):
    """In process: the fixture puts the plug-in modules on sys.path."""
    spec = on_path / "broken.toml"
    spec.write_text(SPEC.format(architecture="broken_models:wrong_count").replace("[16, 32]", "[16]"))
    result = scale_in_process("sweep", spec, "--out", on_path / "out")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [f"error: {spec}: model.d_model: architecture: counts say params = 8673, "
                                          "the module has 8672 parameters"]  # fmt: skip
    assert not (on_path / "out").exists()
