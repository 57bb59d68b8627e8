"""One training run: schedule, loop, evaluation, checkpoints and the NaN guard; returns a RunResult.

Everything a step depends on is a pure function of (config, step): the batch comes from
`data.get_batch(tokens, seq_len, batch_size, seed, step)` and the learning rate from the step number.
So a run resumed from its checkpoint, or a WSD cooldown branch started from a trunk's saved state,
retraces exactly the steps an uninterrupted run would take (bit for bit on CPU).

Files in `run_dir`: `curve.jsonl` (one JSON object per evaluation, appended as training goes),
`checkpoint.pt` (the latest complete training state, replaced atomically) and `trunk/step_<k>.pt`
(states saved for cooldown branches).
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch

from scaling_cli import atomic
from scaling_cli.data import PreparedData, get_batch
from scaling_cli.errors import DataError, SpecError, StoreError
from scaling_cli.model import GPT, ModelConfig, count_params, flops_per_token

SCHEDULES = ("cosine", "constant", "wsd")
COOLDOWN_SHAPES = ("linear", "1-sqrt")
DEVICES = ("auto", "cpu", "cuda", "mps")
DTYPES = ("auto", "fp32", "bf16")
EVAL_BATCH_SIZE = 16  # fixed, so runs with different batch sizes are scored on the same text
CHECKPOINT_NAME = "checkpoint.pt"
CURVE_NAME = "curve.jsonl"
TRUNK_DIR = "trunk"
STATE_FORMAT = 1

# Fields that may differ between a checkpoint and the run resuming it without changing the weights.
RESUME_FREE_FIELDS = frozenset({"device", "compile", "threads", "checkpoint_every", "eval_every", "nan_at_step"})
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


@dataclass(frozen=True)
class TrainConfig:
    """How to train one run. Raises ValueError("<field>: <problem>") for values out of range.

    `nan_at_step` is a fault-injection knob for tests: the loss of that step is replaced by NaN.
    """

    tokens: int
    batch_size: int = 16
    lr: float = 1e-3
    schedule: str = "cosine"
    warmup_tokens: int = 0
    cooldown_frac: float = 0.2
    cooldown_shape: str = "1-sqrt"
    min_lr_frac: float = 0.1
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    beta1: float = 0.9
    beta2: float = 0.95
    seed: int = 0
    eval_every: int = 100
    eval_batches: int = 8
    checkpoint_every: int = 500
    device: str = "auto"
    dtype: str = "auto"
    compile: bool | None = None
    threads: int | None = None
    nan_at_step: int | None = None

    def __post_init__(self) -> None:
        _check_int(self, "tokens", minimum=1)
        _check_int(self, "batch_size", minimum=1)
        _check_int(self, "warmup_tokens", minimum=0)
        _check_int(self, "seed", minimum=0)
        _check_int(self, "eval_every", minimum=0)
        _check_int(self, "eval_batches", minimum=1)
        _check_int(self, "checkpoint_every", minimum=0)
        _check_range(self, "lr", 0.0, math.inf, low_open=True)
        _check_range(self, "cooldown_frac", 0.0, 1.0)
        _check_range(self, "min_lr_frac", 0.0, 1.0)
        _check_range(self, "weight_decay", 0.0, math.inf)
        _check_range(self, "grad_clip", 0.0, math.inf)
        _check_range(self, "beta1", 0.0, 1.0, high_open=True)
        _check_range(self, "beta2", 0.0, 1.0, high_open=True)
        _check_choice(self, "schedule", SCHEDULES)
        _check_choice(self, "cooldown_shape", COOLDOWN_SHAPES)
        _check_choice(self, "device", DEVICES)
        _check_choice(self, "dtype", DTYPES)
        if self.compile is not None and type(self.compile) is not bool:
            raise ValueError(f"compile: must be true, false or unset, got {self.compile!r}")
        if self.threads is not None:
            _check_int(self, "threads", minimum=1)
        if self.nan_at_step is not None:
            _check_int(self, "nan_at_step", minimum=0)

    def to_dict(self) -> dict:
        return asdict(self)


def _check_int(cfg: TrainConfig, name: str, minimum: int) -> None:
    value = getattr(cfg, name)
    if type(value) is not int:
        raise ValueError(f"{name}: must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name}: must be at least {minimum}, got {value}")


def _check_range(
    cfg: TrainConfig, name: str, low: float, high: float, low_open: bool = False, high_open: bool = False
) -> None:
    value = getattr(cfg, name)
    if type(value) not in (int, float) or not math.isfinite(value):
        raise ValueError(f"{name}: must be a finite number, got {value!r}")
    too_low = value <= low if low_open else value < low
    too_high = value >= high if high_open else value > high
    if too_low or too_high:
        interval = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        raise ValueError(f"{name}: must lie in {interval}, got {value}")


def _check_choice(cfg: TrainConfig, name: str, choices: Sequence[str]) -> None:
    if getattr(cfg, name) not in choices:
        raise ValueError(f"{name}: must be one of {', '.join(choices)}, got {getattr(cfg, name)!r}")


@dataclass
class RunResult:
    """Outcome of one run. Losses are nats per token (NaN when diverged); flops are Appendix F."""

    status: str
    steps: int
    tokens: int
    train_loss: float
    val_loss: float
    val_bpb: float
    wall_s: float
    tokens_per_s: float
    device: str
    diverged_step: int | None = None
    flops: float = 0.0
    flops_6nd: float = 0.0


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


@dataclass
class TrainState:
    """What a checkpoint holds besides the model and optimizer."""

    step: int = 0
    curve: list[dict] = field(default_factory=list)
    loss_sum: torch.Tensor | None = None
    loss_count: int = 0
    wall_s: float = 0.0
    train_s: float = 0.0


@dataclass
class Runtime:
    device: torch.device
    autocast: Callable[[], contextlib.AbstractContextManager]
    compile: bool


def resolve_device(name: str) -> torch.device:
    """`auto` picks CUDA, then Apple MPS, then CPU; an explicit device must be present."""
    available = {
        "cuda": torch.cuda.is_available(),
        "mps": getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available(),
        "cpu": True,
    }
    if name == "auto":
        return torch.device(next(kind for kind in ("cuda", "mps", "cpu") if available[kind]))
    if not available[name]:
        raise SpecError("device", "train.device", f"{name} is not available on this machine")
    return torch.device(name)


def _setup_runtime(cfg: TrainConfig) -> Runtime:
    device = resolve_device(cfg.device)
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    dtype = cfg.dtype if cfg.dtype != "auto" else ("bf16" if device.type == "cuda" else "fp32")
    if dtype == "bf16":

        def autocast() -> contextlib.AbstractContextManager:
            return torch.autocast(device.type, dtype=torch.bfloat16)
    else:
        autocast = contextlib.nullcontext
    use_compile = cfg.compile if cfg.compile is not None else device.type == "cuda"
    return Runtime(device, autocast, use_compile)


def build_optimizer(model: torch.nn.Module, cfg: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices (and embeddings) only; fused kernels where torch has them."""
    matrices = [p for p in model.parameters() if p.dim() >= 2]
    vectors = [p for p in model.parameters() if p.dim() < 2]
    groups = [
        {"params": matrices, "weight_decay": cfg.weight_decay},
        {"params": vectors, "weight_decay": 0.0},
    ]
    if device.type in ("cuda", "cpu"):
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), fused=True)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), foreach=True)


def validation_windows(val_tokens: np.ndarray, seq_len: int, n_batches: int, where: str) -> list[tuple]:
    """Fixed evaluation set: n_batches x EVAL_BATCH_SIZE windows evenly spaced over the validation text."""
    last_start = len(val_tokens) - seq_len - 1
    if last_start < 0:
        raise DataError(where, "val_tokens", f"{len(val_tokens)} validation tokens, need at least {seq_len + 1}")
    starts = np.linspace(0, last_start, n_batches * EVAL_BATCH_SIZE).round().astype(np.int64)
    windows = np.stack([val_tokens[s : s + seq_len + 1] for s in starts]).astype(np.int64)
    batches = torch.from_numpy(windows).split(EVAL_BATCH_SIZE)
    return [(b[:, :-1].contiguous(), b[:, 1:].contiguous()) for b in batches]


@torch.no_grad()
def evaluate(model: torch.nn.Module, windows: list[tuple], runtime: Runtime) -> float:
    """Mean cross-entropy (nats per token) over the fixed validation windows."""
    model.eval()
    total = 0.0
    for x, y in windows:
        with runtime.autocast():
            _, loss = model(x.to(runtime.device), y.to(runtime.device))
        total += loss.item()
    model.train()
    return total / len(windows)


def _rng_state() -> dict:
    numpy_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": [numpy_state[0], torch.from_numpy(numpy_state[1].astype(np.int64)), *numpy_state[2:]],
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), *rest))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_state(
    path: Path,
    model: GPT,
    optimizer: torch.optim.Optimizer,
    state: TrainState,
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    plan: StepPlan,
) -> None:
    """Write the whole training state atomically: temp file, fsync, rename, fsync the directory."""
    payload = {
        "format": STATE_FORMAT,
        "model_config": model_cfg.to_dict(),
        "train_config": train_cfg.to_dict(),
        "schedule": asdict(plan),
        "step": state.step,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "loss_sum": state.loss_sum,
        "loss_count": state.loss_count,
        "curve": state.curve,
        "wall_s": state.wall_s,
        "train_s": state.train_s,
        "rng": _rng_state(),
    }
    # The previous checkpoint stays whole until this one is complete.
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


def _require_same(path: Path, section: str, saved: dict, current: dict, names: Sequence[str]) -> None:
    for name in names:
        if saved.get(name) != current[name]:
            raise StoreError(
                str(path),
                f"{section}.{name}",
                f"state was saved with {saved.get(name)!r}, this run has {current[name]!r}",
            )


def restore(
    path: Path,
    payload: dict,
    model: GPT,
    optimizer: torch.optim.Optimizer,
    runtime: Runtime,
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    *,
    branch: bool,
) -> TrainState:
    """Load a payload into the model and optimizer after checking it belongs to this run (or its trunk)."""
    _require_same(path, "model", payload["model_config"], model_cfg.to_dict(), [f.name for f in fields(model_cfg)])
    current = train_cfg.to_dict()
    shared = TRUNK_SHARED_FIELDS if branch else [name for name in current if name not in RESUME_FREE_FIELDS]
    _require_same(path, "train", payload["train_config"], current, shared)
    model.load_state_dict(payload["model"])
    optimizer.load_state_dict(payload["optimizer"])
    _set_rng_state(payload["rng"])
    return TrainState(
        step=payload["step"],
        curve=list(payload["curve"]),
        loss_sum=payload["loss_sum"].to(runtime.device),
        loss_count=payload["loss_count"],
        wall_s=payload["wall_s"],
        train_s=payload["train_s"],
    )


class CurveWriter:
    """Streams evaluation points to curve.jsonl and to an optional callback."""

    def __init__(self, path: Path, prefix: list[dict], on_point: Callable[[dict], None] | None):
        self.path = path
        self.on_point = on_point
        # Rewriting the file drops points written after the state we resume from.
        atomic.write_text(path, "".join(json.dumps(point) + "\n" for point in prefix))

    def write(self, point: dict) -> None:
        with open(self.path, "a") as handle:
            handle.write(json.dumps(point) + "\n")
        if self.on_point is not None:
            self.on_point(point)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_run(
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    data: PreparedData,
    run_dir: Path,
    *,
    trunk_saves: Sequence[int] = (),
    start_from: Path | None = None,
    on_point: Callable[[dict], None] | None = None,
) -> RunResult:
    """Train one model on one budget; resume from run_dir/checkpoint.pt when it exists.

    `trunk_saves`: steps after which the full state is also saved to run_dir/trunk/step_<k>.pt.
    `start_from`: a trunk state to continue from with this config's own schedule (a cooldown branch);
    ignored once the branch has a checkpoint of its own. The branch's curve starts with the trunk's points.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if model_cfg.vocab_size < data.vocab_size:
        raise SpecError(data.name, "model.vocab_size", f"{model_cfg.vocab_size} < the data's {data.vocab_size}")
    plan = plan_steps(train_cfg, model_cfg)
    runtime = _setup_runtime(train_cfg)
    torch.manual_seed(train_cfg.seed)
    model = GPT(model_cfg).to(runtime.device)
    optimizer = build_optimizer(model, train_cfg, runtime.device)
    state = _initial_state(run_dir, start_from, model, optimizer, runtime, model_cfg, train_cfg)
    windows = validation_windows(data.val_tokens(), model_cfg.seq_len, train_cfg.eval_batches, data.name)
    curve = CurveWriter(run_dir / CURVE_NAME, state.curve, on_point)
    diverged_step = _loop(
        model,
        optimizer,
        state,
        plan,
        runtime,
        model_cfg,
        train_cfg,
        data,
        windows,
        curve,
        run_dir,
        set(trunk_saves),
    )
    return _result(state, plan, model_cfg, runtime, diverged_step)


def _initial_state(
    run_dir: Path,
    start_from: Path | None,
    model: GPT,
    optimizer: torch.optim.Optimizer,
    runtime: Runtime,
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
) -> TrainState:
    checkpoint = run_dir / CHECKPOINT_NAME
    if checkpoint.exists():
        payload = load_payload(checkpoint)
        return restore(checkpoint, payload, model, optimizer, runtime, model_cfg, train_cfg, branch=False)
    if start_from is not None:
        payload = load_payload(Path(start_from))
        state = restore(Path(start_from), payload, model, optimizer, runtime, model_cfg, train_cfg, branch=True)
        _check_branch_schedule(
            Path(start_from), TrainConfig(**payload["train_config"]), train_cfg, model_cfg, state.step
        )
        return state
    return TrainState(loss_sum=torch.zeros((), device=runtime.device))


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


class Clock:
    """Wall time and training time (wall time less evaluation and saving), carried across resumes."""

    def __init__(self, wall_s: float, train_s: float):
        self.base_wall, self.base_train = wall_s, train_s
        self.started = time.perf_counter()
        self.aside_s = 0.0
        self.aside_since: float | None = None

    def wall(self) -> float:
        return self.base_wall + time.perf_counter() - self.started

    def train(self) -> float:
        now = time.perf_counter()
        current_aside = now - self.aside_since if self.aside_since is not None else 0.0
        return self.base_train + now - self.started - self.aside_s - current_aside

    @contextlib.contextmanager
    def aside(self):
        """Time spent in this block does not count as training time."""
        self.aside_since = time.perf_counter()
        try:
            yield
        finally:
            self.aside_s += time.perf_counter() - self.aside_since
            self.aside_since = None


def _loop(
    model: GPT,
    optimizer: torch.optim.Optimizer,
    state: TrainState,
    plan: StepPlan,
    runtime: Runtime,
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    data: PreparedData,
    windows: list[tuple],
    curve: CurveWriter,
    run_dir: Path,
    trunk_saves: set[int],
) -> int | None:
    """Run steps from state.step to the end; returns the diverged step or None. Mutates state."""
    device, seq_len, batch_size, seed = runtime.device, model_cfg.seq_len, train_cfg.batch_size, train_cfg.seed
    forward = torch.compile(model) if runtime.compile else model
    params = [p for group in optimizer.param_groups for p in group["params"]]
    groups = optimizer.param_groups
    tokens = data.train_tokens()
    flops_per_tok = flops_per_token(model_cfg)["chinchilla"]
    nan_step = -1 if train_cfg.nan_at_step is None else train_cfg.nan_at_step
    pin = device.type == "cuda"
    clock = Clock(state.wall_s, state.train_s)

    def save(path: Path) -> None:
        state.wall_s, state.train_s = clock.wall(), clock.train()
        save_state(path, model, optimizer, state, model_cfg, train_cfg, plan)

    def record_point(lr: float) -> None:
        point = _evaluate_point(model, windows, runtime, state, plan, data, lr, flops_per_tok)
        point["wall_s"] = clock.wall()
        state.curve.append(point)
        curve.write(point)

    step = state.step
    if step in trunk_saves:
        save(run_dir / TRUNK_DIR / f"step_{step}.pt")
    lr = lr_at(max(0, step - 1), plan, train_cfg)
    diverged_step = None
    ran_steps = step < plan.total_steps
    while step < plan.total_steps:
        lr = lr_at(step, plan, train_cfg)
        for group in groups:
            group["lr"] = lr
        x, y = get_batch(tokens, seq_len, batch_size, seed, step)
        if pin:
            x, y = x.pin_memory(), y.pin_memory()
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with runtime.autocast():
            _, loss = forward(x, y)
        if step == nan_step:
            loss = loss * float("nan")
        loss.backward()
        # One host sync per step checks both the loss and the gradient norm before anything is updated.
        check = loss.detach()
        if train_cfg.grad_clip > 0:
            check = check + torch.nn.utils.clip_grad_norm_(params, train_cfg.grad_clip)
        if not torch.isfinite(check).item():
            diverged_step = step
            break
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        state.loss_sum += loss.detach()
        state.loss_count += 1
        step += 1
        state.step = step
        at_end = step == plan.total_steps
        due_eval = at_end or (train_cfg.eval_every and step % train_cfg.eval_every == 0)
        due_checkpoint = train_cfg.checkpoint_every and (at_end or step % train_cfg.checkpoint_every == 0)
        if due_eval or due_checkpoint or step in trunk_saves:
            _sync(device)
            with clock.aside():
                if due_eval:
                    record_point(lr)
                if due_checkpoint:
                    save(run_dir / CHECKPOINT_NAME)
                if step in trunk_saves:
                    save(run_dir / TRUNK_DIR / f"step_{step}.pt")
    if ran_steps:
        _sync(device)
        state.wall_s, state.train_s = clock.wall(), clock.train()
    if diverged_step is None and (not state.curve or state.curve[-1]["step"] != state.step):
        record_point(lr)
    return diverged_step


def _evaluate_point(
    model: GPT,
    windows: list[tuple],
    runtime: Runtime,
    state: TrainState,
    plan: StepPlan,
    data: PreparedData,
    lr: float,
    flops_per_tok: int,
) -> dict:
    """One curve point; resets the running train-loss mean."""
    train_loss = state.loss_sum.item() / state.loss_count if state.loss_count else math.nan
    state.loss_sum.zero_()
    state.loss_count = 0
    val_loss = evaluate(model, windows, runtime)
    tokens = state.step * plan.tokens_per_step
    return {
        "step": state.step,
        "tokens": tokens,
        "flops": float(tokens) * flops_per_tok,
        "lr": lr,
        "train_loss": train_loss,
        "val_loss": val_loss,
        "val_bpb": bits_per_byte(val_loss, data.bytes_per_token),
    }


def bits_per_byte(loss_nats_per_token: float, bytes_per_token: float) -> float:
    """nats/token -> bits/byte: divide by ln 2 (nats -> bits) and by the bytes each token covers."""
    return loss_nats_per_token / math.log(2) / bytes_per_token


def _result(
    state: TrainState, plan: StepPlan, model_cfg: ModelConfig, runtime: Runtime, diverged_step: int | None
) -> RunResult:
    tokens = state.step * plan.tokens_per_step
    per_token = flops_per_token(model_cfg)
    _, nonembed = count_params(model_cfg)
    last = state.curve[-1] if state.curve and diverged_step is None else None
    return RunResult(
        status="done" if diverged_step is None else "diverged",
        steps=state.step,
        tokens=tokens,
        train_loss=last["train_loss"] if last else math.nan,
        val_loss=last["val_loss"] if last else math.nan,
        val_bpb=last["val_bpb"] if last else math.nan,
        wall_s=state.wall_s,
        tokens_per_s=tokens / state.train_s if state.train_s > 0 else math.nan,
        device=runtime.device.type,
        diverged_step=diverged_step,
        flops=float(tokens) * per_token["chinchilla"],
        flops_6nd=6.0 * nonembed * tokens,
    )
