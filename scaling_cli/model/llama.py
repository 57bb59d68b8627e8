"""The Llama-style decoder (architecture = "llama"): RoPE, RMSNorm, SwiGLU, grouped-query attention, no biases.

Laid out as Hugging Face's LlamaForCausalLM computes (RoPE rotates the two halves of each head, RMSNorm with
eps 1e-6), so an export maps weights one to one. Options: `n_kv_head` key/value heads shared by groups of query
heads, `qk_norm` (an RMSNorm over each head's queries and keys before RoPE, as OLMo 2 and Qwen 3 do), `z_loss`
(PaLM's auxiliary mean(logsumexp(logits)^2), added to the training loss only, so val_loss stays cross-entropy),
tied or untied embeddings. muP, init and optimizer groups are the gpt2 model's (model/common.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from scaling_cli.model.common import Transformer, score_scale
from scaling_cli.config.model import ModelConfig

RMS_EPS = 1e-6


def rope_tables(config: ModelConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of every position's rotation angles, [seq_len, head_dim], halves repeated (HF's layout)."""
    half = torch.arange(0, config.head_dim, 2, dtype=torch.int64).float() / config.head_dim
    inv_freq = 1.0 / (config.rope_theta**half)
    angles = torch.outer(torch.arange(config.seq_len).float(), inv_freq)
    angles = torch.cat((angles, angles), dim=-1)
    return angles.cos(), angles.sin()


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    first, second = x.chunk(2, dim=-1)
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)  # bf16 queries stay bf16 under autocast, as HF casts
    return x * cos + torch.cat((-second, first), dim=-1) * sin


class Attention(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.n_head, self.n_kv_head, self.head_dim = config.n_head, config.n_kv_head, config.head_dim
        self.score_scale = score_scale(config)
        kv_width = config.n_kv_head * config.head_dim
        self.q = nn.Linear(config.d_model, config.d_model, bias=False)
        self.k = nn.Linear(config.d_model, kv_width, bias=False)
        self.v = nn.Linear(config.d_model, kv_width, bias=False)
        self.proj = nn.Linear(config.d_model, config.d_model, bias=False)
        if config.qk_norm:
            self.q_norm = nn.RMSNorm(config.head_dim, eps=RMS_EPS)
            self.k_norm = nn.RMSNorm(config.head_dim, eps=RMS_EPS)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        batch, seq, width = x.shape
        q = self.q(x).view(batch, seq, self.n_head, self.head_dim)
        k = self.k(x).view(batch, seq, self.n_kv_head, self.head_dim)
        v = self.v(x).view(batch, seq, self.n_kv_head, self.head_dim).transpose(1, 2)
        if hasattr(self, "q_norm"):
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = rotate(q.transpose(1, 2), cos, sin), rotate(k.transpose(1, 2), cos, sin)
        grouped = self.n_kv_head != self.n_head
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=self.score_scale, enable_gqa=grouped)
        return self.proj(y.transpose(1, 2).reshape(batch, seq, width))


class SwiGLU(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.gate = nn.Linear(config.d_model, config.d_ff, bias=False)
        self.up = nn.Linear(config.d_model, config.d_ff, bias=False)
        self.down = nn.Linear(config.d_ff, config.d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.silu(self.gate(x)) * self.up(x))


class Block(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.norm_attn = nn.RMSNorm(config.d_model, eps=RMS_EPS)
        self.attn = Attention(config)
        self.norm_mlp = nn.RMSNorm(config.d_model, eps=RMS_EPS)
        self.mlp = SwiGLU(config)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm_attn(x), cos, sin)
        return x + self.mlp(self.norm_mlp(x))


class Llama(Transformer):
    """Llama-style decoder; forward(idx, targets) returns (logits, mean cross-entropy [+ z-loss when training])."""

    def __init__(self, config: ModelConfig):
        super().__init__(config)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.norm = nn.RMSNorm(config.d_model, eps=RMS_EPS)
        self.head = self.output_head()
        cos, sin = rope_tables(config)
        self.register_buffer("rope_cos", cos, persistent=False)  # derived from the config: not in checkpoints
        self.register_buffer("rope_sin", sin, persistent=False)
        self._init_weights()

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        seq = self.context_length(idx)
        cos, sin = self.rope_cos[:seq], self.rope_sin[:seq]
        x = self.tok_emb(idx)
        for block in self.blocks:
            x = block(x, cos, sin)
        return self.output(self.norm(x), targets)
