"""The training loop of one run, with the evaluation it calls; `train_run` is the entry point.

Step k trains on `get_batch(tokens, seq_len, batch_size, seed, k)` at `lr_at(k)`; after the steps that are
due, the run is evaluated on fixed validation windows, checkpointed, and saved for cooldown branches.
The loss and the gradient norm of each step stay on the device; the host reads whether they were finite
every `check_every` steps and before anything is evaluated or saved (a read is a sync point on a GPU, as
in nanoGPT). A step that was not finite ends the run as diverged at that step; the steps queued after it
are thrown away with the model, so every state on disk was trained on finite steps only.
A run may be told to use more CPU threads while it trains (`thread_allowance`); every curve point records the
thread count in use, because fp32 results on a CPU differ in their last bits between thread counts.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from scaling_cli.data import PreparedData, get_batch
from scaling_cli.divergence import blown_up
from scaling_cli.errors import DataError, SpecError
from scaling_cli.model import ModelConfig, build_model, count_params, flops_per_token
from scaling_cli.train.checkpoint import (
    CHECKPOINT_NAME,
    CURVE_NAME,
    CurveWriter,
    TrainState,
    initial_state,
    save_state,
    trunk_state_path,
)
from scaling_cli.train.config import StepPlan, TrainConfig, lr_at, plan_steps
from scaling_cli.train.distributed import (
    SINGLE,
    Ranks,
    all_finite,
    full_states,
    gradient_sync,
    rank_mean,
    rank_rows,
    state_loader,
    stop_asked,
    wrap_model,
)
from scaling_cli.train.mfu import device_name, peak_flops, utilisation
from scaling_cli.train.runtime import Clock, Runtime, resolve_dtype, setup_runtime
from scaling_cli.train.stop import STOP_REQUESTED, StopRequested

EVAL_BATCH_SIZE = 16  # fixed, so runs with different batch sizes are scored on the same text
THREAD_CHECK_S = 1.0  # how often a run with a thread allowance looks at it (a file read, at a step boundary)
FINITE_CHECK_EVERY = 16  # steps between host reads of the finiteness checks (each read waits for the device)


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
    data_parallel: int = 1  # ranks that trained it
    flops_per_s: float = math.nan  # Appendix F FLOPs trained per second of training time, all ranks together
    peak_flops: float = math.nan  # one device's peak for the run's dtype (train.mfu)
    mfu: float = math.nan  # flops_per_s / (peak_flops x data_parallel)
    diverged_reason: str = ""  # why a diverged run stopped: a non-finite step, or a loss past divergence.loss_limit


def train_run(
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    data: PreparedData,
    run_dir: Path,
    *,
    trunk_saves: Sequence[int] = (),
    start_from: Path | None = None,
    on_point: Callable[[dict], None] | None = None,
    thread_allowance: Callable[[], int | None] | None = None,
    check_every: int = FINITE_CHECK_EVERY,
    ranks: Ranks = SINGLE,
) -> RunResult:
    """Train one model on one budget; resume from run_dir/checkpoint.pt when it exists.

    `trunk_saves`: steps after which the full state is also saved to run_dir/trunk/step_<k>.pt.
    `start_from`: a trunk state to continue from with this config's own schedule (a cooldown branch);
    ignored once the branch has a checkpoint of its own. The branch's curve starts with the trunk's points.
    `thread_allowance`: called about every THREAD_CHECK_S seconds between steps; a thread count it returns
    that differs from the current one is applied (a sweep gives a running unit the cores a finished one freed).
    `check_every`: steps between host reads of the finiteness checks; results do not depend on it.
    `ranks`: this process's rank in a data-parallel run (`train_data_parallel` launches them).
    """
    if train_cfg.data_parallel > 1 and ranks.world == 1:
        from scaling_cli.train.launch import train_data_parallel

        return train_data_parallel(model_cfg, train_cfg, data, run_dir, (tuple(trunk_saves), start_from))
    run = start_training(
        model_cfg, train_cfg, data, run_dir, trunk_saves=trunk_saves, start_from=start_from, on_point=on_point,
        ranks=ranks,
    )  # fmt: skip
    run.thread_allowance, run.check_every = thread_allowance, check_every
    return run.result(run.train())


def start_training(
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    data: PreparedData,
    run_dir: Path,
    *,
    ranks: Ranks = SINGLE,
    on_point: Callable[[dict], None] | None = None,
    trunk_saves: Sequence[int] = (),
    start_from: Path | None = None,
) -> Training:
    """Everything train_run sets up before its first step: runtime, model, optimizer, state, evaluation set."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if model_cfg.vocab_size < data.vocab_size:
        raise SpecError(data.name, "model.vocab_size", f"{model_cfg.vocab_size} < the data's {data.vocab_size}")
    runtime = setup_runtime(train_cfg)
    torch.manual_seed(train_cfg.seed)
    model = build_model(model_cfg).to(runtime.device)
    wrapped = wrap_model(model, train_cfg, ranks, runtime.device)  # before the optimizer: FSDP2 swaps parameters
    optimizer = build_optimizer(model, train_cfg, runtime.device)
    load = state_loader(model, optimizer, train_cfg, ranks)
    state = initial_state(run_dir, start_from, model, optimizer, runtime.device, model_cfg, train_cfg, load)
    windows = validation_windows(data.val_tokens(), model_cfg.seq_len, train_cfg.eval_batches, data.name)
    return Training(
        model=model,
        optimizer=optimizer,
        state=state,
        plan=plan_steps(train_cfg, model_cfg),
        runtime=runtime,
        model_cfg=model_cfg,
        train_cfg=train_cfg,
        data=data,
        windows=windows,
        curve=CurveWriter(run_dir / CURVE_NAME if ranks.writer else None, state.curve, on_point),
        run_dir=run_dir,
        trunk_saves=frozenset(trunk_saves),
        ranks=ranks,
        wrapped=wrapped,
    )


def build_optimizer(model: torch.nn.Module, cfg: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW with the model's parameter groups (weight decay on matrices and embeddings only; under muP the
    hidden matrices' lr scale); fused kernels where torch has them. A plug-in model without `optimizer_groups`
    gets the same two groups by parameter shape."""
    if hasattr(model, "optimizer_groups"):
        groups = model.optimizer_groups(cfg.lr, cfg.weight_decay)
    else:
        params = list(model.parameters())
        groups = [
            {"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay, "lr_scale": 1.0},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0, "lr_scale": 1.0},
        ]
    if device.type in ("cuda", "cpu"):
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), fused=True)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), foreach=True)


@dataclass
class Training:
    """One call of train_run: the model, its optimizer and state, and what the steps read and write."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    state: TrainState
    plan: StepPlan
    runtime: Runtime
    model_cfg: ModelConfig
    train_cfg: TrainConfig
    data: PreparedData
    windows: list[tuple]
    curve: CurveWriter
    run_dir: Path
    trunk_saves: frozenset[int]
    thread_allowance: Callable[[], int | None] | None = None
    check_every: int = FINITE_CHECK_EVERY
    blown: str | None = None  # why an evaluated loss passed the divergence limit (the run stops there)
    ranks: Ranks = SINGLE
    wrapped: torch.nn.Module | None = None  # the model under DDP or FSDP2 in a data-parallel run
    stop_agreed: bool = False  # every rank of a data-parallel run has learnt that a stop was asked for

    def __post_init__(self) -> None:
        trained = self.wrapped if self.wrapped is not None else self.model
        self.forward = torch.compile(trained) if self.runtime.compile else trained
        self.params = [p for group in self.optimizer.param_groups for p in group["params"]]
        self.tokens = self.data.train_tokens()
        self.flops_per_token = flops_per_token(self.model_cfg)["chinchilla"]
        self.clock = Clock(self.state.wall_s, self.state.train_s)
        self.lr_in_groups: float | None = None
        self.next_thread_check = time.perf_counter() + THREAD_CHECK_S
        self.checks: list[torch.Tensor] = []  # per step since the last read: loss (+ grad norm), on the device

    def train(self) -> int | None:
        """Run the steps from state.step to the end; returns the step that diverged, or None."""
        state, total = self.state, self.plan.total_steps
        if state.step in self.trunk_saves:
            self.save(trunk_state_path(self.run_dir, state.step))
        ran_steps = state.step < total
        lr = lr_at(max(0, state.step - 1), self.plan, self.train_cfg)
        diverged_step = None
        while state.step < total:
            lr = lr_at(state.step, self.plan, self.train_cfg)
            diverged_step = self.advance(lr)
            if diverged_step is not None:
                break
        if ran_steps:
            self.runtime.sync()
            state.wall_s, state.train_s = self.clock.wall(), self.clock.train()
        if diverged_step is None and (not state.curve or state.curve[-1]["step"] != state.step):
            self.record_point(lr)
            diverged_step = state.step if self.blown else None
        return diverged_step

    def advance(self, lr: float) -> int | None:
        """One step of the loop and what is due after it; returns the step that diverged, or None."""
        self.take_step(lr)
        self.state.step += 1
        if len(self.checks) >= self.check_every or any(self.due_after(self.state.step)):
            diverged_step = self.first_nonfinite_step()
            if diverged_step is not None:
                self.state.step = diverged_step
                return diverged_step
            self.after_step(lr)
            if self.blown:
                return self.state.step
        if self.thread_allowance is not None:
            self.follow_thread_allowance()
        if STOP_REQUESTED.is_set() or self.stop_agreed:  # a data-parallel run's ranks agree at a finiteness read
            self.stop_here()
        return None

    def stop_here(self) -> None:
        """Save the state at this step (only if every step since the last check was finite) and stop."""
        if self.first_nonfinite_step() is None and not self.blown:
            self.runtime.sync()
            with self.clock.aside():
                self.save(self.run_dir / CHECKPOINT_NAME)
        raise StopRequested(self.state.step)

    def take_step(self, lr: float) -> None:
        """One optimizer step at `lr`; its finiteness check is queued on the device, not read here."""
        if lr != self.lr_in_groups:  # constant for most steps of a WSD or warmup-free run
            for group in self.optimizer.param_groups:
                group["lr"] = lr * group.get("lr_scale", 1.0)  # states saved before muP have no lr_scale
            self.lr_in_groups = lr
        step = self.state.step
        x, y = get_batch(self.tokens, self.model_cfg.seq_len, self.train_cfg.batch_size, self.train_cfg.seed, step)
        if self.ranks.world > 1:
            x, y = rank_rows(x, self.ranks), rank_rows(y, self.ranks)
        passes = self.train_cfg.accumulation_steps
        step_loss = None
        for index, (x_part, y_part) in enumerate(zip(x.chunk(passes), y.chunk(passes), strict=True)):
            with gradient_sync(self.forward, index == passes - 1):
                loss = self.forward_backward(x_part, y_part, step, passes)
            step_loss = loss if step_loss is None else step_loss + loss
        check = step_loss
        if self.train_cfg.grad_clip > 0:
            norm = torch.nn.utils.clip_grad_norm_(self.params, self.train_cfg.grad_clip)
            check = check + (norm.full_tensor() if hasattr(norm, "full_tensor") else norm)  # FSDP2: a DTensor
        self.checks.append(check)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.state.loss_sum += step_loss
        self.state.loss_count += 1

    def forward_backward(self, x: torch.Tensor, y: torch.Tensor, step: int, passes: int) -> torch.Tensor:
        """Forward and backward of one (micro-)batch; its loss, detached, as a share of the step's loss."""
        device = self.runtime.device
        if device.type == "cuda":
            x, y = x.pin_memory(), y.pin_memory()
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with self.runtime.autocast():
            _, loss = self.forward(x, y)
        if step == self.train_cfg.nan_at_step:
            loss = loss * float("nan")
        if passes > 1:  # gradients add up over the passes: each is a mean over 1/passes of the rows
            loss = loss / passes
        loss.backward()
        return loss.detach()

    def first_nonfinite_step(self) -> int | None:
        """Read the queued checks back (one host read); the first step whose loss or gradient norm was not
        finite, or None."""
        if not self.checks:
            return None
        asked = stop_asked(self.run_dir, self.ranks)
        finite, stop = all_finite(torch.isfinite(torch.stack(self.checks)), self.ranks, asked)
        self.stop_agreed = self.stop_agreed or stop
        first_step = self.state.step - len(self.checks)
        self.checks.clear()
        if bool(finite.all()):
            return None
        return first_step + int((~finite).nonzero()[0, 0])

    def due_after(self, step: int) -> tuple[bool, bool, bool]:
        """(evaluation, checkpoint, trunk state) due after `step`; each must see only finite steps."""
        cfg = self.train_cfg
        at_end = step == self.plan.total_steps
        due_eval = at_end or bool(cfg.eval_every and step % cfg.eval_every == 0)
        due_checkpoint = bool(cfg.checkpoint_every) and (at_end or step % cfg.checkpoint_every == 0)
        return due_eval, due_checkpoint, step in self.trunk_saves

    def after_step(self, lr: float) -> None:
        """Evaluate, checkpoint and save trunk states when due; that time does not count as training."""
        step = self.state.step
        due_eval, due_checkpoint, due_trunk = self.due_after(step)
        if not (due_eval or due_checkpoint or due_trunk):
            return
        self.runtime.sync()
        with self.clock.aside():
            if due_eval:
                self.record_point(lr)
                if self.blown:  # final: no checkpoint to resume a blown-up run from
                    return
            if due_checkpoint:
                self.save(self.run_dir / CHECKPOINT_NAME)
            if due_trunk:
                self.save(trunk_state_path(self.run_dir, step))

    def follow_thread_allowance(self) -> None:
        now = time.perf_counter()
        if now < self.next_thread_check:
            return
        self.next_thread_check = now + THREAD_CHECK_S
        threads = self.thread_allowance()
        if threads and threads != torch.get_num_threads():
            torch.set_num_threads(threads)

    def save(self, path: Path) -> None:
        """Rank 0 writes the state; the running train-loss sum saved is the mean over ranks."""
        self.state.wall_s, self.state.train_s = self.clock.wall(), self.clock.train()
        state, states = self.state, None
        if self.ranks.world > 1:
            state = dataclasses.replace(state, loss_sum=rank_mean(state.loss_sum, self.ranks))
            states = full_states(self.model, self.optimizer, self.train_cfg)
        if self.ranks.writer:
            save_state(path, self.model, self.optimizer, state, self.model_cfg, self.train_cfg, self.plan, states)

    def record_point(self, lr: float) -> None:
        """Evaluate and append one curve point; resets the running train-loss mean."""
        state = self.state
        loss_sum = rank_mean(state.loss_sum, self.ranks)
        train_loss = loss_sum.item() / state.loss_count if state.loss_count else math.nan
        state.loss_sum.zero_()
        state.loss_count = 0
        val_loss = evaluate(self.model, self.windows, self.runtime)
        tokens = state.step * self.plan.tokens_per_step
        point = {
            "step": state.step,
            "tokens": tokens,
            "flops": float(tokens) * self.flops_per_token,
            "lr": lr,
            "train_loss": train_loss,
            "val_loss": val_loss,
            "val_bpb": bits_per_byte(val_loss, self.data.bytes_per_token),
            "wall_s": self.clock.wall(),
            "threads": torch.get_num_threads(),
        }
        state.curve.append(point)
        self.curve.write(point)
        for what in ("val_loss", "train_loss"):
            self.blown = self.blown or blown_up(point[what], self.model_cfg.vocab_size, f"{what} at step {state.step}")

    def result(self, diverged_step: int | None) -> RunResult:
        state = self.state
        tokens = state.step * self.plan.tokens_per_step
        _, nonembed = count_params(self.model_cfg)
        last = state.curve[-1] if state.curve and diverged_step is None else None
        tokens_per_s = tokens / state.train_s if state.train_s > 0 else math.nan
        flops_per_s = tokens_per_s * self.flops_per_token
        peak = peak_flops(
            device_name(self.runtime.device), resolve_dtype(self.train_cfg.dtype, self.runtime.device.type)
        )
        return RunResult(
            status="done" if diverged_step is None else "diverged",
            steps=state.step,
            tokens=tokens,
            train_loss=last["train_loss"] if last else math.nan,
            val_loss=last["val_loss"] if last else math.nan,
            val_bpb=last["val_bpb"] if last else math.nan,
            wall_s=state.wall_s,
            tokens_per_s=tokens_per_s,
            device=self.runtime.device.type,
            diverged_step=diverged_step,
            flops=float(tokens) * self.flops_per_token,
            flops_6nd=6.0 * nonembed * tokens,
            data_parallel=self.ranks.world,
            flops_per_s=flops_per_s,
            peak_flops=peak,
            mfu=utilisation(flops_per_s, peak, self.ranks.world),
            diverged_reason=self.diverged_reason(diverged_step),
        )

    def diverged_reason(self, diverged_step: int | None) -> str:
        if diverged_step is None:
            return ""
        return self.blown or f"loss or gradient norm not finite at step {diverged_step}"


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


def bits_per_byte(loss_nats_per_token: float, bytes_per_token: float) -> float:
    """nats/token -> bits/byte: divide by ln 2 (nats -> bits) and by the bytes each token covers."""
    return loss_nats_per_token / math.log(2) / bytes_per_token
