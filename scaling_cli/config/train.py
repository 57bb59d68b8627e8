"""How one run trains (`TrainConfig`): each field declared once with its default, check and doc.

The step plan and the learning-rate schedule it implies are in train/config.py.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from scaling_cli.validate import COOLDOWN_SHAPES, DEVICES, DTYPES, REQUIRED, SCHEDULES, SHARDINGS
from scaling_cli.validate import boolean, check_fields, integer, number, one_of, optional, setting, whole_number

MAX_TOKENS = 10**15
DEVICE_PREFERENCE = ("cuda", "mps", "cpu")  # what device = "auto" picks, in order


def auto_device(available) -> str:
    """The device type `device = "auto"` trains on among the types available (the CPU always is)."""
    return next(kind for kind in DEVICE_PREFERENCE if kind in available or kind == "cpu")


def step_count(tokens: int, tokens_per_step: int) -> int:
    """Whole optimizer steps a budget trains: tokens // tokens_per_step, at least one (the one step count that
    the schedule, the checkpoints and the progress shown all use)."""
    return max(1, int(tokens) // int(tokens_per_step))


@dataclass(frozen=True)
class TrainConfig:
    """How to train one run. Raises ValueError("<field>: <problem>") for values out of range."""

    tokens: int = setting(
        REQUIRED,
        whole_number(1, MAX_TOKENS),
        "token budget of a run (1e6 is allowed); left out in isoflop mode, where budgets come from isoflop.flops",
        axis=True,
    )
    batch_size: int = setting(16, integer(1, 1 << 20), "sequences per optimizer step", axis=True, spec_default=REQUIRED)
    lr: float = setting(1e-3, number(0.0, 10.0, low_open=True), "peak learning rate", axis=True, spec_default=REQUIRED)
    schedule: str = setting("cosine", one_of(SCHEDULES), "learning-rate schedule after warmup")
    warmup_tokens: int = setting(
        0, whole_number(0, MAX_TOKENS), "linear warmup length in tokens, the same for every budget"
    )
    cooldown_frac: float = setting(0.2, number(0.0, 1.0), "wsd: share of the steps spent cooling down to zero")
    cooldown_shape: str = setting("1-sqrt", one_of(COOLDOWN_SHAPES), "wsd: shape of the cooldown")
    min_lr_frac: float = setting(0.1, number(0.0, 1.0), "cosine: the final learning rate as a share of lr")
    weight_decay: float = setting(0.1, number(0.0, 10.0), "AdamW weight decay (divided by the width ratio under muP)")
    grad_clip: float = setting(1.0, number(0.0, 1e6), "clip the gradient norm to this; 0: no clipping")
    beta1: float = setting(0.9, number(0.0, 1.0, high_open=True), "AdamW beta1")
    beta2: float = setting(0.95, number(0.0, 1.0, high_open=True), "AdamW beta2")
    seed: int = setting(0, integer(0, 2**31 - 1), "seed of init and batch order", key="seeds", axis=True)
    eval_every: int = setting(
        100, integer(0, 1 << 31), "evaluate every this many steps; 0: only at the end", key="eval.every"
    )
    eval_batches: int = setting(8, integer(1, 100_000), "validation batches per evaluation", key="eval.batches")
    checkpoint_every: int = setting(
        500, integer(0, 1 << 31), "save a resumable checkpoint every this many steps; 0: never (a crash restarts)"
    )
    device: str = setting(
        "auto", one_of(DEVICES), "where every run trains; auto: cuda, then mps, then cpu", key="device"
    )
    dtype: str = setting("auto", one_of(DTYPES), "auto: bf16 autocast on CUDA, fp32 elsewhere")
    compile: bool | None = setting(None, optional(boolean), "torch.compile the model (default: on CUDA only)")
    threads: int | None = setting(
        None, optional(integer(1)), "CPU threads of one run (set by the executor)", in_spec=False
    )
    nan_at_step: int | None = setting(
        None, optional(integer(0)), "fault injection for tests: that step's loss becomes NaN", in_spec=False
    )
    data_parallel: int = setting(1, integer(1, 4096), "ranks one run trains on; batch_size is split across them")
    sharding: str = setting("ddp", one_of(SHARDINGS), "ddp: the whole model on each rank; fsdp: FSDP2 fully_shard")
    micro_batch_size: int | None = setting(
        None,
        optional(integer(1, 1 << 31)),
        "rows per forward pass (gradient accumulation); default: a rank's whole share",
    )

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
