"""Architectures behind one contract: `build_model(config)` gives an nn.Module whose forward(idx, targets) returns
(logits, loss), and `count_params` / `flops_per_token` account for it by formula.

Built in: "gpt2" (model/gpt2.py, the default) and "llama" (model/llama.py); "module:function" names a user's
plug-in (model/plugin.py). Shapes and options live in `ModelConfig` (model/config.py), accounting in counts.py.
"""

from scaling_cli.model.common import INIT_STD, MUP_REFERENCE_HEAD_DIM, MUP_REVISION, RESIDUAL_WRITERS
from scaling_cli.config.model import (
    BUILT_IN,
    LLAMA_FIELDS,
    MLP_EXPANSION,
    PARAMETRIZATIONS,
    ModelConfig,
    depth_for_width,
    heads_for_width,
)
from scaling_cli.model.counts import chinchilla_forward_flops_per_sequence
from scaling_cli.model.gpt2 import GPT
from scaling_cli.model.llama import Llama
from scaling_cli.model.plugin import build_model, count_params, flops_per_token

__all__ = [
    "BUILT_IN",
    "GPT",
    "INIT_STD",
    "LLAMA_FIELDS",
    "MLP_EXPANSION",
    "MUP_REFERENCE_HEAD_DIM",
    "MUP_REVISION",
    "PARAMETRIZATIONS",
    "RESIDUAL_WRITERS",
    "Llama",
    "ModelConfig",
    "build_model",
    "chinchilla_forward_flops_per_sequence",
    "count_params",
    "depth_for_width",
    "flops_per_token",
    "heads_for_width",
]
