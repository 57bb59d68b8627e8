"""The Llama-style architecture: counts against transformers, its options, muP (with width-coupled weight decay),
a spec that plans it, and a run that trains and resumes bit-identically after kill -9."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import REPO, scale_in_process
from trainer_runs import first_order_markov, killed_and_resumed
from trainer_runs import read_curve as run_curve

from scaling_cli.errors import SpecError
from scaling_cli.fit import FitOptions, TableOptions, fit_all
from scaling_cli.model import ModelConfig, build_model, count_params, flops_per_token
from scaling_cli.plan import load_sweep
from scaling_cli.train import TrainConfig

transformers = pytest.importorskip("transformers")

LLAMA = {"architecture": "llama", "seq_len": 32}
SHAPES = [
    ModelConfig(d_model=64, n_layer=2, n_head=4, **LLAMA),  # full attention, tied
    ModelConfig(d_model=96, n_layer=3, n_head=6, n_kv_head=2, tie_embeddings=False, vocab_size=1000, **LLAMA),
    ModelConfig(d_model=128, n_layer=2, n_head=8, n_kv_head=1, ffn_size=300, **LLAMA),  # multi-query
    ModelConfig(d_model=4096, n_layer=32, n_head=32, ffn_size=11008, vocab_size=32000, tie_embeddings=False,
                architecture="llama", seq_len=4096),  # Llama 2 7B's shape
]  # fmt: skip


def hf_config(config: ModelConfig):
    return transformers.LlamaConfig(
        vocab_size=config.vocab_size,
        hidden_size=config.d_model,
        intermediate_size=config.d_ff,
        num_hidden_layers=config.n_layer,
        num_attention_heads=config.n_head,
        num_key_value_heads=config.n_kv_head,
        max_position_embeddings=config.seq_len,
        tie_word_embeddings=config.tie_embeddings,
    )


@pytest.mark.parametrize("config", SHAPES, ids=lambda c: f"d{c.d_model}-kv{c.n_kv_head}-tied{c.tie_embeddings}")
def test_parameter_counts_equal_transformers_llama(config):
    total, nonembed = count_params(config)
    if config.d_model <= 128:  # building 7B parameters would take minutes: the small ones are built and counted
        hf = transformers.LlamaForCausalLM(hf_config(config))
        assert total == hf.num_parameters()
        assert total == sum(p.numel() for p in build_model(config).parameters())
        untied_head = 0 if config.tie_embeddings else config.vocab_size * config.d_model  # an embedding too (Kaplan)
        assert nonembed == hf.num_parameters(exclude_embeddings=True) - untied_head
    else:
        assert total == 6_738_415_616  # Llama 2 7B's published count


def test_llama_defaults_and_ffn_rule():
    config = ModelConfig(d_model=64, n_layer=2, n_head=4, **LLAMA)
    assert (config.n_kv_head, config.ffn_size, config.rope_theta) == (4, 192, 10000.0)  # 8/3 x 64 = 170.7 -> 192
    assert ModelConfig(d_model=4096, n_layer=1, n_head=32, ffn_multiple=256, **LLAMA).d_ff == 11008  # Llama 2
    assert ModelConfig(d_model=64, n_layer=2, n_head=4, mlp_ratio=4.0, **LLAMA).d_ff == 256
    with pytest.raises(ValueError, match="n_kv_head: n_head 4 is not divisible by n_kv_head 3"):
        ModelConfig(d_model=64, n_layer=2, n_head=4, n_kv_head=3, **LLAMA)
    with pytest.raises(ValueError, match="qk_norm: applies only to architecture = 'llama'"):
        ModelConfig(d_model=64, n_layer=2, n_head=4, seq_len=32, qk_norm=True)


def test_appendix_f_flops_extend_to_gqa_and_swiglu():
    config = ModelConfig(d_model=64, n_layer=2, n_head=4, n_kv_head=2, **LLAMA)
    seq, d, vocab, kv, ffn = 32, 64, 256, 32, 192
    attention = 2 * seq * d * (d + 2 * kv) + 2 * 2 * seq * seq * d + 3 * 4 * seq * seq + 2 * seq * d * d
    forward = 2 * seq * vocab * d + 2 * (attention + 2 * seq * 3 * d * ffn) + 2 * seq * d * vocab
    assert flops_per_token(config) == {"chinchilla": 3 * forward // seq, "kaplan": 6 * count_params(config)[1]}


def test_options_change_the_model_as_documented():
    base = ModelConfig(d_model=64, n_layer=2, n_head=4, **LLAMA)
    idx = torch.randint(0, 256, (2, 32))
    torch.manual_seed(0)
    model = build_model(base)
    logits, _ = model(idx)
    assert not any(name.endswith("bias") for name, _ in model.named_parameters())
    # causal: changing a later token leaves earlier logits alone
    changed = idx.clone()
    changed[:, 20] = (changed[:, 20] + 1) % 256
    assert torch.equal(model(changed)[0][:, :20], logits[:, :20])
    qk = build_model(replace(base, qk_norm=True))
    assert count_params(replace(base, qk_norm=True))[0] == count_params(base)[0] + 2 * 2 * 16
    assert sum(p.numel() for p in qk.parameters()) == count_params(replace(base, qk_norm=True))[0]
    torch.manual_seed(0)
    z = build_model(replace(base, z_loss=1e-2))
    _, ce_only = z.eval()(idx, idx)
    _, with_z = z.train()(idx, idx)
    lse = torch.logsumexp(z(idx)[0].float(), dim=-1)
    assert with_z.item() == pytest.approx(ce_only.item() + 1e-2 * lse.pow(2).mean().item(), rel=1e-5)


def test_mup_applies_to_llama_and_couples_weight_decay_to_width():
    narrow = ModelConfig(d_model=64, n_layer=2, n_head=2, parametrization="mup", base_width=64, **LLAMA)
    wide = replace(narrow, d_model=256, n_head=8)
    for config, ratio in ((narrow, 1.0), (wide, 0.25)):
        groups = build_model(config).optimizer_groups(1e-2, 0.1)
        hidden = groups[-1]
        assert hidden["lr_scale"] == ratio and hidden["lr"] == pytest.approx(1e-2 * ratio)
        # torch's AdamW decays by lr x weight_decay: that product is the base width's at every width
        assert hidden["lr"] * hidden["weight_decay"] == pytest.approx(1e-2 * 0.1)
        assert groups[0]["weight_decay"] == 0.1  # embeddings keep the base lr and decay
    model = build_model(wide)
    assert model.blocks[0].attn.score_scale == pytest.approx(math.sqrt(32) / 32)
    assert model.blocks[0].mlp.up.weight.std().item() == pytest.approx(1 / math.sqrt(256), rel=0.1)


def test_mup_weight_decay_is_applied_by_the_optimizer_as_lr_times_decay(tmp_path):
    """One AdamW step with zero gradients only decays: the hidden matrices of a 4x wider muP model shrink by the
    same factor 1 - lr x decay as the base width's, not 4x less."""
    from scaling_cli.train.loop import build_optimizer

    shrink = {}
    for width in (64, 256):
        config = ModelConfig(d_model=width, n_layer=1, n_head=2, parametrization="mup", base_width=64, **LLAMA)
        model = build_model(config)
        optimizer = build_optimizer(model, TrainConfig(tokens=1, lr=0.05, weight_decay=0.5), torch.device("cpu"))
        before = model.blocks[0].mlp.up.weight.detach().clone()
        for p in model.parameters():
            p.grad = torch.zeros_like(p)
        optimizer.step()
        shrink[width] = (model.blocks[0].mlp.up.weight / before).mean().item()
    assert shrink[64] == pytest.approx(1 - 0.05 * 0.5, rel=1e-5)
    assert shrink[256] == pytest.approx(shrink[64], rel=1e-5)


SPEC = """
name = "llama-ids"
dataset = "markov"
device = "cpu"
[data]
markov_bytes = 100000
[model]
architecture = "{architecture}"
d_model = [32, 64]
head_dim = 16
seq_len = 32
{extra}
[train]
tokens = 4096
lr = 0.003
batch_size = 8
"""


def write_spec(tmp_path, architecture="llama", extra="") -> Path:
    path = tmp_path / f"{architecture}{len(extra)}.toml"
    path.write_text(SPEC.format(architecture=architecture, extra=extra))
    return path


def test_architecture_and_options_are_in_the_run_id_and_row(tmp_path):
    gpt2 = load_sweep(write_spec(tmp_path, "gpt2")).runs()
    llama = load_sweep(write_spec(tmp_path)).runs()
    gqa = load_sweep(write_spec(tmp_path, extra="n_kv_head = 1\nqk_norm = true")).runs()
    ids = [{r.run_id for r in runs} for runs in (gpt2, llama, gqa)]
    assert not (ids[0] & ids[1]) and not (ids[1] & ids[2])
    row = gqa[1].describe()
    assert (row["architecture"], row["n_kv_head"], row["qk_norm"], row["ffn_size"]) == ("llama", 1, True, 192)
    assert row["params"] == count_params(gqa[1].model)[0]
    assert gpt2[0].describe()["architecture"] == "gpt2" and gpt2[0].describe()["n_kv_head"] is None
    # gpt2's identity holds none of the new fields, so its run ids are the released ones (test_spec pins them)
    from scaling_cli.plan import _model_identity

    assert "architecture" not in _model_identity(gpt2[0].model) and "z_loss" not in _model_identity(gpt2[0].model)


def test_a_bad_llama_option_is_a_spec_error(tmp_path):
    with pytest.raises(SpecError, match="n_kv_head: n_head 2 is not divisible by n_kv_head 3"):
        load_sweep(write_spec(tmp_path, extra="n_kv_head = 3"))
    with pytest.raises(SpecError, match="architecture: must be one of gpt2, llama or 'module:function'"):
        load_sweep(write_spec(tmp_path, architecture="lama"))


@pytest.fixture(scope="module")
def markov(tmp_path_factory):
    return first_order_markov(tmp_path_factory, 200_000)


TINY_LLAMA = ModelConfig(d_model=32, n_layer=2, n_head=4, n_kv_head=2, qk_norm=True, z_loss=1e-4, **LLAMA)


def read_curve(run_dir: Path) -> list[dict]:
    return [{k: v for k, v in point.items() if k != "wall_s"} for point in run_curve(run_dir)]


def test_a_llama_run_learns_and_resumes_bit_identically_after_kill_minus_nine(markov, tmp_path):
    train = TrainConfig(tokens=200 * 256, batch_size=8, lr=3e-3, eval_every=5, eval_batches=2,
                        checkpoint_every=10, device="cpu", dtype="fp32", threads=1)  # fmt: skip
    got, killed_at = killed_and_resumed(TINY_LLAMA, train, markov, tmp_path)
    assert 10 <= killed_at < 200
    assert read_curve(tmp_path / "interrupted") == read_curve(tmp_path / "reference")
    assert got["val_loss"] < math.log(16) - 0.3  # it learned: below the 16-symbol uniform loss
    assert got["flops"] == got["tokens"] * flops_per_token(TINY_LLAMA)["chinchilla"]


@pytest.mark.slow
def test_the_known_answer_llama_sweep_recovers_the_entropy_rate(tmp_path):
    """sweeps/known-answer-llama.toml with each budget halved (20 runs, 51k to 819k tokens): the fitted E is the
    source's entropy rate within 5%, as tests/test_known_answer.py checks for the GPT-2 sweep as shipped. The
    Llama recipe learns fast enough that the smaller budgets identify E, for half the training; the GPT-2
    recipe's do not (docs/benchmarks.md has both measurements)."""
    out = tmp_path / "known-answer-llama"
    shipped = (REPO / "sweeps" / "known-answer-llama.toml").read_text()
    budgets = "[102_400, 204_800, 409_600, 819_200, 1_638_400]"
    assert f"tokens = {budgets}" in shipped, "the shipped budgets changed: update the halved copy"
    spec = tmp_path / "known-answer-llama.toml"
    spec.write_text(shipped.replace(f"tokens = {budgets}", "tokens = [51_200, 102_400, 204_800, 409_600, 819_200]"))
    result = scale_in_process("sweep", spec, "--out", out, "--workers", "2")
    assert result.returncode == 0, result.stderr[-2000:]
    runs = pd.read_parquet(out / "runs.parquet")
    assert (runs["status"] == "done").all() and len(runs) == 20 and set(runs["architecture"]) == {"llama"}
    rate_nats = float(runs["entropy_rate_bits"].iloc[0]) * math.log(2)
    chinchilla = fit_all(out, TableOptions(), FitOptions(bootstrap=50))["groups"]["all"]["laws"]["chinchilla"]
    assert chinchilla["status"] == "ok", chinchilla.get("problems")
    assert chinchilla["params"]["E"] == pytest.approx(rate_nats, rel=0.05)
    assert runs["val_loss"].min() > rate_nats


def test_fit_by_architecture_gives_each_recipe_its_own_law(tmp_path):
    """--by takes any run column: two families' runs in one table, each fitted alone (exact laws, no noise)."""
    rows = []
    for architecture, irreducible in (("gpt2", 1.5), ("llama", 1.2)):
        for n in (1e4, 3e4, 1e5, 3e5):
            for d in (1e6, 3e6, 1e7, 3e7):
                loss = irreducible + 400 / n**0.5 + 2000 / d**0.4
                rows.append(
                    {"architecture": architecture, "params": n, "tokens": d, "flops": 6 * n * d, "val_loss": loss}
                )
    pd.DataFrame(rows).to_csv(tmp_path / "both.csv", index=False)
    fit = fit_all(tmp_path / "both.csv", TableOptions(by="architecture"), FitOptions(laws=("chinchilla",), bootstrap=0))
    assert fit["by"] == "architecture" and set(fit["groups"]) == {"gpt2", "llama"}
    for group, irreducible in (("gpt2", 1.5), ("llama", 1.2)):
        assert fit["groups"][group]["laws"]["chinchilla"]["params"]["E"] == pytest.approx(irreducible, rel=0.01)
