"""What every built-in architecture shares: GPT-2's init, muP's init and learning-rate groups, the loss."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from scaling_cli.config.model import ModelConfig

INIT_STD = 0.02
# Bumped whenever muP's init, multipliers or optimizer groups change, so runs trained under the old rule get new
# run ids instead of being taken for finished runs of the new one. 2: hidden init N(0, 1/fan_in), scores
# sqrt(32)/head_dim. 3: hidden matrices' weight decay scaled by d_model / base_width (lr x decay width-independent).
MUP_REVISION = 3
RESIDUAL_WRITERS = ("attn.proj.weight", "mlp.down.weight")
MUP_REFERENCE_HEAD_DIM = 32  # muP attention scale = sqrt(this) / head_dim: equal to SP at heads of 32 channels


def score_scale(config: ModelConfig) -> float | None:
    """muP: q.k / head_dim keeps attention logits of order one as heads widen; None is torch's 1/sqrt(head_dim)."""
    if config.parametrization != "mup":
        return None
    return math.sqrt(MUP_REFERENCE_HEAD_DIM) / config.head_dim


class Transformer(nn.Module):
    """Base of the built-in models: init, AdamW groups and the loss, from `self.config` and parameter names.

    Hidden matrices are the >= 2-d parameters under `blocks.`; residual-stream writers end in RESIDUAL_WRITERS.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.tok_emb = nn.Embedding(config.vocab_size, config.d_model)  # registered first: init draws in order

    def output_head(self) -> nn.Linear:
        """The projection to logits, sharing the token embedding's matrix when tied; made after the blocks, so
        that an untied head draws its init after them, as it always has."""
        head = nn.Linear(self.config.d_model, self.config.vocab_size, bias=False)
        if self.config.tie_embeddings:
            head.weight = self.tok_emb.weight
        return head

    def context_length(self, idx: torch.Tensor) -> int:
        """Tokens per row of a batch, at most the model's context."""
        seq = idx.shape[1]
        if seq > self.config.seq_len:
            raise ValueError(f"seq_len: input of {seq} tokens is longer than the context {self.config.seq_len}")
        return seq

    def _init_weights(self) -> None:
        for name, param in self.named_parameters():
            if name.endswith("bias"):
                nn.init.zeros_(param)
            elif param.dim() == 1:
                nn.init.ones_(param)
            else:
                nn.init.normal_(param, 0.0, self._init_std(name, param))

    def _init_std(self, name: str, matrix: torch.Tensor) -> float:
        """GPT-2's 0.02 under "sp"; under "mup" 1 / sqrt(fan_in) for hidden matrices (so base_width / d_model
        times the base width's variance), 0.02 for embeddings. Residual-stream writers get 1 / sqrt(2 n_layer) more."""
        std = INIT_STD
        if self.config.parametrization == "mup" and is_hidden_matrix(name, matrix):
            std = 1.0 / math.sqrt(matrix.shape[1])
        if name.endswith(RESIDUAL_WRITERS):
            std /= math.sqrt(2 * self.config.n_layer)
        return std

    def optimizer_groups(self, base_lr: float, weight_decay: float) -> list[dict]:
        """AdamW parameter groups: weight decay on matrices and embeddings only, and each group's `lr_scale`.

        A trainer sets every group's lr to schedule(step) * group["lr_scale"]. Under "sp" there are two groups at
        scale 1; under "mup" hidden matrices form a third group at scale base_width / d_model, whose weight decay
        is divided by that scale: torch's AdamW decays by lr x decay, which then stays the base width's at every
        width (the muP reference implementation's coupling), instead of shrinking as the lr does.
        """
        hidden, at_base_lr, vectors = [], [], []  # at_base_lr: embeddings (and, under sp, every matrix)
        for name, param in self.named_parameters():
            if param.dim() < 2:
                vectors.append(param)
            elif self.config.parametrization == "mup" and is_hidden_matrix(name, param):
                hidden.append(param)
            else:
                at_base_lr.append(param)
        groups = [
            {"params": at_base_lr, "weight_decay": weight_decay, "lr_scale": 1.0},
            {"params": vectors, "weight_decay": 0.0, "lr_scale": 1.0},
        ]
        if hidden:
            ratio = self.config.width_ratio
            groups.append({"params": hidden, "weight_decay": weight_decay / ratio, "lr_scale": ratio})
        for group in groups:
            group["lr"] = base_lr * group["lr_scale"]
        return groups

    def output(self, x: torch.Tensor, targets: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits from the final hidden state (muP's width multiplier applied) and the mean cross-entropy."""
        logits = self.head(x)
        if self.config.parametrization == "mup":
            logits = logits * self.config.width_ratio
        if targets is None:
            return logits, None
        flat = logits.view(-1, logits.size(-1)).float()
        loss = F.cross_entropy(flat, targets.reshape(-1))
        if self.training and self.config.z_loss:
            loss = loss + self.config.z_loss * torch.logsumexp(flat, dim=-1).pow(2).mean()
        return logits, loss


def is_hidden_matrix(name: str, param: torch.Tensor) -> bool:
    """A weight matrix inside a block: both of its dimensions grow with the width."""
    return name.startswith("blocks.") and param.dim() >= 2
