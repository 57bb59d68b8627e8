"""`scale sweep --keep-final` then `scale export --format hf`: transformers loads the directory with no custom
code (GPT2LMHeadModel, LlamaForCausalLM, Qwen3ForCausalLM for qk_norm), and its logits and loss equal ours."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import scale_in_process

from scaling_cli.model import ModelConfig, build_model

transformers = pytest.importorskip("transformers")
pytest.importorskip("safetensors")
pytestmark = pytest.mark.slow  # four real sweeps (tiny, but each a process with a worker): make quick skips them

SPEC = """
name = "export-{name}"
dataset = "markov"
device = "cpu"
[data]
markov_bytes = 60000
[model]
d_model = [32, 64]
head_dim = 16
seq_len = 32
{model}
[train]
tokens = 2048
lr = 0.01
batch_size = 8
[eval]
batches = 1
"""
MODELS = {  # muP at two widths: the wider one's attention scale and logit multiplier must be folded in
    "gpt2": ('parametrization = "mup"', "GPT2LMHeadModel"),
    "llama": ('architecture = "llama"\nn_kv_head = 2\nparametrization = "mup"', "LlamaForCausalLM"),
    "qknorm": ('architecture = "llama"\nqk_norm = true\ntie_embeddings = false\nz_loss = 1e-4', "Qwen3ForCausalLM"),
}
TEXT = "To be, or not to be, that is the question: whether 'tis nobler in the mind to suffer"


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """Each kind swept with --keep-final, and the gpt2 one also without it."""
    root = tmp_path_factory.mktemp("export")
    out = {}
    for name, (model, _) in MODELS.items():
        spec = root / f"{name}.toml"
        spec.write_text(SPEC.format(name=name, model=model))
        result = scale_in_process("sweep", spec, "--out", root / name, "--keep-final")
        assert result.returncode == 0, result.stderr
        out[name] = root / name
    spec = root / "plain.toml"
    spec.write_text(SPEC.format(name="plain", model=MODELS["gpt2"][0]).replace("[32, 64]", "[32]"))
    assert scale_in_process("sweep", spec, "--out", root / "plain").returncode == 0
    out["plain"] = root / "plain"
    return out


def ours(run_dir):
    config = ModelConfig(**json.loads((run_dir / "config.json").read_text())["model"])
    model = build_model(config)
    model.load_state_dict(torch.load(run_dir / "checkpoint.pt", weights_only=True)["model"])
    return model.eval()


@pytest.mark.parametrize("name", list(MODELS))
def test_exported_model_loads_in_transformers_with_equal_logits_and_loss(swept, tmp_path, name):
    width = {p: json.loads((p / "config.json").read_text())["d_model"] for p in (swept[name] / "runs").iterdir()}
    run_dir = max(width, key=width.get)  # d_model 64: under muP its width ratio is 1/2
    args = ("--run", run_dir.name[:8], "--format", "hf", "--out", tmp_path / "hf")
    result = scale_in_process("export", swept[name], *args)
    assert result.returncode == 0, result.stderr
    assert MODELS[name][1] in result.stdout
    files = {p.name for p in (tmp_path / "hf").iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json"} <= files

    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf", trust_remote_code=False).eval()
    assert type(hf).__name__ == MODELS[name][1]
    tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    ids = torch.tensor([tokenizer(TEXT)["input_ids"][:32]])
    assert ids[0].tolist() == list(TEXT.encode()[:32])  # the bytes tokenizer, exactly
    model = ours(run_dir)
    with torch.no_grad():
        theirs = hf(ids, labels=ids)
        logits, loss = model(ids[:, :-1], ids[:, 1:])
        full, _ = model(ids)
    assert torch.allclose(theirs.logits, full, atol=1e-4, rtol=0)
    assert theirs.loss.item() == pytest.approx(loss.item(), abs=1e-4)


def test_export_refuses_a_run_without_its_final_checkpoint(swept, tmp_path):
    run_id = next((swept["plain"] / "runs").iterdir()).name
    result = scale_in_process("export", swept["plain"], "--run", run_id, "--out", tmp_path / "hf")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {swept['plain'] / 'runs' / run_id}: checkpoint: no final checkpoint of a finished run: "
        "train it with --keep-final"
    ]
    assert not (tmp_path / "hf").exists()
    unknown = scale_in_process("export", swept["plain"], "--run", "zzzz", "--out", tmp_path / "hf")
    assert unknown.returncode == 2 and "--run: no run with id 'zzzz'" in unknown.stderr
    fmt = scale_in_process("export", swept["gpt2"], "--run", run_id, "--format", "onnx", "--out", tmp_path / "hf")
    assert fmt.returncode == 2 and "--format: value: must be one of hf, got 'onnx'" in fmt.stderr
