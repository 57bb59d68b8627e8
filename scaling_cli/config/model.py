"""The shape of one model (`ModelConfig`), each field declared once with its check and doc, and the depth and head
rules that size a grid."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from scaling_cli.validate import PARAMETRIZATIONS, REQUIRED
from scaling_cli.validate import boolean, check_fields, integer, number, one_of, optional, setting

BUILT_IN = ("gpt2", "llama")
# Widths (and head counts) the config accepts: fit/flop_rule tabulates k(N) up to 1e14 parameters, which at a
# fixed depth of 1-2 layers needs d_model of a few million; a spec's typo is still caught far below overflow.
MAX_WIDTH = 1 << 24
MLP_EXPANSION = 4  # gpt2's MLP width over d_model
LLAMA_MLP_RATIO = 8 / 3  # SwiGLU's three matrices at 8/3 d cost what a 4x two-matrix MLP costs
LLAMA_FFN_MULTIPLE = 32  # Llama rounds up to 256; 32 keeps CPU-sized widths near 8/3 d (d = 64 -> 192)
LLAMA_ROPE_THETA = 10000.0
# Fields only a llama (or plug-in) model reads: None/False/0 under gpt2, so gpt2 configs and run ids are unchanged.
LLAMA_FIELDS = ("n_kv_head", "ffn_size", "mlp_ratio", "ffn_multiple", "rope_theta", "qk_norm", "z_loss")


def _architecture(value: object) -> str:
    if not isinstance(value, str) or not (value in BUILT_IN or _is_plugin_name(value)):
        raise ValueError(f"must be one of {', '.join(BUILT_IN)} or 'module:function', got {value!r}")
    return value


def _is_plugin_name(value: str) -> bool:
    module, _, function = value.partition(":")
    parts = [*module.split("."), function]
    return bool(module) and all(part.isidentifier() for part in parts)


_architecture.kind = "string"
_architecture.rule = "gpt2, llama or module:function"


@dataclass(frozen=True)
class ModelConfig:
    """Shape of one model. Raises ValueError("<field>: <problem>") when the shape is impossible.

    `architecture`: "gpt2" (default), "llama", or "module:function" (a plug-in, see model/plugin.py).
    Llama's options left unset get their defaults here (n_kv_head = n_head, ffn_size = mlp_ratio x d_model
    rounded up to ffn_multiple, rope_theta 10000), so a config always says what it trains.
    """

    d_model: int = setting(REQUIRED, integer(1, MAX_WIDTH), "width of the residual stream", axis=True)
    n_layer: int = setting(
        REQUIRED,
        integer(1, 1 << 16),
        'transformer blocks; "auto" (the spec\'s default): round(sqrt(d_model / 8)), at least 2',
        spec_default="auto",
    )
    n_head: int = setting(
        REQUIRED,
        integer(1, MAX_WIDTH),
        "attention heads (must divide d_model); left out: heads of about head_dim channels",
        spec_default=None,
    )
    seq_len: int = setting(REQUIRED, integer(2, 1 << 20), "context length in tokens, shared by every size")
    vocab_size: int = setting(
        256,
        integer(2, 1 << 24),
        "vocabulary size: required with tokenizer = 'bpe'; bytes and pretrained tokenizers bring their own",
        key="vocab_size",
        spec_default=None,
    )
    tie_embeddings: bool = setting(True, boolean, "share the input embedding with the output projection")
    gpt2: bool = setting(False, boolean, "GPT-2's biases in linear layers and layer norms (gpt2 architecture)")
    parametrization: str = setting(
        "sp", one_of(PARAMETRIZATIONS), "sp (standard) or mup (muP: one learning rate transfers across widths)"
    )
    base_width: int | None = setting(
        None,
        optional(integer(1, 1 << 16)),
        "muP only: the width whose learning rate and init the others scale from (spec default: smallest width)",
    )
    architecture: str = setting("gpt2", _architecture, "gpt2, llama, or a plug-in 'module:function' (model/plugin.py)")
    n_kv_head: int | None = setting(
        None, optional(integer(1, MAX_WIDTH)), "llama: key/value heads (grouped-query attention); default n_head"
    )
    ffn_size: int | None = setting(
        None,
        optional(integer(1, 1 << 28)),
        "llama: SwiGLU hidden width; default mlp_ratio x d_model rounded up to ffn_multiple",
    )
    mlp_ratio: float | None = setting(
        None,
        optional(number(0.0, 64.0, low_open=True)),
        f"llama: ffn_size over d_model (default {LLAMA_MLP_RATIO:.4g})",
    )
    ffn_multiple: int | None = setting(
        None, optional(integer(1, 1 << 16)), f"llama: ffn_size is rounded up to this (default {LLAMA_FFN_MULTIPLE})"
    )
    rope_theta: float | None = setting(
        None, optional(number(1.0, 1e12)), f"llama: RoPE base (default {LLAMA_ROPE_THETA:g})"
    )
    qk_norm: bool = setting(False, boolean, "llama: RMSNorm on each head's queries and keys before RoPE")
    z_loss: float = setting(
        0.0, number(0.0, 1.0), "llama: weight of mean(logsumexp(logits)^2) added to the training loss"
    )

    def __post_init__(self) -> None:
        check_fields(self)
        if self.d_model % self.n_head:
            raise ValueError(f"n_head: d_model {self.d_model} is not divisible by n_head {self.n_head}")
        if self.base_width is not None and self.parametrization != "mup":
            raise ValueError('base_width: only applies with parametrization = "mup"')
        if self.architecture == "llama":
            _resolve_llama(self)
        else:
            _check_not_llama(self)

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_head

    @property
    def d_ff(self) -> int:
        return self.ffn_size if self.architecture == "llama" else MLP_EXPANSION * self.d_model

    @property
    def width_ratio(self) -> float:
        """base_width / d_model under muP (the factor on hidden lr, hidden init variance and logits), else 1."""
        if self.parametrization != "mup":
            return 1.0
        return (self.base_width or self.d_model) / self.d_model

    def to_dict(self) -> dict:
        return asdict(self)


def _resolve_llama(config: ModelConfig) -> None:
    if config.gpt2:
        raise ValueError("gpt2: GPT-2's biases do not apply to architecture = 'llama'")
    kv = config.n_kv_head or config.n_head
    if config.n_head % kv:
        raise ValueError(f"n_kv_head: n_head {config.n_head} is not divisible by n_kv_head {kv}")
    if config.ffn_size is not None and config.mlp_ratio is not None:
        raise ValueError("ffn_size: give ffn_size or mlp_ratio, not both")
    ratio = config.mlp_ratio or LLAMA_MLP_RATIO
    multiple = config.ffn_multiple or LLAMA_FFN_MULTIPLE
    ffn = config.ffn_size or multiple * math.ceil(ratio * config.d_model / multiple)
    if config.head_dim % 2:
        raise ValueError(f"n_head: RoPE needs an even head_dim, got {config.head_dim}")
    resolved = {"n_kv_head": kv, "ffn_size": ffn, "mlp_ratio": None, "ffn_multiple": None}
    resolved["rope_theta"] = float(config.rope_theta or LLAMA_ROPE_THETA)
    for name, value in resolved.items():
        object.__setattr__(config, name, value)


def _check_not_llama(config: ModelConfig) -> None:
    for name in LLAMA_FIELDS:
        if getattr(config, name) not in (None, False, 0, 0.0):
            raise ValueError(f"{name}: applies only to architecture = 'llama'")


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
