"""The single-run trainer on real Markov data: learning, exact resume after kill -9, divergence, WSD branches."""

from __future__ import annotations

import itertools
import math
from dataclasses import replace

import pytest
import torch

from trainer_runs import first_order_markov, killed_and_resumed, read_curve

from scaling_cli.errors import StoreError
from scaling_cli.model import ModelConfig, count_params, flops_per_token
from scaling_cli.train import (
    CHECKPOINT_NAME,
    TrainConfig,
    lr_at,
    plan_steps,
    train_run,
    wsd_branch_step,
)

pytestmark = pytest.mark.usefixtures("keep_torch_threads")  # train_run sets torch's threads for the process
TINY = ModelConfig(d_model=32, n_layer=2, n_head=2, seq_len=32)
TINY_STEP_TOKENS = 8 * 32  # batch_size 8 x seq_len 32


def tiny_config(steps: int, **overrides) -> TrainConfig:
    settings = {
        "tokens": steps * TINY_STEP_TOKENS,
        "batch_size": 8,
        "lr": 3e-3,
        "warmup_tokens": 4 * TINY_STEP_TOKENS,
        "eval_every": 5,
        "eval_batches": 2,
        "checkpoint_every": 0,
        "device": "cpu",
        "dtype": "fp32",
        "threads": 1,
    }
    return TrainConfig(**{**settings, **overrides})


@pytest.fixture(scope="module")
def markov(tmp_path_factory):
    return first_order_markov(tmp_path_factory, 200_000)


def without_clock(points: list[dict]) -> list[dict]:
    return [{k: v for k, v in point.items() if k != "wall_s"} for point in points]


def test_loss_falls_toward_the_entropy_rate(markov, tmp_path):
    model_cfg = ModelConfig(d_model=64, n_layer=2, n_head=4, seq_len=64)
    train_cfg = TrainConfig(
        tokens=150 * 16 * 64,
        batch_size=16,
        lr=1e-2,
        warmup_tokens=10 * 16 * 64,
        eval_every=50,
        eval_batches=4,
        checkpoint_every=0,
        device="cpu",
        threads=1,
    )
    points = []
    result = train_run(model_cfg, train_cfg, markov, tmp_path, on_point=points.append)
    entropy_nats = markov.entropy_rate_bits * math.log(2)
    assert result.status == "done" and result.steps == 150
    assert [p["step"] for p in points] == [50, 100, 150]
    assert points[-1]["val_loss"] < points[0]["val_loss"]
    assert result.val_loss < math.log(16) - 1.0  # far below the unigram loss of 16 equiprobable symbols
    assert entropy_nats - 0.05 < result.val_loss < entropy_nats + 0.15
    assert result.val_bpb == pytest.approx(result.val_loss / math.log(2) / markov.bytes_per_token)
    assert without_clock(read_curve(tmp_path)) == without_clock(points)


def test_a_run_records_tokens_and_both_flop_counts(markov, tmp_path):
    result = train_run(TINY, tiny_config(12), markov, tmp_path)
    _, nonembed = count_params(TINY)
    assert result.tokens == 12 * TINY_STEP_TOKENS
    assert result.flops == result.tokens * flops_per_token(TINY)["chinchilla"]
    assert result.flops_6nd == 6 * nonembed * result.tokens
    assert result.device == "cpu" and result.tokens_per_s > 0 and result.wall_s > 0
    curve = read_curve(tmp_path)
    assert [p["step"] for p in curve] == [5, 10, 12]
    assert curve[-1]["flops"] == result.flops
    assert set(curve[0]) == {"step", "tokens", "flops", "lr", "train_loss", "val_loss", "val_bpb", "wall_s", "threads"}


def test_same_seed_gives_the_same_curve_and_another_seed_does_not(markov, tmp_path):
    first = train_run(TINY, tiny_config(15), markov, tmp_path / "a")
    second = train_run(TINY, tiny_config(15), markov, tmp_path / "b")
    other = train_run(TINY, tiny_config(15, seed=1), markov, tmp_path / "c")
    assert without_clock(read_curve(tmp_path / "a")) == without_clock(read_curve(tmp_path / "b"))
    assert first.val_loss == second.val_loss
    assert other.val_loss != first.val_loss


def test_kill_minus_nine_and_resume_equals_an_uninterrupted_run(markov, tmp_path):
    _, killed_at = killed_and_resumed(TINY, tiny_config(300, checkpoint_every=10, eval_every=5), markov, tmp_path)
    assert 10 <= killed_at < 300
    interrupted_dir = tmp_path / "interrupted"
    assert without_clock(read_curve(interrupted_dir)) == without_clock(read_curve(tmp_path / "reference"))
    wall = [p["wall_s"] for p in read_curve(interrupted_dir)]
    assert wall == sorted(wall)


def test_a_finished_run_resumes_as_a_no_op(markov, tmp_path):
    first = train_run(TINY, tiny_config(10, checkpoint_every=5), markov, tmp_path)
    curve = read_curve(tmp_path)
    again = train_run(TINY, tiny_config(10, checkpoint_every=5), markov, tmp_path)
    assert read_curve(tmp_path) == curve
    assert (again.val_loss, again.steps) == (first.val_loss, first.steps)
    assert again.wall_s == pytest.approx(first.wall_s, abs=0.5)


def test_an_injected_nan_marks_the_run_diverged_and_stops_checkpointing(markov, tmp_path):
    result = train_run(TINY, tiny_config(30, nan_at_step=12, checkpoint_every=5), markov, tmp_path)
    assert result.status == "diverged"
    assert result.diverged_step == 12 and result.steps == 12
    assert math.isnan(result.val_loss) and math.isnan(result.train_loss)
    state = torch.load(tmp_path / CHECKPOINT_NAME, weights_only=True)
    assert state["step"] == 10
    assert all(torch.isfinite(t).all() for t in state["model"].values())
    assert [p["step"] for p in read_curve(tmp_path)] == [5, 10]


def test_too_high_a_learning_rate_diverges_without_injection(markov, tmp_path):
    result = train_run(TINY, tiny_config(40, lr=10.0, grad_clip=0.0, warmup_tokens=0), markov, tmp_path)
    assert result.status == "diverged"
    assert result.diverged_step is not None and result.diverged_step < 40


def test_wsd_branch_from_the_trunk_equals_a_from_scratch_run_of_that_budget(markov, tmp_path):
    trunk_cfg = tiny_config(40, schedule="wsd", cooldown_frac=0.25, cooldown_shape="1-sqrt", eval_every=4)
    short_cfg = replace(trunk_cfg, tokens=20 * TINY_STEP_TOKENS)
    branch_step = wsd_branch_step(short_cfg, TINY)
    assert branch_step == 15

    trunk = train_run(TINY, trunk_cfg, markov, tmp_path / "trunk", trunk_saves=[branch_step])
    assert trunk.steps == 40
    state = tmp_path / "trunk" / "trunk" / f"step_{branch_step}.pt"
    branch = train_run(TINY, short_cfg, markov, tmp_path / "branch", start_from=state)
    scratch = train_run(TINY, short_cfg, markov, tmp_path / "scratch")

    assert branch.steps == scratch.steps == 20
    assert (branch.train_loss, branch.val_loss) == (scratch.train_loss, scratch.val_loss)
    assert without_clock(read_curve(tmp_path / "branch")) == without_clock(read_curve(tmp_path / "scratch"))
    assert read_curve(tmp_path / "branch")[-1]["lr"] < trunk_cfg.lr / 2  # it did cool down
    assert trunk.val_loss != scratch.val_loss


def test_a_branch_with_a_different_learning_rate_is_refused(markov, tmp_path):
    trunk_cfg = tiny_config(20, schedule="wsd", cooldown_frac=0.5)
    train_run(TINY, trunk_cfg, markov, tmp_path / "trunk", trunk_saves=[5])
    with pytest.raises(StoreError, match="train.lr"):
        train_run(
            TINY,
            replace(trunk_cfg, lr=1e-2),
            markov,
            tmp_path / "branch",
            start_from=tmp_path / "trunk" / "trunk" / "step_5.pt",
        )


def test_a_branch_whose_schedule_differs_before_its_start_is_refused(markov, tmp_path):
    trunk_cfg = tiny_config(20, schedule="cosine")
    train_run(TINY, trunk_cfg, markov, tmp_path / "trunk", trunk_saves=[8])
    with pytest.raises(StoreError, match="train.schedule: .* at step 5"):
        train_run(
            TINY,
            replace(trunk_cfg, tokens=10 * TINY_STEP_TOKENS, schedule="wsd"),
            markov,
            tmp_path / "branch",
            start_from=tmp_path / "trunk" / "trunk" / "step_8.pt",
        )


def test_resuming_with_another_config_or_a_damaged_checkpoint_is_a_store_error(markov, tmp_path):
    train_run(TINY, tiny_config(10, checkpoint_every=5), markov, tmp_path / "run")
    with pytest.raises(StoreError, match="train.batch_size"):
        train_run(TINY, tiny_config(10, checkpoint_every=5, batch_size=4), markov, tmp_path / "run")
    (tmp_path / "run" / CHECKPOINT_NAME).write_bytes(b"not a checkpoint")
    with pytest.raises(StoreError, match="checkpoint"):
        train_run(TINY, tiny_config(10, checkpoint_every=5), markov, tmp_path / "run")
    assert not [p for p in (tmp_path / "run").iterdir() if p.name.startswith(".")]


def test_bf16_autocast_on_cpu_trains(markov, tmp_path):
    result = train_run(TINY, tiny_config(10, dtype="bf16"), markov, tmp_path)
    assert result.status == "done" and math.isfinite(result.val_loss)


def test_schedules_warm_up_then_follow_their_shape():
    model_cfg = ModelConfig(d_model=32, n_layer=1, n_head=2, seq_len=10)
    base = TrainConfig(tokens=1000 * 10, batch_size=1, lr=1.0, warmup_tokens=100 * 10)

    def rates(**overrides):
        cfg = replace(base, **overrides)
        plan = plan_steps(cfg, model_cfg)
        return [lr_at(step, plan, cfg) for step in range(plan.total_steps)]

    cosine, constant = rates(schedule="cosine"), rates(schedule="constant")
    linear = rates(schedule="wsd", cooldown_frac=0.2, cooldown_shape="linear")
    one_minus_sqrt = rates(schedule="wsd", cooldown_frac=0.2, cooldown_shape="1-sqrt")
    assert cosine[:100] == constant[:100] == linear[:100] == [(s + 1) / 100 for s in range(100)]
    assert cosine[100] == pytest.approx(1.0) and cosine[-1] == pytest.approx(0.1, abs=1e-4)
    assert all(a >= b for a, b in itertools.pairwise(cosine[100:]))
    assert set(constant[99:]) == {1.0}
    assert set(linear[99:800]) == {1.0}
    assert linear[800] == 1.0 and linear[900] == pytest.approx(0.5) and 0 < linear[-1] < 0.01
    assert one_minus_sqrt[900] == pytest.approx(1 - math.sqrt(0.5))
    assert all(s <= lin for s, lin in zip(one_minus_sqrt[800:], linear[800:]))
    # The warmup is absolute: a budget twice as large warms up over the same steps.
    longer = replace(base, tokens=2000 * 10, schedule="wsd")
    assert [lr_at(s, plan_steps(longer, model_cfg), longer) for s in range(100)] == linear[:100]
    assert wsd_branch_step(replace(base, schedule="wsd", cooldown_frac=0.2), model_cfg) == 800


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"tokens": 0}, "tokens"),
        ({"lr": 0.0}, "lr"),
        ({"schedule": "linear"}, "schedule"),
        ({"cooldown_shape": "sqrt"}, "cooldown_shape"),
        ({"cooldown_frac": 1.5}, "cooldown_frac"),
        ({"beta2": 1.0}, "beta2"),
        ({"device": "tpu"}, "device"),
        ({"batch_size": 2.5}, "batch_size"),
        ({"compile": "yes"}, "compile"),
        ({"threads": 0}, "threads"),
    ],
)
def test_train_config_names_the_bad_field(overrides, field):
    with pytest.raises(ValueError, match=f"^{field}: "):
        TrainConfig(**{"tokens": 1000, **overrides})


def test_reading_the_finiteness_checks_every_k_steps_changes_no_result(markov, tmp_path):
    """The host reads the checks every k steps instead of every step: the curve is the same to the bit."""
    config = tiny_config(20, eval_every=3)
    every_step = train_run(TINY, config, markov, tmp_path / "k1", check_every=1)
    deferred = train_run(TINY, config, markov, tmp_path / "k7", check_every=7)
    assert without_clock(read_curve(tmp_path / "k7")) == without_clock(read_curve(tmp_path / "k1"))
    assert (deferred.val_loss, deferred.train_loss) == (every_step.val_loss, every_step.train_loss)


def test_a_nan_between_reads_is_found_at_its_own_step(markov, tmp_path):
    """Steps queued after the NaN are thrown away: the run reports the NaN's step and keeps its last finite
    checkpoint."""
    config = tiny_config(40, nan_at_step=21, checkpoint_every=10, eval_every=0)
    result = train_run(TINY, config, markov, tmp_path, check_every=16)
    assert (result.status, result.diverged_step, result.steps) == ("diverged", 21, 21)
    state = torch.load(tmp_path / CHECKPOINT_NAME, weights_only=True)
    assert state["step"] == 20
    assert all(torch.isfinite(t).all() for t in state["model"].values())
