"""A run's files: the training state saved atomically (`checkpoint.pt`, trunk states) and restored, and the curve.

A state holds the model, the optimizer, the step, the running train-loss sum, the curve so far, the clocks,
both configs and the step plan. No RNG state is kept: batches are a pure function of (seed, step) and the
model has no dropout, so nothing random happens after initialisation.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch

from scaling_cli import atomic
from scaling_cli.errors import StoreError
from scaling_cli.model import ModelConfig
from scaling_cli.train.config import StepPlan, TrainConfig, lr_at, plan_steps

CHECKPOINT_NAME = "checkpoint.pt"
CURVE_NAME = "curve.jsonl"
TRUNK_DIR = "trunk"
STATE_FORMAT = 1

# Fields that may differ between a checkpoint and the run resuming it without changing the weights.
RESUME_FREE_FIELDS = frozenset(
    {
        "device",
        "compile",
        "threads",
        "checkpoint_every",
        "eval_every",
        "nan_at_step",
        "data_parallel",
        "micro_batch_size",
    }
)
# Fields a cooldown branch must share with its trunk so its first steps are the trunk's steps.
TRUNK_SHARED_FIELDS = (
    "batch_size",
    "lr",
    "warmup_tokens",
    "weight_decay",
    "grad_clip",
    "beta1",
    "beta2",
    "seed",
    "eval_every",
    "eval_batches",
    "dtype",
)


@dataclass
class TrainState:
    """What a checkpoint holds besides the model and optimizer."""

    step: int = 0
    curve: list[dict] = field(default_factory=list)
    loss_sum: torch.Tensor | None = None
    loss_count: int = 0
    wall_s: float = 0.0
    train_s: float = 0.0


def trunk_state_path(run_dir: Path, step: int) -> Path:
    return run_dir / TRUNK_DIR / f"step_{step}.pt"


def save_state(
    path: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    state: TrainState,
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    plan: StepPlan,
    states: tuple[dict, dict] | None = None,
) -> None:
    """Write the whole training state atomically; the previous file stays whole until this one is complete.
    `states`: the model's and optimizer's state dicts when they are not the objects' own (gathered FSDP2 ones)."""
    model_state, optimizer_state = states or (model.state_dict(), optimizer.state_dict())
    payload = {
        "format": STATE_FORMAT,
        "model_config": model_cfg.to_dict(),
        "train_config": train_cfg.to_dict(),
        "schedule": asdict(plan),
        "step": state.step,
        "model": model_state,
        "optimizer": optimizer_state,
        "loss_sum": state.loss_sum,
        "loss_count": state.loss_count,
        "curve": state.curve,
        "wall_s": state.wall_s,
        "train_s": state.train_s,
    }
    atomic.write_stream(path, lambda handle: torch.save(payload, handle))


def load_payload(path: Path) -> dict:
    """Read a checkpoint or trunk state; a damaged file is a StoreError."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a truncated or foreign file
        raise StoreError(str(path), "checkpoint", f"cannot be read: {exc}") from exc
    if not isinstance(payload, dict) or payload.get("format") != STATE_FORMAT:
        raise StoreError(str(path), "checkpoint", f"not a training state of format {STATE_FORMAT}")
    return payload


def initial_state(
    run_dir: Path,
    start_from: Path | None,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    device: torch.device,
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    load: Callable[[dict, dict], None] | None = None,
) -> TrainState:
    """The run's own checkpoint if it has one, else the trunk state it branches from, else a fresh start.
    `load(model_state, optimizer_state)` puts saved states in place (default: the objects' load_state_dict)."""
    checkpoint = run_dir / CHECKPOINT_NAME
    if checkpoint.exists():
        payload = load_payload(checkpoint)
        return restore(checkpoint, payload, model, optimizer, device, model_cfg, train_cfg, branch=False, load=load)
    if start_from is None:
        return TrainState(loss_sum=torch.zeros((), device=device))
    start_from = Path(start_from)
    payload = load_payload(start_from)
    state = restore(start_from, payload, model, optimizer, device, model_cfg, train_cfg, branch=True, load=load)
    _check_branch_schedule(start_from, TrainConfig(**payload["train_config"]), train_cfg, model_cfg, state.step)
    return state


def restore(
    path: Path,
    payload: dict,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    device: torch.device,
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    *,
    branch: bool,
    load: Callable[[dict, dict], None] | None = None,
) -> TrainState:
    """Load a state into the model and optimizer after checking it belongs to this run (or to its trunk)."""
    _require_same(path, "model", payload["model_config"], model_cfg.to_dict(), [f.name for f in fields(model_cfg)])
    current = train_cfg.to_dict()
    shared = TRUNK_SHARED_FIELDS if branch else [name for name in current if name not in RESUME_FREE_FIELDS]
    _require_same(path, "train", payload["train_config"], current, shared)
    if load is not None:
        load(payload["model"], payload["optimizer"])
    else:
        model.load_state_dict(payload["model"])
        optimizer.load_state_dict(payload["optimizer"])
    return TrainState(
        step=payload["step"],
        curve=list(payload["curve"]),
        loss_sum=payload["loss_sum"].to(device),
        loss_count=payload["loss_count"],
        wall_s=payload["wall_s"],
        train_s=payload["train_s"],
    )


def _require_same(path: Path, section: str, saved: dict, current: dict, names: Sequence[str]) -> None:
    for name in names:
        if saved.get(name) != current[name]:
            raise StoreError(
                str(path),
                f"{section}.{name}",
                f"state was saved with {saved.get(name)!r}, this run has {current[name]!r}",
            )


def _check_branch_schedule(
    path: Path, trunk_cfg: TrainConfig, branch_cfg: TrainConfig, model_cfg: ModelConfig, start: int
) -> None:
    """A branch must have taken the trunk's learning rates on every step the trunk ran for it."""
    trunk_plan, branch_plan = plan_steps(trunk_cfg, model_cfg), plan_steps(branch_cfg, model_cfg)
    if start > branch_plan.total_steps:
        raise StoreError(
            str(path), "step", f"trunk state is at step {start}, past this run's {branch_plan.total_steps}"
        )
    for step in range(start):
        if lr_at(step, trunk_plan, trunk_cfg) != lr_at(step, branch_plan, branch_cfg):
            raise StoreError(
                str(path), "train.schedule", f"the trunk's learning rate differs from this run's at step {step}"
            )


class CurveWriter:
    """Streams evaluation points to curve.jsonl and to an optional callback."""

    def __init__(self, path: Path | None, prefix: list[dict], on_point: Callable[[dict], None] | None):
        self.path = path  # None: write nothing (a data-parallel rank other than 0)
        self.on_point = on_point
        if path is not None:  # rewriting the file drops points written after the state we resume from
            atomic.write_text(path, "".join(json.dumps(point) + "\n" for point in prefix))

    def write(self, point: dict) -> None:
        if self.path is None:
            return
        with open(self.path, "a") as handle:
            handle.write(json.dumps(point) + "\n")
        if self.on_point is not None:
            self.on_point(point)
