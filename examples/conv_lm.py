"""A complete `scale` plug-in model: a causal convolutional language model (`architecture = "conv_lm:build"`).

Run from this directory (or with it on PYTHONPATH):  scale sweep my-sweep.toml  with
    [model]
    architecture = "conv_lm:build"
The contract: `build(config)` gets a `scaling_cli.model.ModelConfig` (read the shape fields you need:
d_model, n_layer, n_head, seq_len, vocab_size, tie_embeddings) and returns `(model, counts)`. `model` is a
torch.nn.Module whose forward(idx, targets=None) returns (logits [batch, seq, vocab], mean cross-entropy in
nats per token, or None without targets); it must be causal (position t sees tokens <= t), and it is
initialised here, after `scale` seeds torch. `counts` gives "params" (must equal the module's parameter
count), "params_nonembed" (Kaplan's N: without embeddings and an untied head) and "flops_per_token" (training
FLOPs per token, the compute C of the fits). A model that breaks the contract is refused when the sweep is
planned, before anything trains.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

KERNEL = 4  # each block mixes the current token with the 3 before it


class CausalConvBlock(nn.Module):
    """Pre-norm residual block: a depthwise causal convolution over time, then a 4x GELU MLP."""

    def __init__(self, width: int):
        super().__init__()
        self.norm_mix = nn.LayerNorm(width)
        self.mix = nn.Conv1d(width, width, KERNEL, groups=width)  # depthwise: width x KERNEL weights + bias
        self.norm_mlp = nn.LayerNorm(width)
        self.up = nn.Linear(width, 4 * width)
        self.down = nn.Linear(4 * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm_mix(x).transpose(1, 2)  # [batch, width, seq]
        h = self.mix(F.pad(h, (KERNEL - 1, 0)))  # left padding only: causal
        x = x + h.transpose(1, 2)
        return x + self.down(F.gelu(self.up(self.norm_mlp(x))))


class ConvLM(nn.Module):
    def __init__(self, vocab: int, width: int, depth: int, tied: bool):
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.blocks = nn.ModuleList(CausalConvBlock(width) for _ in range(depth))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab, bias=False)
        if tied:
            self.head.weight = self.embed.weight
        for module in self.modules():
            if isinstance(module, nn.Linear | nn.Embedding):
                nn.init.normal_(module.weight, 0.0, 0.02)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        x = self.embed(idx)
        for block in self.blocks:
            x = block(x)
        logits = self.head(self.norm(x))
        if targets is None:
            return logits, None
        return logits, F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())


def counts(vocab: int, width: int, depth: int, tied: bool) -> dict:
    """Parameters by formula (the plan checks them against the module) and training FLOPs per token."""
    per_block = 2 * 2 * width + width * KERNEL + width + (width * 4 * width + 4 * width) + (4 * width * width + width)
    nonembed = depth * per_block + 2 * width  # blocks and the final norm
    embeddings = vocab * width * (1 if tied else 2)
    matmuls = depth * (width * KERNEL + 8 * width * width) + width * vocab  # multiply-adds per token, forward
    return {"params": nonembed + embeddings, "params_nonembed": nonembed, "flops_per_token": 6 * matmuls}


def build(config):
    """scale's entry point: (model, counts) for one size of the sweep (n_head is not used by this model)."""
    shape = (config.vocab_size, config.d_model, config.n_layer, config.tie_embeddings)
    return ConvLM(*shape), counts(*shape)
