"""How one run trains: `TrainConfig` (validated once, here) and the step plan and learning-rate schedule it implies.

Nothing here touches torch: the schedule is a pure function of (config, model shape, step), which is what
lets a resumed run or a WSD cooldown branch retrace the steps of an uninterrupted run exactly.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from scaling_cli.model import ModelConfig
from scaling_cli.validate import (
    COOLDOWN_SHAPES,
    DEVICES,
    DTYPES,
    REQUIRED,
    SCHEDULES,
    SHARDINGS,
    boolean,
    check_fields,
    checked,
    integer,
    number,
    one_of,
    optional,
)


@dataclass(frozen=True)
class TrainConfig:
    """How to train one run. Raises ValueError("<field>: <problem>") for values out of range.

    `nan_at_step` is a fault-injection knob for tests: the loss of that step is replaced by NaN.
    """

    tokens: int = checked(REQUIRED, integer(1))
    batch_size: int = checked(16, integer(1))
    lr: float = checked(1e-3, number(0.0, low_open=True))
    schedule: str = checked("cosine", one_of(SCHEDULES))
    warmup_tokens: int = checked(0, integer(0))
    cooldown_frac: float = checked(0.2, number(0.0, 1.0))
    cooldown_shape: str = checked("1-sqrt", one_of(COOLDOWN_SHAPES))
    min_lr_frac: float = checked(0.1, number(0.0, 1.0))
    weight_decay: float = checked(0.1, number(0.0))
    grad_clip: float = checked(1.0, number(0.0))
    beta1: float = checked(0.9, number(0.0, 1.0, high_open=True))
    beta2: float = checked(0.95, number(0.0, 1.0, high_open=True))
    seed: int = checked(0, integer(0))
    eval_every: int = checked(100, integer(0))
    eval_batches: int = checked(8, integer(1))
    checkpoint_every: int = checked(500, integer(0))
    device: str = checked("auto", one_of(DEVICES))
    dtype: str = checked("auto", one_of(DTYPES))
    compile: bool | None = checked(None, optional(boolean))
    threads: int | None = checked(None, optional(integer(1)))
    nan_at_step: int | None = checked(None, optional(integer(0)))
    data_parallel: int = checked(1, integer(1))  # ranks one run trains on; batch_size is split across them
    sharding: str = checked("ddp", one_of(SHARDINGS))  # ddp: whole model per rank; fsdp: FSDP2 fully_shard
    micro_batch_size: int | None = checked(None, optional(integer(1)))  # rows per forward; None: a rank's share

    def __post_init__(self) -> None:
        check_fields(self)
        share, rest = divmod(self.batch_size, self.data_parallel)
        if rest:
            raise ValueError(
                f"batch_size: {self.batch_size} does not split evenly over data_parallel = {self.data_parallel}"
            )
        if self.micro_batch_size is not None and share % self.micro_batch_size:
            raise ValueError(f"micro_batch_size: {self.micro_batch_size} does not divide a rank's {share} rows")

    @property
    def accumulation_steps(self) -> int:
        """Forward/backward passes per optimizer step on each rank (gradient accumulation)."""
        share = self.batch_size // self.data_parallel
        return share // (self.micro_batch_size or share)

    def to_dict(self) -> dict:
        return asdict(self)


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
    total = max(1, train_cfg.tokens // tokens_per_step)
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
