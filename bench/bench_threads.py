"""Calibration: at which training-step size does a second CPU thread pay, on the shapes sweeps train?

For each shape of the shipped CPU sweeps (sweeps/markov-tiny.toml, sweeps/demo.toml) a bare PyTorch loop
(forward, backward, AdamW) is timed with 1 and with 2..N threads, alternating, best of `--rounds`; the
table gives the step's Chinchilla FLOPs and the speed-up of each thread count over one thread. The sweep's
`FLOPS_PER_THREAD` is the step size above which the measured speed-up of 2 threads exceeds 1.

Usage: python bench/bench_threads.py [--steps 20] [--rounds 3] [--max-threads 2]
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from scaling_cli.model import GPT, ModelConfig, flops_per_token

SHAPES = [  # (d_model, n_layer, n_head, seq_len, batch_size) as the shipped sweeps train them
    (16, 2, 1, 32, 16),
    (32, 2, 2, 32, 16),
    (48, 2, 3, 32, 16),
    (32, 2, 1, 128, 16),
    (64, 3, 2, 128, 16),
    (96, 3, 3, 128, 16),
    (128, 4, 4, 128, 16),
]


def step_seconds(config: ModelConfig, batch_size: int, threads: int, steps: int) -> float:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = GPT(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
    batch = torch.randint(0, config.vocab_size, (batch_size, config.seq_len + 1))
    for _ in range(3):
        _train_step(model, optimizer, batch)
    began = time.perf_counter()
    for _ in range(steps):
        _train_step(model, optimizer, batch)
    return (time.perf_counter() - began) / steps


def _train_step(model, optimizer, batch) -> None:
    _, loss = model(batch[:, :-1], batch[:, 1:])
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-threads", type=int, default=len(os.sched_getaffinity(0)))
    args = parser.parse_args()
    counts = list(range(1, args.max_threads + 1))
    print(f"{'shape':<24} {'step GFLOP':>10} {'1 thread tok/s':>15}  speed-up with " + ", ".join(map(str, counts[1:])))
    for d_model, n_layer, n_head, seq_len, batch_size in SHAPES:
        config = ModelConfig(d_model=d_model, n_layer=n_layer, n_head=n_head, seq_len=seq_len)
        best = {threads: float("inf") for threads in counts}
        for _ in range(args.rounds):
            for threads in counts:
                best[threads] = min(best[threads], step_seconds(config, batch_size, threads, args.steps))
        step_flops = flops_per_token(config)["chinchilla"] * batch_size * seq_len
        rate = batch_size * seq_len / best[1]
        gains = ", ".join(f"{best[1] / best[t]:.2f}x" for t in counts[1:])
        shape = f"d{d_model} L{n_layer} T{seq_len} B{batch_size}"
        print(f"{shape:<24} {step_flops / 1e9:>10.3f} {rate:>15,.0f}  {gains}", flush=True)


if __name__ == "__main__":
    main()
