"""Export a finished run as a Hugging Face model directory (`model.safetensors`, `config.json`, tokenizer files).

gpt2 maps to `GPT2LMHeadModel`, llama to `LlamaForCausalLM` (with qk_norm, which Llama lacks, to
`Qwen3ForCausalLM`, whose per-head q/k RMSNorm before RoPE is ours). What HF's modules do not have is folded
into the weights, so their logits equal ours: muP's attention scale into the query projection (or the q norm's
gains), muP's logit multiplier into an output head (untied when the embedding is tied, since the embedding
itself must stay as trained), and gpt2 = false's missing biases as zeros. A plug-in model has no mapping.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from scaling_cli import atomic
from scaling_cli.errors import StoreError
from scaling_cli.model import ModelConfig
from scaling_cli.model.common import score_scale
from scaling_cli.store import Store

HF_CLASSES = {"gpt2": "GPT2LMHeadModel", "llama": "LlamaForCausalLM", "llama+qk_norm": "Qwen3ForCausalLM"}
TOKENIZER_CONFIG = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": None}


def export_hf(results: Path, run_id: str, out_dir: Path) -> dict:
    """Write the run's final weights as a Hugging Face directory; returns {run_id, hf_class, files}."""
    import torch

    store = Store(results)
    run_dir = _run_dir(store, run_id)
    config_doc = json.loads((run_dir / "config.json").read_text())
    config = ModelConfig(**config_doc["model"])
    where = str(run_dir)
    if config.architecture not in ("gpt2", "llama"):
        raise StoreError(where, "architecture", f"plug-in {config.architecture!r} has no Hugging Face mapping")
    checkpoint = run_dir / "checkpoint.pt"
    if (store.read_row(run_dir.name) or {}).get("status") != "done" or not checkpoint.exists():
        raise StoreError(where, "checkpoint", "no final checkpoint of a finished run: train it with --keep-final")
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["model"]
    kind = "llama+qk_norm" if config.architecture == "llama" and config.qk_norm else config.architecture
    tensors, hf_config = (_llama if config.architecture == "llama" else _gpt2)(config, state)
    hf_config["architectures"] = [HF_CLASSES[kind]]
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_weights(out_dir / "model.safetensors", tensors)
    atomic.write_json(out_dir / "config.json", hf_config)
    files = ["model.safetensors", "config.json", *_write_tokenizer(config_doc, out_dir)]
    return {"run_id": run_dir.name, "hf_class": HF_CLASSES[kind], "files": files, "out": str(out_dir)}


def _run_dir(store: Store, run_id: str) -> Path:
    """The run's directory; a unique prefix of its id is enough."""
    runs = store.root / "runs"
    matches = sorted(p for p in runs.glob(f"{run_id}*") if (p / "config.json").is_file()) if runs.is_dir() else []
    if len(matches) != 1:
        found = "no run" if not matches else f"{len(matches)} runs"
        raise StoreError(str(store.root), "--run", f"{found} with id {run_id!r} in this results directory")
    return matches[0]


def _head(config: ModelConfig, state: dict, embedding: str) -> tuple[dict, bool]:
    """The output head with muP's logit multiplier folded in; (tensors, tied) where tied keeps HF's tying."""
    ratio = config.width_ratio
    if config.tie_embeddings and ratio == 1.0:
        return {}, True
    head = state[embedding] if config.tie_embeddings else state["head.weight"]
    return {"lm_head.weight": head * ratio}, False


def _query_factor(config: ModelConfig) -> float:
    """HF scales scores by 1/sqrt(head_dim); ours under muP by score_scale: the ratio goes into the queries."""
    scale = score_scale(config)
    return 1.0 if scale is None else scale * math.sqrt(config.head_dim)


def _gpt2(config: ModelConfig, state: dict) -> tuple[dict, dict]:
    import torch

    d = config.d_model
    zeros = torch.zeros
    out = {"transformer.wte.weight": state["tok_emb.weight"], "transformer.wpe.weight": state["pos_emb.weight"]}
    q_factor = torch.ones(3 * d)
    q_factor[:d] = _query_factor(config)
    names = {"ln_attn": "ln_1", "ln_mlp": "ln_2", "attn.qkv": "attn.c_attn", "attn.proj": "attn.c_proj"}
    names.update({"mlp.up": "mlp.c_fc", "mlp.down": "mlp.c_proj"})
    for i in range(config.n_layer):
        ours, theirs = f"blocks.{i}.", f"transformer.h.{i}."
        for name, hf in names.items():
            weight = state[ours + name + ".weight"]
            bias = state.get(ours + name + ".bias", zeros(weight.shape[0]))
            if name == "attn.qkv":
                weight, bias = weight * q_factor[:, None], bias * q_factor
            out[theirs + hf + ".weight"] = weight if name.startswith("ln") else weight.t()  # HF's Conv1D: [in, out]
            out[theirs + hf + ".bias"] = bias
    out["transformer.ln_f.weight"] = state["ln_f.weight"]
    out["transformer.ln_f.bias"] = state.get("ln_f.bias", zeros(d))
    head, tied = _head(config, state, "tok_emb.weight")
    out.update(head)
    hf_config = {
        "model_type": "gpt2",
        "vocab_size": config.vocab_size,
        "n_positions": config.seq_len,
        "n_embd": d,
        "n_layer": config.n_layer,
        "n_head": config.n_head,
        "n_inner": config.d_ff,
        "activation_function": "gelu_new",  # GELU's tanh approximation, as ours
        "layer_norm_epsilon": 1e-5,
        "resid_pdrop": 0.0,
        "embd_pdrop": 0.0,
        "attn_pdrop": 0.0,
        "tie_word_embeddings": tied,
        "bos_token_id": None,
        "eos_token_id": None,
    }
    return out, hf_config


def _llama(config: ModelConfig, state: dict) -> tuple[dict, dict]:
    out = {"model.embed_tokens.weight": state["tok_emb.weight"], "model.norm.weight": state["norm.weight"]}
    names = {"norm_attn": "input_layernorm", "norm_mlp": "post_attention_layernorm", "attn.q": "self_attn.q_proj"}
    names.update({"attn.k": "self_attn.k_proj", "attn.v": "self_attn.v_proj", "attn.proj": "self_attn.o_proj"})
    names.update({"mlp.gate": "mlp.gate_proj", "mlp.up": "mlp.up_proj", "mlp.down": "mlp.down_proj"})
    if config.qk_norm:
        names.update({"attn.q_norm": "self_attn.q_norm", "attn.k_norm": "self_attn.k_norm"})
    scaled = "attn.q_norm" if config.qk_norm else "attn.q"  # after a norm, only its gains can carry the factor
    for i in range(config.n_layer):
        for name, hf in names.items():
            weight = state[f"blocks.{i}.{name}.weight"]
            out[f"model.layers.{i}.{hf}.weight"] = weight * _query_factor(config) if name == scaled else weight
    head, tied = _head(config, state, "tok_emb.weight")
    out.update(head)
    hf_config = {
        "model_type": "qwen3" if config.qk_norm else "llama",
        "vocab_size": config.vocab_size,
        "hidden_size": config.d_model,
        "intermediate_size": config.d_ff,
        "num_hidden_layers": config.n_layer,
        "num_attention_heads": config.n_head,
        "num_key_value_heads": config.n_kv_head,
        "head_dim": config.head_dim,
        "max_position_embeddings": config.seq_len,
        "rms_norm_eps": 1e-6,
        "rope_theta": config.rope_theta,
        "rope_parameters": {"rope_type": "default", "rope_theta": config.rope_theta},
        "hidden_act": "silu",
        "attention_bias": False,
        "mlp_bias": False,
        "tie_word_embeddings": tied,
        "use_sliding_window": False,
        "bos_token_id": None,
        "eos_token_id": None,
    }
    return out, hf_config


def _write_weights(path: Path, tensors: dict) -> None:
    from safetensors.torch import save_file

    clean = {name: t.detach().to("cpu").contiguous().clone() for name, t in tensors.items()}
    atomic.write_via_path(path, lambda tmp: save_file(clean, str(tmp), metadata={"format": "pt"}))


def _write_tokenizer(config_doc: dict, out_dir: Path) -> list[str]:
    """tokenizer.json (the data set's own, or a byte-level one for bytes; tokenizer.tiktoken for tiktoken:, which
    transformers does not read) and tokenizer_config.json."""
    from scaling_cli.data import DataOptions, prepare
    from scaling_cli.data.tokenizer import byte_tokenizer_json

    kind = config_doc["tokenizer"]
    if kind == "bytes":
        name, data = "tokenizer.json", byte_tokenizer_json().encode()
    else:  # the data set's own file: a BPE trained here, an hf: tokenizer.json, or a tiktoken: rank file
        vocab = config_doc["vocab_size"] if kind == "bpe" else None
        prepared = prepare(config_doc["dataset"], DataOptions(**config_doc["data"]), kind, vocab)
        name = prepared.manifest["tokenizer"]["file"]
        data = (prepared.path / name).read_bytes()
    atomic.write_bytes(out_dir / name, data)
    atomic.write_json(out_dir / "tokenizer_config.json", TOKENIZER_CONFIG)
    return [name, "tokenizer_config.json"]
