"""One entry point for every architecture: build the module and account for it, built-in or a user's plug-in.

A plug-in is `architecture = "module:function"`: `function(config: ModelConfig)` returns `(model, counts)`, where
`model` is a `torch.nn.Module` whose `forward(idx, targets=None)` returns `(logits [batch, seq, vocab], mean
cross-entropy or None)` and `counts` is `{"params": all parameters, "params_nonembed": Kaplan's N,
"flops_per_token": training FLOPs per token}`. The module is imported from the current directory or PYTHONPATH.
`check_plugin` holds a plug-in to that contract at plan time (output shape, a finite loss, causality, params equal
to the module's own parameter count); `plugin_identity` hashes the module's source so editing it renames its runs.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import math
import os
import sys
from pathlib import Path

from scaling_cli.config.model import BUILT_IN, ModelConfig
from scaling_cli.model.counts import count_params as _built_in_params
from scaling_cli.model.counts import flops_per_token as _built_in_flops

COUNT_KEYS = ("params", "params_nonembed", "flops_per_token")


class PluginError(ValueError):
    """A plug-in that cannot be imported or breaks the contract: str() is "architecture: <problem>"."""

    def __init__(self, problem: str):
        super().__init__(f"architecture: {problem}")


def build_model(config: ModelConfig):
    """The nn.Module of a config, freshly initialised (seed torch first for a reproducible init)."""
    if config.architecture == "gpt2":
        from scaling_cli.model.gpt2 import GPT

        return GPT(config)
    if config.architecture == "llama":
        from scaling_cli.model.llama import Llama

        return Llama(config)
    model, _ = _call_plugin(config)
    return model


def count_params(config: ModelConfig) -> tuple[int, int]:
    """(all parameters, Kaplan's non-embedding N): by formula for built-ins, the plug-in's own counts otherwise."""
    if config.architecture in BUILT_IN:
        return _built_in_params(config)
    counts = plugin_counts(config)
    return counts["params"], counts["params_nonembed"]


def flops_per_token(config: ModelConfig) -> dict[str, int | float]:
    """Training FLOPs per token: `chinchilla` (Appendix F, or the plug-in's count) and `kaplan` (6 N)."""
    if config.architecture in BUILT_IN:
        return _built_in_flops(config)
    counts = plugin_counts(config)
    return {"chinchilla": counts["flops_per_token"], "kaplan": 6 * counts["params_nonembed"]}


@functools.lru_cache(maxsize=64)
def plugin_counts(config: ModelConfig) -> dict:
    """The plug-in's counts for one config (built once per config and process)."""
    _, counts = _call_plugin(config)
    return counts


def plugin_identity(config: ModelConfig) -> str | None:
    """sha256 of the plug-in module's source file (None for built-ins): part of the run id."""
    if config.architecture in BUILT_IN:
        return None
    path = getattr(_plugin_function(config.architecture), "__code__", None)
    source = Path(path.co_filename) if path else None
    if source is None or not source.is_file():
        return None
    return hashlib.sha256(source.read_bytes()).hexdigest()


def check_plugin(config: ModelConfig) -> None:
    """Build the plug-in, run a forward pass and compare its counts with its parameters; PluginError if broken."""
    import torch

    if config.parametrization != "sp":
        raise PluginError("muP needs to know a model's hidden matrices: plug-ins train with parametrization 'sp'")
    model, counts = _call_plugin(config)
    unique = sum(p.numel() for p in model.parameters())
    if counts["params"] != unique:
        raise PluginError(f"counts say params = {counts['params']}, the module has {unique} parameters")
    if not 0 < counts["params_nonembed"] <= counts["params"] or not counts["flops_per_token"] > 0:
        raise PluginError(f"counts need 0 < params_nonembed <= params and flops_per_token > 0, got {counts}")
    idx = torch.zeros(2, config.seq_len, dtype=torch.long)
    with torch.no_grad():
        out = model(idx, idx)
    if not (isinstance(out, tuple) and len(out) == 2):
        raise PluginError(f"forward(idx, targets) must return (logits, loss), got {type(out).__name__}")
    logits, loss = out
    expected = (2, config.seq_len, config.vocab_size)
    if tuple(getattr(logits, "shape", ())) != expected:
        raise PluginError(f"logits have shape {tuple(getattr(logits, 'shape', ()))}, expected {expected}")
    if not (isinstance(loss, torch.Tensor) and loss.dim() == 0 and math.isfinite(loss.item())):
        raise PluginError("forward(idx, targets) must return a finite scalar loss tensor")
    _check_causal(model, config, logits)


def _check_causal(model, config: ModelConfig, logits) -> None:
    """Changing the last token must leave the logits of every earlier position as they were."""
    import torch

    idx = torch.zeros(2, config.seq_len, dtype=torch.long)
    idx[:, -1] = config.vocab_size - 1
    with torch.no_grad():
        changed, _ = model(idx)
    if config.seq_len > 1 and not torch.allclose(changed[:, :-1], logits[:, :-1], atol=1e-5):
        raise PluginError("not causal: changing the last token changed the logits of earlier positions")


def _call_plugin(config: ModelConfig):
    import torch

    result = _plugin_function(config.architecture)(config)
    if not (isinstance(result, tuple) and len(result) == 2):
        raise PluginError(f"{config.architecture} must return (model, counts), got {type(result).__name__}")
    model, counts = result
    if not isinstance(model, torch.nn.Module):
        raise PluginError(f"{config.architecture} returned {type(model).__name__}, not a torch.nn.Module")
    if not isinstance(counts, dict) or set(counts) != set(COUNT_KEYS):
        raise PluginError(f"counts must be a dict with exactly the keys {', '.join(COUNT_KEYS)}, got {counts!r}")
    if not all(isinstance(counts[k], int | float) and math.isfinite(counts[k]) for k in COUNT_KEYS):
        raise PluginError(f"counts must be finite numbers, got {counts!r}")
    return model, {k: int(counts[k]) if k != "flops_per_token" else float(counts[k]) for k in COUNT_KEYS}


def _plugin_function(architecture: str):
    module_name, _, name = architecture.partition(":")
    if os.getcwd() not in sys.path:  # `scale` run from a project directory finds the project's modules
        sys.path.append(os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise PluginError(f"cannot import {module_name!r} from the current directory or PYTHONPATH ({exc})") from None
    function = getattr(module, name, None)
    if not callable(function):
        raise PluginError(f"module {module_name!r} has no function {name!r}")
    return function
