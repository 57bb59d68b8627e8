"""The GPT-2-style decoder (architecture = "gpt2", the default).

The model is pre-norm: each block adds causal self-attention (through
`torch.nn.functional.scaled_dot_product_attention`) and a 4x MLP to the residual stream, and a final
LayerNorm feeds the output head, which shares its matrix with the token embedding by default.
Positions are learned embeddings. `gpt2=True` adds biases to every linear layer and LayerNorm, which
makes the module identical in shape to OpenAI's GPT-2.

Initialisation (as GPT-2): every weight matrix and embedding from N(0, 0.02); the two projections
that write into the residual stream (attention output, MLP output) from N(0, 0.02 / sqrt(2 n_layer))
so the residual variance does not grow with depth; biases zero, LayerNorm gains one.

`parametrization="mup"` (Yang et al. 2022, Tensor Programs V, with AdamW) makes the best learning rate
carry over across widths: relative to `base_width`, hidden matrices (inside the blocks) get learning rate
scaled by base_width / d_model, the logits a base_width / d_model multiplier, attention a 1 / head_dim score
scale, while embeddings, gains and biases keep the base init and learning rate. muP fixes only how these
scale with width; the constants at the base width are free, and we pick ones that train well there:
hidden matrices start from N(0, 1 / fan_in) (variance base_width / d_model times the base width's; the
residual-stream writers again / sqrt(2 n_layer)), and the score scale is sqrt(32) / head_dim, SP's own at
heads of 32 channels. GPT-2's 0.02 at a base width of 32 would be 9x below 1 / sqrt(32), and 1 / head_dim
alone 5.7x below SP there: with them, muP widths 32-256 on Shakespeare (300 short steps, one lr) were no
better than one another and width 256 worse than SP; with these, loss falls with width. With tied
embeddings the one matrix is an input embedding (constant init and lr) and, through the logit multiplier,
a muP readout at once, so no separate readout is needed. The default "sp" is the standard parametrization
above, unchanged. Multipliers are not parameters: counts and FLOPs are the same.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from scaling_cli.model.common import Transformer, score_scale
from scaling_cli.config.model import ModelConfig


class CausalSelfAttention(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.n_head = config.n_head
        self.score_scale = score_scale(config)
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model, bias=config.gpt2)
        self.proj = nn.Linear(config.d_model, config.d_model, bias=config.gpt2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, seq, width = x.shape
        q, k, v = self.qkv(x).split(width, dim=2)
        shape = (batch, seq, self.n_head, width // self.n_head)
        q, k, v = (t.view(shape).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=self.score_scale)
        return self.proj(y.transpose(1, 2).reshape(batch, seq, width))


class MLP(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.up = nn.Linear(config.d_model, config.d_ff, bias=config.gpt2)
        self.down = nn.Linear(config.d_ff, config.d_model, bias=config.gpt2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.gelu(self.up(x), approximate="tanh"))


class Block(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.ln_attn = nn.LayerNorm(config.d_model, bias=config.gpt2)
        self.attn = CausalSelfAttention(config)
        self.ln_mlp = nn.LayerNorm(config.d_model, bias=config.gpt2)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_attn(x))
        return x + self.mlp(self.ln_mlp(x))


class GPT(Transformer):
    """Decoder-only transformer; forward(idx, targets) returns (logits, mean cross-entropy or None)."""

    def __init__(self, config: ModelConfig):
        super().__init__(config)
        self.pos_emb = nn.Embedding(config.seq_len, config.d_model)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.d_model, bias=config.gpt2)
        self.head = self.output_head()
        self._init_weights()

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        positions = torch.arange(self.context_length(idx), device=idx.device)
        x = self.tok_emb(idx) + self.pos_emb(positions)
        for block in self.blocks:
            x = block(x)
        return self.output(self.ln_f(x), targets)
