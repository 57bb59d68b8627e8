"""Parameter and FLOP accounting of the built-in architectures, by formula (tests check it against the modules).

Conventions: `count_params` gives every parameter and Kaplan's N (without token and position embeddings and
without an untied output head, which is a vocabulary embedding too); `flops_per_token` gives Chinchilla's
Appendix F training FLOPs (forward x 3) and Kaplan's 6N. Llama extends Appendix F: grouped-query attention's
K and V projections are d x (n_kv_head x head_dim), and SwiGLU's three matrices cost 2 x 3 x d x ffn per token;
RoPE, RMSNorm and the gating product are elementwise and, like GPT-2's LayerNorm and GELU, not counted.
"""

from __future__ import annotations

from scaling_cli.config.model import ModelConfig


def count_params(config: ModelConfig) -> tuple[int, int]:
    """(all parameters, Kaplan's non-embedding N), by formula; equals counting the built module's parameters."""
    if config.architecture == "llama":
        nonembed, embeddings = _llama_params(config)
    else:
        nonembed, embeddings = _gpt2_params(config)
    if not config.tie_embeddings:
        embeddings += config.vocab_size * config.d_model
    return nonembed + embeddings, nonembed


def _gpt2_params(config: ModelConfig) -> tuple[int, int]:
    d, bias = config.d_model, int(config.gpt2)
    layer_norm = d * (1 + bias)
    attention = d * 3 * d + 3 * d * bias + d * d + d * bias
    mlp = d * config.d_ff + config.d_ff * bias + config.d_ff * d + d * bias
    per_layer = 2 * layer_norm + attention + mlp
    nonembed = config.n_layer * per_layer + layer_norm
    return nonembed, config.vocab_size * d + config.seq_len * d


def _llama_params(config: ModelConfig) -> tuple[int, int]:
    d, kv_width = config.d_model, config.n_kv_head * config.head_dim
    attention = 2 * d * d + 2 * d * kv_width + (2 * config.head_dim if config.qk_norm else 0)
    per_layer = 2 * d + attention + 3 * d * config.d_ff
    return config.n_layer * per_layer + d, config.vocab_size * d


def chinchilla_forward_flops_per_sequence(config: ModelConfig) -> int:
    """Forward FLOPs for one sequence of seq_len tokens, term by term as in Hoffmann et al. Appendix F."""
    seq, d, vocab, heads = config.seq_len, config.d_model, config.vocab_size, config.n_head
    attn_width = config.head_dim * heads
    kv_width = config.head_dim * (config.n_kv_head or heads)
    mlp_matrices = 3 if config.architecture == "llama" else 2  # SwiGLU: gate, up, down
    embeddings = 2 * seq * vocab * d
    attention = (
        2 * seq * d * (attn_width + 2 * kv_width)  # Q, K, V projections (K, V narrower under GQA)
        + 2 * seq * seq * attn_width  # key @ query logits
        + 3 * heads * seq * seq  # softmax
        + 2 * seq * seq * attn_width  # softmax @ value
        + 2 * seq * attn_width * d  # output projection
    )
    dense = 2 * seq * (d * config.d_ff * mlp_matrices)
    logits = 2 * seq * d * vocab
    return embeddings + config.n_layer * (attention + dense) + logits


def flops_per_token(config: ModelConfig) -> dict[str, int]:
    """Training FLOPs per token: `chinchilla` (Appendix F forward x 3) and `kaplan` (6 N non-embedding)."""
    forward = chinchilla_forward_flops_per_sequence(config)
    _, nonembed = count_params(config)
    return {"chinchilla": 3 * forward // config.seq_len, "kaplan": 6 * nonembed}
