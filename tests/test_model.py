"""The GPT module and its accounting: GPT-2 small's published counts, Appendix F by hand, causality."""

from __future__ import annotations

import math

import pytest
import torch

from scaling_cli.model import (
    GPT,
    ModelConfig,
    count_params,
    depth_for_width,
    flops_per_token,
    heads_for_width,
)

GPT2_SMALL = ModelConfig(d_model=768, n_layer=12, n_head=12, seq_len=1024, vocab_size=50257, gpt2=True)


def module_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())  # parameters() lists a tied matrix once


def test_gpt2_small_parameter_counts_match_the_published_numbers():
    total, nonembed = count_params(GPT2_SMALL)
    assert total == 124_439_808
    assert nonembed == 85_056_000
    model = GPT(GPT2_SMALL)
    assert module_params(model) == 124_439_808
    embeddings = model.tok_emb.weight.numel() + model.pos_emb.weight.numel()
    assert module_params(model) - embeddings == 85_056_000


def test_gpt2_small_appendix_f_flops_match_the_hand_worked_formula():
    seq, d, vocab, layers, heads, key_size, ffw = 1024, 768, 50257, 12, 12, 64, 3072
    embeddings = 2 * seq * vocab * d
    assert embeddings == 79_047_426_048
    attention = (
        2 * 3 * seq * d * (key_size * heads)
        + 2 * seq * seq * (key_size * heads)
        + 3 * heads * seq * seq
        + 2 * seq * seq * (key_size * heads)
        + 2 * seq * (key_size * heads) * d
    )
    assert attention == 8_090_812_416
    dense = 2 * seq * (d * ffw * 2)
    assert dense == 9_663_676_416
    logits = 2 * seq * d * vocab
    forward = embeddings + layers * (attention + dense) + logits
    assert forward == 371_148_718_080
    per_token = flops_per_token(GPT2_SMALL)
    assert per_token["chinchilla"] == 3 * forward // seq == 1_087_349_760
    assert per_token["kaplan"] == 6 * 85_056_000


@pytest.mark.parametrize(
    "config",
    [
        ModelConfig(d_model=64, n_layer=2, n_head=4, seq_len=32),
        ModelConfig(d_model=64, n_layer=3, n_head=2, seq_len=16, vocab_size=300, tie_embeddings=False),
        ModelConfig(d_model=48, n_layer=1, n_head=3, seq_len=8, vocab_size=100, gpt2=True),
        ModelConfig(d_model=32, n_layer=2, n_head=1, seq_len=8, vocab_size=50, gpt2=True, tie_embeddings=False),
    ],
)
def test_count_params_formula_equals_the_module(config):
    model = GPT(config)
    total, nonembed = count_params(config)
    assert total == module_params(model)
    vocabulary_matrices = model.tok_emb.weight.numel() + model.pos_emb.weight.numel()
    if not config.tie_embeddings:
        vocabulary_matrices += model.head.weight.numel()
    assert nonembed == total - vocabulary_matrices


def test_kaplan_n_is_close_to_twelve_layers_width_squared():
    config = ModelConfig(d_model=512, n_layer=8, n_head=8, seq_len=256)
    _, nonembed = count_params(config)
    assert nonembed == pytest.approx(12 * 8 * 512**2, rel=0.01)


def test_appendix_f_minus_6n_is_embeddings_logits_and_the_context_terms():
    d, layers, heads, seq, vocab = 128, 4, 4, 256, 256
    per_token = flops_per_token(ModelConfig(d_model=d, n_layer=layers, n_head=heads, seq_len=seq))
    # Appendix F's projection and dense terms are exactly 6 x 12 d^2 per layer, the matrices of N.
    embeddings_and_logits = 3 * 2 * (2 * vocab * d)
    context_terms = 3 * layers * (2 * 2 * seq * d + 3 * heads * seq)
    layer_norm_gains_in_n = 6 * (layers * 2 * d + d)
    expected = embeddings_and_logits + context_terms - layer_norm_gains_in_n
    assert per_token["chinchilla"] - per_token["kaplan"] == expected == 1_996_032


def test_tied_head_shares_the_token_embedding():
    tied = GPT(ModelConfig(d_model=32, n_layer=1, n_head=2, seq_len=8))
    untied = GPT(ModelConfig(d_model=32, n_layer=1, n_head=2, seq_len=8, tie_embeddings=False))
    assert tied.head.weight is tied.tok_emb.weight
    assert untied.head.weight is not untied.tok_emb.weight


def test_initial_loss_is_close_to_uniform_over_the_vocabulary():
    torch.manual_seed(0)
    config = ModelConfig(d_model=64, n_layer=2, n_head=4, seq_len=32)
    model = GPT(config)
    idx = torch.randint(0, 256, (4, 32))
    logits, loss = model(idx, torch.randint(0, 256, (4, 32)))
    assert logits.shape == (4, 32, 256)
    assert loss.item() == pytest.approx(math.log(256), abs=0.1)
    assert model(idx)[1] is None


def test_residual_projections_start_smaller_than_other_matrices():
    torch.manual_seed(0)
    model = GPT(ModelConfig(d_model=256, n_layer=8, n_head=4, seq_len=16))
    assert model.blocks[0].mlp.down.weight.std().item() == pytest.approx(0.02 / 4, rel=0.05)
    assert model.blocks[0].mlp.up.weight.std().item() == pytest.approx(0.02, rel=0.05)


def test_attention_is_causal():
    torch.manual_seed(0)
    model = GPT(ModelConfig(d_model=32, n_layer=2, n_head=2, seq_len=16, gpt2=True)).eval()
    idx = torch.randint(0, 256, (1, 16))
    changed = idx.clone()
    changed[0, 10:] = (changed[0, 10:] + 1) % 256
    with torch.no_grad():
        before, after = model(idx)[0], model(changed)[0]
    assert torch.equal(before[0, :10], after[0, :10])
    assert not torch.allclose(before[0, 10:], after[0, 10:])


def test_input_longer_than_the_context_is_refused():
    model = GPT(ModelConfig(d_model=32, n_layer=1, n_head=2, seq_len=8))
    with pytest.raises(ValueError, match="seq_len"):
        model(torch.zeros((1, 9), dtype=torch.long))


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"d_model": 30, "n_layer": 1, "n_head": 4, "seq_len": 8}, "n_head"),
        ({"d_model": 32, "n_layer": 0, "n_head": 4, "seq_len": 8}, "n_layer"),
        ({"d_model": 32, "n_layer": 1, "n_head": 4, "seq_len": 8.0}, "seq_len"),
        ({"d_model": 32, "n_layer": 1, "n_head": 4, "seq_len": 8, "gpt2": 1}, "gpt2"),
    ],
)
def test_impossible_shapes_name_their_field(kwargs, field):
    with pytest.raises(ValueError, match=f"^{field}: "):
        ModelConfig(**kwargs)


def test_depth_and_heads_follow_the_width():
    assert [depth_for_width(d) for d in (32, 128, 256, 512, 768, 1024)] == [2, 4, 6, 8, 10, 11]
    assert heads_for_width(768) == 12
    assert heads_for_width(128, head_dim=32) == 4
    assert heads_for_width(32) == 1
    with pytest.raises(ValueError, match="^head_dim: "):
        heads_for_width(99, head_dim=64)
