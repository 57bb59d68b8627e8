"""The shape of one model (`ModelConfig`), checked once, and the depth and head rules that size a grid."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from scaling_cli.validate import PARAMETRIZATIONS, boolean, check_fields, integer, number, optional

BUILT_IN = ("gpt2", "llama")
MLP_EXPANSION = 4  # gpt2's MLP width over d_model
LLAMA_MLP_RATIO = 8 / 3  # SwiGLU's three matrices at 8/3 d cost what a 4x two-matrix MLP costs
LLAMA_FFN_MULTIPLE = 32  # Llama rounds up to 256; 32 keeps CPU-sized widths near 8/3 d (d = 64 -> 192)
LLAMA_ROPE_THETA = 10000.0
# Fields only a llama (or plug-in) model reads: None/False/0 under gpt2, so gpt2 configs and run ids are unchanged.
LLAMA_FIELDS = ("n_kv_head", "ffn_size", "mlp_ratio", "ffn_multiple", "rope_theta", "qk_norm", "z_loss")


@dataclass(frozen=True)
class ModelConfig:
    """Shape of one model. Raises ValueError("<field>: <problem>") when the shape is impossible.

    `architecture`: "gpt2" (default), "llama", or "module:function" (a plug-in, see model/plugin.py).
    Llama's options left unset get their defaults here (n_kv_head = n_head, ffn_size = mlp_ratio x d_model
    rounded up to ffn_multiple, rope_theta 10000), so a config always says what it trains.
    """

    d_model: int
    n_layer: int
    n_head: int
    seq_len: int
    vocab_size: int = 256
    tie_embeddings: bool = True
    gpt2: bool = False
    parametrization: str = "sp"
    base_width: int | None = None  # muP only: the width whose learning rate and init the others scale from
    architecture: str = "gpt2"
    n_kv_head: int | None = None  # llama: key/value heads (grouped-query attention); n_head = full attention
    ffn_size: int | None = None  # llama: SwiGLU hidden width; None = mlp_ratio x d_model rounded up to ffn_multiple
    mlp_ratio: float | None = None
    ffn_multiple: int | None = None
    rope_theta: float | None = None
    qk_norm: bool = False  # llama: RMSNorm on each head's queries and keys before RoPE
    z_loss: float = 0.0  # llama: weight of mean(logsumexp(logits)^2) added to the training loss

    def __post_init__(self) -> None:
        check_fields(self, _SHAPE_CHECKS)
        if self.d_model % self.n_head:
            raise ValueError(f"n_head: d_model {self.d_model} is not divisible by n_head {self.n_head}")
        _check_parametrization(self)
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


def _architecture(value: object) -> str:
    if not isinstance(value, str) or not (value in BUILT_IN or _is_plugin_name(value)):
        raise ValueError(f"must be one of {', '.join(BUILT_IN)} or 'module:function', got {value!r}")
    return value


def _is_plugin_name(value: str) -> bool:
    module, _, function = value.partition(":")
    parts = [*module.split("."), function]
    return bool(module) and all(part.isidentifier() for part in parts)


_SHAPE_CHECKS = {
    **{name: integer(1) for name in ("d_model", "n_layer", "n_head", "seq_len", "vocab_size")},
    "tie_embeddings": boolean,
    "gpt2": boolean,
    "architecture": _architecture,
    "n_kv_head": optional(integer(1)),
    "ffn_size": optional(integer(1)),
    "mlp_ratio": optional(number(0.0, 64.0, low_open=True)),
    "ffn_multiple": optional(integer(1)),
    "rope_theta": optional(number(1.0)),
    "qk_norm": boolean,
    "z_loss": number(0.0, 1.0),
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
