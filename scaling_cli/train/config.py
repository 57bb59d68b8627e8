"""The step plan and learning-rate schedule a `TrainConfig` (config/train.py) implies.

Nothing here touches torch: the schedule is a pure function of (config, model shape, step), which is what
lets a resumed run or a WSD cooldown branch retrace the steps of an uninterrupted run exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scaling_cli.config import ModelConfig, TrainConfig
from scaling_cli.config.train import step_count

__all__ = ["StepPlan", "TrainConfig", "lr_at", "plan_steps", "wsd_branch_step"]


@dataclass(frozen=True)
class StepPlan:
    """Step counts that the schedule and the checkpoints are laid out on."""

    tokens_per_step: int
    total_steps: int
    warmup_steps: int
    decay_start: int  # first step of the WSD cooldown (total_steps for other schedules)


def plan_steps(train_cfg: TrainConfig, model_cfg: ModelConfig) -> StepPlan:
    """Budget in tokens -> whole steps; warmup is an absolute token count, the same for every budget."""
    tokens_per_step = train_cfg.batch_size * model_cfg.seq_len
    total = step_count(train_cfg.tokens, tokens_per_step)
    warmup = min(total, train_cfg.warmup_tokens // tokens_per_step)
    decay_start = total
    if train_cfg.schedule == "wsd":
        decay_start = total - round(train_cfg.cooldown_frac * total)
    return StepPlan(tokens_per_step, total, warmup, decay_start)


def wsd_branch_step(train_cfg: TrainConfig, model_cfg: ModelConfig) -> int:
    """The step at which this budget's WSD cooldown starts: a trunk saves its state there for the branch."""
    return plan_steps(train_cfg, model_cfg).decay_start


def lr_at(step: int, plan: StepPlan, cfg: TrainConfig) -> float:
    """Learning rate of step `step` (0-based): linear warmup, then the schedule's shape."""
    warm = min(1.0, (step + 1) / plan.warmup_steps) if plan.warmup_steps else 1.0
    if cfg.schedule == "constant":
        return cfg.lr * warm
    if cfg.schedule == "cosine":
        span = max(1, plan.total_steps - plan.warmup_steps)
        progress = min(1.0, max(0.0, (step - plan.warmup_steps) / span))
        floor = cfg.min_lr_frac
        return cfg.lr * warm * (floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress)))
    if step < plan.decay_start:
        return cfg.lr * warm
    # WSD cooldown to zero (Hägele et al. 2024); the last step keeps a small positive rate.
    progress = (step - plan.decay_start) / (plan.total_steps - plan.decay_start)
    decay = 1.0 - progress if cfg.cooldown_shape == "linear" else 1.0 - math.sqrt(progress)
    return cfg.lr * warm * decay
