"""Calibration: at which training-step size does a second CPU thread pay, on the shapes sweeps train?

The shapes are read from the shipped CPU sweeps (every `sweeps/*.toml` whose device is not CUDA: the demo,
known-answer, markov-tiny, ...), so the table follows their grids. For each (shape, batch size) a trainer-like
step (forward, backward, gradient clipping, fused AdamW) is timed with 1..N threads, the thread counts
alternating, best of `--rounds`; the table gives the step's Chinchilla FLOPs and each thread count's speed-up
over one thread. `threads_for` gives a run a second thread from 2 x FLOPS_PER_THREAD FLOPs a step, so the
suggested FLOPS_PER_THREAD is half the step size from which "2 threads speed it up by `--min-gain`" holds with
the fewest exceptions among the measured shapes. Only a quiet machine gives a usable answer: the load average
is printed before and after.

Usage: python bench/bench_threads.py [--steps 20] [--rounds 3] [--max-threads 2] [--min-gain 1.05]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

from scaling_cli.model import GPT, ModelConfig
from scaling_cli.plan import load_sweep

REPO = Path(__file__).resolve().parents[1]


def sweep_shapes() -> dict[tuple[ModelConfig, int], tuple[float, list[str]]]:
    """(model, batch size) -> (training FLOPs of one step, the sweeps that train it)."""
    shapes: dict[tuple[ModelConfig, int], tuple[float, list[str]]] = {}
    for path in sorted((REPO / "sweeps").glob("*.toml")):
        sweep = load_sweep(path)
        for run in sweep.runs():
            if run.train.device == "cuda":
                continue
            key = (run.model, run.train.batch_size)
            step_flops = run.flops_per_token * run.train.batch_size * run.model.seq_len
            names = shapes.setdefault(key, (step_flops, []))[1]
            if path.stem not in names:
                names.append(path.stem)
    return shapes


def step_seconds(config: ModelConfig, batch_size: int, threads: int, steps: int) -> float:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = GPT(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
    params = list(model.parameters())
    batch = torch.randint(0, config.vocab_size, (batch_size, config.seq_len + 1))
    for _ in range(3):
        _train_step(model, optimizer, params, batch)
    began = time.perf_counter()
    for _ in range(steps):
        _train_step(model, optimizer, params, batch)
    return (time.perf_counter() - began) / steps


def _train_step(model, optimizer, params, batch) -> None:
    _, loss = model(batch[:, :-1], batch[:, 1:])
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def suggested_flops_per_thread(gains: list[tuple[float, float]], min_gain: float) -> tuple[float, int]:
    """From (step FLOPs, 2-thread speed-up) pairs: the step size from which a second thread is given that
    disagrees with the fewest measurements (the larger one on a tie), halved; and how many it disagrees with.
    Noise makes single shapes disagree, so the fewest disagreements, not the first paying shape, decides."""
    sizes = sorted({flops for flops, _ in gains})
    candidates = [sizes[0] / 2] + [(a + b) / 2 for a, b in zip(sizes, sizes[1:])] + [sizes[-1] * 2]

    def disagreements(boundary: float) -> int:
        return sum((flops >= boundary) != (gain >= min_gain) for flops, gain in gains)

    best = min(candidates, key=lambda boundary: (disagreements(boundary), -boundary))
    return best / 2, disagreements(best)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--min-gain", type=float, default=1.05, help="speed-up that counts as paying")
    args = parser.parse_args()
    counts = list(range(1, args.max_threads + 1))
    print(
        f"CPU {torch.backends.cpu.get_cpu_capability()}, {len(os.sched_getaffinity(0))} usable cores, "
        f"load average {os.getloadavg()[0]:.1f} at start, torch {torch.__version__}"
    )
    print(f"{'shape':<28} {'step GFLOP':>10} {'1 thread tok/s':>15}  speed-up with {', '.join(map(str, counts[1:]))}")
    gains = []
    for (config, batch_size), (step_flops, sweeps) in sorted(sweep_shapes().items(), key=lambda kv: kv[1][0]):
        best = {threads: float("inf") for threads in counts}
        for _ in range(args.rounds):
            for threads in counts:
                best[threads] = min(best[threads], step_seconds(config, batch_size, threads, args.steps))
        if len(counts) > 1:
            gains.append((step_flops, best[1] / best[2]))
        rate = batch_size * config.seq_len / best[1]
        speedups = ", ".join(f"{best[1] / best[t]:.2f}x" for t in counts[1:])
        shape = f"d{config.d_model} L{config.n_layer} H{config.n_head} T{config.seq_len} B{batch_size}"
        shape += " muP" if config.parametrization == "mup" else ""
        print(f"{shape:<28} {step_flops / 1e9:>10.3f} {rate:>15,.0f}  {speedups}  ({', '.join(sweeps)})", flush=True)
    if gains:
        suggested, misfits = suggested_flops_per_thread(gains, args.min_gain)
        print(
            f"suggested FLOPS_PER_THREAD: {suggested / 1e9:.2f} GFLOP (2 threads from {2 * suggested / 1e9:.2f} GFLOP "
            f"a step; {misfits} of {len(gains)} shapes disagree at --min-gain {args.min_gain})",
            flush=True,
        )
    print(f"load average {os.getloadavg()[0]:.1f} at the end", flush=True)


if __name__ == "__main__":
    main()
