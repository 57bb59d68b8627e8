"""Benchmark: the trainer, run as a one-run sweep, against a bare PyTorch loop; and a whole sweep against the
sum of bare loops.

1. Per shape (d32: 2 layers, d_model 32, 1 head, seq 128, batch 16; d128: 4 layers, d_model 128, 4 heads,
   seq 256, batch 16; byte vocabulary, fp32, markov data), rounds alternate between a one-run sweep
   (`scale sweep` machinery: local executor, worker process, the sweep's own thread choice) and a bare loop
   at every thread count from 1 to the usable cores. Both sides do the same work and are timed the same way:
   - each trains in a fresh spawned process, timed from just before its first step to the end of its last
     (first-step costs such as thread-pool start and kernel selection count on both sides);
   - each step is one batch of random windows, forward, backward, clipping the gradient norm to 1.0 (the
     trainer's default) and an AdamW step; the bare loop uses torch's clip_grad_norm_ and AdamW defaults;
   - the trainer's rate is the run's tokens_per_s, which leaves out its one evaluation and checkpoint after
     the last step (the bare loop has neither); its schedule, batch seeding and finite-loss check count.
   Interference from other work only ever slows a round, so fastest rounds are compared (medians printed).
2. Sweep level (skip with --no-sweep): the demo grid (sweeps/demo.toml, 2 workers) trained into a temporary
   directory, its wall time (planning, data, evaluation, checkpoints and the tables included) against the
   sum of a bare loop's time for the steps the sweep trains (a WSD trunk's steps once, each branch's cooldown
   from the trunk's saved state), and for every run trained on its own from scratch, at the best thread count
   for each shape (each step time measured here, in the same run); and the size of its results directory.

3. Steady state (per shape, 2 threads): median seconds per step after warm-up, the trainer's own loop body
   (`Training.advance`: lr schedule, seeded batch, forward, backward, clipping, AdamW, finiteness checks
   read every 16 steps) against the bare loop, in one process. Blocks of steps alternate between the two so
   that other work on the machine slows both alike; whole-run times above include start-up, this does not.
   `--profile` adds cProfile's top functions for each side.

Usage: python bench/bench_train.py [--rounds 3] [--no-sweep] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import multiprocessing as mp
import os
import pstats
import statistics
import tempfile
import time
from pathlib import Path

import torch

from scaling_cli.data import prepare
from scaling_cli.executors.local import LocalExecutor
from scaling_cli.model import GPT, ModelConfig
from scaling_cli.plan import load_sweep
from scaling_cli.store import Store
from scaling_cli.sweep import plan_sweep, run_sweep
from scaling_cli.train import TrainConfig
from scaling_cli.train.config import lr_at
from scaling_cli.train.loop import start_training

REPO = Path(__file__).resolve().parents[1]
BATCH_SIZE = 16
LR = 1e-3
SHAPES = {
    "d32": (ModelConfig(d_model=32, n_layer=2, n_head=1, seq_len=128), 200),  # (model, steps per round)
    "d128": (ModelConfig(d_model=128, n_layer=4, n_head=4, seq_len=256), 30),
}
ONE_RUN_SPEC = """name = "bench-{label}-{seed}"
dataset = "markov"
device = "cpu"
seeds = [{seed}]
[model]
shapes = [{{d_model = {d_model}, n_layer = {n_layer}, n_head = {n_head}}}]
seq_len = {seq_len}
[train]
tokens = [{tokens}]
lr = {lr}
batch_size = {batch_size}
schedule = "cosine"
checkpoint_every = 1000000
dtype = "fp32"
[eval]
every = 1000000
batches = 1
"""


def usable_cores() -> int:
    return len(os.sched_getaffinity(0))


def bare_loop_step_s(config: ModelConfig, tokens: torch.Tensor, steps: int, threads: int, seed: int) -> float:
    """Mean seconds per step of the loop anyone would write: random windows, forward, backward, clipping,
    AdamW."""
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    model = GPT(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, betas=(0.9, 0.95), weight_decay=0.1)
    generator = torch.Generator().manual_seed(seed)
    window = torch.arange(config.seq_len + 1)
    began = time.perf_counter()
    for _ in range(steps):
        starts = torch.randint(0, len(tokens) - config.seq_len - 1, (BATCH_SIZE, 1), generator=generator)
        batch = tokens[starts + window]
        _, loss = model(batch[:, :-1], batch[:, 1:])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return (time.perf_counter() - began) / steps


def fresh_process_bare_loop_step_s(config: ModelConfig, steps: int, threads: int, seed: int) -> float:
    """bare_loop_step_s in a newly spawned process, as the sweep's worker trains in one."""
    with mp.get_context("spawn").Pool(1) as pool:
        return pool.apply(_bare_loop_on_markov, (config, steps, threads, seed))


def _bare_loop_on_markov(config: ModelConfig, steps: int, threads: int, seed: int) -> float:
    tokens = torch.from_numpy(prepare("markov").train_tokens().astype("int64"))
    return bare_loop_step_s(config, tokens, steps, threads, seed)


def one_run_sweep(label: str, config: ModelConfig, steps: int, seed: int, work: Path) -> tuple[float, int | None]:
    """(tokens/s the run reports, threads the sweep gave it) for a fresh one-run sweep."""
    spec = work / f"{label}-{seed}.toml"
    spec.write_text(
        ONE_RUN_SPEC.format(
            label=label, seed=seed, tokens=steps * BATCH_SIZE * config.seq_len, lr=LR, batch_size=BATCH_SIZE,
            d_model=config.d_model, n_layer=config.n_layer, n_head=config.n_head, seq_len=config.seq_len,
        )
    )  # fmt: skip
    out = work / f"{label}-{seed}"
    sweep = load_sweep(spec)
    outcome = run_sweep(sweep, out, LocalExecutor(workers=1), retries=0)
    assert outcome.counts["done"] == 1, outcome
    (row,) = Store(out).rows()
    (attempt,) = Store(out).attempts(row["run_id"])
    return float(row["tokens_per_s"]), attempt["threads"]


def compare_shape(label: str, config: ModelConfig, steps: int, rounds: int, work: Path) -> float:
    cores = list(range(1, usable_cores() + 1))
    trainer, bare = [], {threads: [] for threads in cores}
    threads_used = None
    for round_index in range(rounds):
        rate, threads_used = one_run_sweep(label, config, steps, round_index, work)
        trainer.append(rate)
        for threads in cores:
            bare[threads].append(
                BATCH_SIZE * config.seq_len / fresh_process_bare_loop_step_s(config, steps, threads, round_index)
            )
        shown = "  ".join(f"bare {t} thr {bare[t][-1]:,.0f}" for t in cores)
        print(
            f"{label} round {round_index + 1}: one-run sweep {rate:,.0f} tok/s ({threads_used} thr)  {shown}",
            flush=True,
        )
    best_threads = max(cores, key=lambda t: max(bare[t]))
    ratio = max(trainer) / max(bare[best_threads])
    print(
        f"{label}: trainer as a one-run sweep {max(trainer):,.0f} tok/s (median {statistics.median(trainer):,.0f}, "
        f"{threads_used} threads) / bare loop {max(bare[best_threads]):,.0f} tok/s at its best {best_threads} threads "
        f"(median {statistics.median(bare[best_threads]):,.0f}) = {ratio:.3f} (target >= 1.0)",
        flush=True,
    )
    return ratio


class BareLoop:
    """bare_loop_step_s's loop, one step per call."""

    def __init__(self, config: ModelConfig, tokens: torch.Tensor, seed: int):
        torch.manual_seed(seed)
        self.config, self.tokens = config, tokens
        self.model = GPT(config)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=LR, betas=(0.9, 0.95), weight_decay=0.1)
        self.generator = torch.Generator().manual_seed(seed)
        self.window = torch.arange(config.seq_len + 1)

    def step(self) -> None:
        high = len(self.tokens) - self.config.seq_len - 1
        starts = torch.randint(0, high, (BATCH_SIZE, 1), generator=self.generator)
        batch = self.tokens[starts + self.window]
        _, loss = self.model(batch[:, :-1], batch[:, 1:])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)


class TrainerLoop:
    """The trainer's loop body (what `Training.train` repeats), one step per call, on the markov data."""

    def __init__(self, config: ModelConfig, steps: int, threads: int, work: Path):
        train_cfg = TrainConfig(
            tokens=steps * BATCH_SIZE * config.seq_len, batch_size=BATCH_SIZE, lr=LR, schedule="cosine",
            eval_every=0, checkpoint_every=0, eval_batches=1, device="cpu", dtype="fp32", threads=threads,
        )  # fmt: skip
        self.run = start_training(config, train_cfg, prepare("markov"), work)

    def step(self) -> None:
        run = self.run
        run.advance(lr_at(run.state.step, run.plan, run.train_cfg))


def steady_state(label: str, config: ModelConfig, steps: int, work: Path, profile: bool) -> float:
    """Median step time after warm-up, trainer against bare loop, alternating blocks of steps in one process."""
    threads = min(2, usable_cores())
    warmup, block = 10, 8
    trainer = TrainerLoop(config, warmup + steps + 1, threads, work / f"steady-{label}")
    torch.set_num_threads(threads)
    tokens = torch.from_numpy(prepare("markov").train_tokens().astype("int64"))
    bare = BareLoop(config, tokens, seed=0)
    times: dict[str, list[float]] = {"trainer": [], "bare": []}
    for loop in (trainer, bare):
        for _ in range(warmup):
            loop.step()
    for start in range(0, steps, block):
        for name, loop in (("trainer", trainer), ("bare", bare)):
            for _ in range(min(block, steps - start)):
                began = time.perf_counter()
                loop.step()
                times[name].append(time.perf_counter() - began)
    trainer_s, bare_s = statistics.median(times["trainer"]), statistics.median(times["bare"])
    ratio = bare_s / trainer_s
    print(
        f"{label} steady state ({threads} threads, median of {steps} steps each after {warmup} warm-up, "
        f"alternating blocks of {block}): trainer {trainer_s * 1e3:.2f} ms/step, bare loop {bare_s * 1e3:.2f} "
        f"ms/step, trainer speed / bare = {ratio:.3f} (target >= 0.98)",
        flush=True,
    )
    if profile:
        profile_steps(label, {"trainer": trainer, "bare": bare}, max(block, steps // 2))
    return ratio


def profile_steps(label: str, loops: dict, steps: int) -> None:
    """cProfile's top functions by own time for each loop's next `steps` steps."""
    for name, loop in loops.items():
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(steps):
            loop.step()
        profiler.disable()
        print(f"--- {label} {name}: {steps} steps, top functions by own time", flush=True)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(12)


def sweep_level(tokens: torch.Tensor, work: Path) -> None:
    """The demo grid's wall time against the sum of bare-loop times for its runs at their best thread counts."""
    sweep = load_sweep(REPO / "sweeps" / "demo.toml")
    for dataset in sweep.datasets:  # prepared before the clock starts, as `make demo` does
        prepare(dataset, sweep.data_options)
    out = work / "demo"
    planned = plan_sweep(sweep, out).runs
    best_step_s = {}
    for config in {p.run.model for p in planned}:
        best_step_s[config] = min(
            min(bare_loop_step_s(config, tokens, 12, threads, seed) for seed in range(2))
            for threads in range(1, usable_cores() + 1)
        )

    def steps(p) -> int:
        return p.run.train.tokens // (p.run.train.batch_size * p.run.model.seq_len)

    bare_trained = sum(best_step_s[p.run.model] * (steps(p) - p.branch_step) for p in planned)
    bare_separate = sum(best_step_s[p.run.model] * steps(p) for p in planned)
    began = time.perf_counter()
    outcome = run_sweep(sweep, out, LocalExecutor(workers=2), retries=0)
    wall = time.perf_counter() - began
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(
        f"demo grid ({len(planned)} runs, {outcome.counts}): sweep wall {wall:.1f} s with 2 workers; bare loops at "
        f"their best thread count, one after another: {bare_trained:.1f} s for the steps the sweep trains "
        f"(ratio {bare_trained / wall:.2f}x), {bare_separate:.1f} s for every run from scratch "
        f"({bare_separate / wall:.2f}x); results directory {size / 1e6:.2f} MB",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-sweep", action="store_true", help="skip the demo-grid comparison (minutes)")
    parser.add_argument("--steps-scale", type=float, default=1.0, help="multiply the timed steps per round")
    parser.add_argument("--only", choices=[*sorted(SHAPES), "sweep"], help="one shape only, or the sweep level only")
    parser.add_argument("--no-whole-run", action="store_true", help="skip the whole-run rounds (steady state only)")
    parser.add_argument("--profile", action="store_true", help="print cProfile's top functions per steady shape")
    args = parser.parse_args()
    print(
        f"CPU {torch.backends.cpu.get_cpu_capability()}, {usable_cores()} usable cores, load average "
        f"{os.getloadavg()[0]:.1f} at start, torch {torch.__version__}",
        flush=True,
    )
    data = prepare("markov")
    tokens = torch.from_numpy(data.train_tokens().astype("int64"))
    with tempfile.TemporaryDirectory() as work:
        for label, (config, steps) in SHAPES.items():
            if args.only and args.only != label:
                continue
            scaled = max(2, round(steps * args.steps_scale))
            if not args.no_whole_run:
                compare_shape(label, config, scaled, args.rounds, Path(work))
            steady_state(label, config, scaled * args.rounds, Path(work), args.profile)
        if not args.no_sweep and args.only in (None, "sweep"):
            sweep_level(tokens, Path(work))
    print(f"load average {os.getloadavg()[0]:.1f} at the end", flush=True)


if __name__ == "__main__":
    main()
