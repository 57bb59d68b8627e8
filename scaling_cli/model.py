"""The decoder-only GPT that every run trains, and its parameter and FLOP accounting.

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

Accounting follows the literature: `count_params` gives every parameter and Kaplan's N (without
token and position embeddings, and without an untied output head, which is a vocabulary embedding
too); `flops_per_token` gives Chinchilla's Appendix F training FLOPs and Kaplan's 6N.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from scaling_cli.validate import boolean, check_fields, integer

MLP_EXPANSION = 4
INIT_STD = 0.02
PARAMETRIZATIONS = ("sp", "mup")
# Bumped whenever muP's init or multipliers change, so runs trained under the old rule get new run ids
# instead of being taken for finished runs of the new one. 2: hidden init N(0, 1/fan_in), scores sqrt(32)/head_dim.
MUP_REVISION = 2
RESIDUAL_WRITERS = ("attn.proj.weight", "mlp.down.weight")
MUP_REFERENCE_HEAD_DIM = 32  # muP attention scale = sqrt(this) / head_dim: equal to SP at heads of 32 channels


@dataclass(frozen=True)
class ModelConfig:
    """Shape of one GPT. Raises ValueError("<field>: <problem>") when the shape is impossible."""

    d_model: int
    n_layer: int
    n_head: int
    seq_len: int
    vocab_size: int = 256
    tie_embeddings: bool = True
    gpt2: bool = False
    parametrization: str = "sp"
    base_width: int | None = None  # muP only: the width whose learning rate and init the others scale from

    def __post_init__(self) -> None:
        check_fields(self, _SHAPE_CHECKS)
        if self.d_model % self.n_head:
            raise ValueError(f"n_head: d_model {self.d_model} is not divisible by n_head {self.n_head}")
        _check_parametrization(self)

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_head

    @property
    def d_ff(self) -> int:
        return MLP_EXPANSION * self.d_model

    @property
    def width_ratio(self) -> float:
        """base_width / d_model under muP (the factor on hidden lr, hidden init variance and logits), else 1."""
        if self.parametrization != "mup":
            return 1.0
        return (self.base_width or self.d_model) / self.d_model

    def to_dict(self) -> dict:
        return asdict(self)


def _check_parametrization(config: ModelConfig) -> None:
    if config.parametrization not in PARAMETRIZATIONS:
        choices = ", ".join(PARAMETRIZATIONS)
        raise ValueError(f"parametrization: must be one of {choices}, got {config.parametrization!r}")
    base = config.base_width
    if base is None:
        return
    if type(base) is not int or base < 1:
        raise ValueError(f"base_width: must be a positive integer, got {base!r}")
    if config.parametrization != "mup":
        raise ValueError('base_width: only applies with parametrization = "mup"')


_SHAPE_CHECKS = {
    **{name: integer(1) for name in ("d_model", "n_layer", "n_head", "seq_len", "vocab_size")},
    "tie_embeddings": boolean,
    "gpt2": boolean,
}


def depth_for_width(d_model: int) -> int:
    """Default number of layers for a width: depth grows as the square root of width.

    round(sqrt(d_model / 8)), at least 2: 128 -> 4, 256 -> 6, 512 -> 8, 768 -> 10, 1024 -> 11. Keeping the
    aspect ratio d_model / n_layer in the 30-100 range that Kaplan et al. found to matter little.
    """
    if d_model < 1:
        raise ValueError(f"d_model: must be at least 1, got {d_model}")
    return max(2, round(math.sqrt(d_model / 8)))


def heads_for_width(d_model: int, head_dim: int = 64) -> int:
    """Number of attention heads of about `head_dim` channels each (at least one), dividing d_model."""
    if head_dim < 1:
        raise ValueError(f"head_dim: must be at least 1, got {head_dim}")
    n_head = max(1, round(d_model / head_dim))
    if d_model % n_head:
        raise ValueError(f"head_dim: d_model {d_model} does not split into heads of {head_dim}")
    return n_head


class CausalSelfAttention(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.n_head = config.n_head
        # muP: q.k / head_dim keeps attention logits of order one as heads widen; None is torch's 1/sqrt(head_dim)
        mup = config.parametrization == "mup"
        self.score_scale = math.sqrt(MUP_REFERENCE_HEAD_DIM) / config.head_dim if mup else None
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


class GPT(nn.Module):
    """Decoder-only transformer; forward(idx, targets) returns (logits, mean cross-entropy or None)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.tok_emb = nn.Embedding(config.vocab_size, config.d_model)
        self.pos_emb = nn.Embedding(config.seq_len, config.d_model)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.d_model, bias=config.gpt2)
        self.head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.head.weight = self.tok_emb.weight
        self._init_weights()

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
        if self.config.parametrization == "mup" and _is_hidden_matrix(name, matrix):
            std = 1.0 / math.sqrt(matrix.shape[1])
        if name.endswith(RESIDUAL_WRITERS):
            std /= math.sqrt(2 * self.config.n_layer)
        return std

    def optimizer_groups(self, base_lr: float, weight_decay: float) -> list[dict]:
        """AdamW parameter groups: weight decay on matrices and embeddings only, and each group's `lr_scale`.

        A trainer sets every group's lr to schedule(step) * group["lr_scale"]. Under "sp" this is today's
        two groups at scale 1; under "mup" hidden matrices form a third group at scale base_width / d_model.
        """
        hidden, at_base_lr, vectors = [], [], []  # at_base_lr: embeddings (and, under sp, every matrix)
        for name, param in self.named_parameters():
            if param.dim() < 2:
                vectors.append(param)
            elif self.config.parametrization == "mup" and _is_hidden_matrix(name, param):
                hidden.append(param)
            else:
                at_base_lr.append(param)
        groups = [
            {"params": at_base_lr, "weight_decay": weight_decay, "lr_scale": 1.0},
            {"params": vectors, "weight_decay": 0.0, "lr_scale": 1.0},
        ]
        if hidden:
            groups.append({"params": hidden, "weight_decay": weight_decay, "lr_scale": self.config.width_ratio})
        for group in groups:
            group["lr"] = base_lr * group["lr_scale"]
        return groups

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        seq = idx.shape[1]
        if seq > self.config.seq_len:
            raise ValueError(f"seq_len: input of {seq} tokens is longer than the context {self.config.seq_len}")
        positions = torch.arange(seq, device=idx.device)
        x = self.tok_emb(idx) + self.pos_emb(positions)
        for block in self.blocks:
            x = block(x)
        logits = self.head(self.ln_f(x))
        if self.config.parametrization == "mup":
            logits = logits * self.config.width_ratio
        if targets is None:
            return logits, None
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)).float(), targets.reshape(-1))
        return logits, loss


def _is_hidden_matrix(name: str, param: torch.Tensor) -> bool:
    """A weight matrix inside a block: both of its dimensions grow with the width."""
    return name.startswith("blocks.") and param.dim() >= 2


def count_params(config: ModelConfig) -> tuple[int, int]:
    """(all parameters, Kaplan's non-embedding N), by formula; equals counting GPT(config)'s parameters.

    N leaves out the token embedding, the position embedding and an untied output head.
    """
    d, bias = config.d_model, int(config.gpt2)
    layer_norm = d * (1 + bias)
    attention = d * 3 * d + 3 * d * bias + d * d + d * bias
    mlp = d * config.d_ff + config.d_ff * bias + config.d_ff * d + d * bias
    per_layer = 2 * layer_norm + attention + mlp
    nonembed = config.n_layer * per_layer + layer_norm
    embeddings = config.vocab_size * d + config.seq_len * d
    if not config.tie_embeddings:
        embeddings += config.vocab_size * d
    return nonembed + embeddings, nonembed


def chinchilla_forward_flops_per_sequence(config: ModelConfig) -> int:
    """Forward FLOPs for one sequence of seq_len tokens, term by term as in Hoffmann et al. Appendix F."""
    seq, d, vocab, heads = config.seq_len, config.d_model, config.vocab_size, config.n_head
    attn_width = config.head_dim * heads
    embeddings = 2 * seq * vocab * d
    attention = (
        2 * 3 * seq * d * attn_width  # Q, K, V projections
        + 2 * seq * seq * attn_width  # key @ query logits
        + 3 * heads * seq * seq  # softmax
        + 2 * seq * seq * attn_width  # softmax @ value
        + 2 * seq * attn_width * d  # output projection
    )
    dense = 2 * seq * (d * config.d_ff * 2)
    logits = 2 * seq * d * vocab
    return embeddings + config.n_layer * (attention + dense) + logits


def flops_per_token(config: ModelConfig) -> dict[str, int]:
    """Training FLOPs per token: `chinchilla` (Appendix F forward x 3) and `kaplan` (6 N non-embedding)."""
    forward = chinchilla_forward_flops_per_sequence(config)
    _, nonembed = count_params(config)
    return {"chinchilla": 3 * forward // config.seq_len, "kaplan": 6 * nonembed}
