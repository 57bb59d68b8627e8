"""Benchmark: our trainer's step against a bare PyTorch loop on the same model, in one process.

Model: 4 layers, d_model 128, 4 heads, seq_len 256, batch 16, byte vocabulary, fp32, 2 threads, on the
markov data set. Both contenders build a fresh model and optimizer per round and time the same number
of steps; rounds alternate so a noisy neighbour on the machine hits both alike, and the ratio is taken
between each contender's fastest round (interference only ever slows a round down; medians are printed
too). The trainer's rate is
its own training throughput (RunResult.tokens_per_s: step time only, no setup or evaluation); its
whole-call rate (setup and one final evaluation included) is printed too. The model-FLOP rate (Appendix F
FLOPs per token x tokens/s) is set against a large fp32 matmul measured in every round of the same run.

Usage: python bench/bench_train.py [--steps 5] [--rounds 16] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from scaling_cli.data import DataOptions, prepare
from scaling_cli.model import GPT, ModelConfig, flops_per_token
from scaling_cli.train import TrainConfig, train_run

MODEL = ModelConfig(d_model=128, n_layer=4, n_head=4, seq_len=256, vocab_size=256)
BATCH_SIZE = 16
LR = 1e-3


def matmul_gflops(size: int = 2048, repeats: int = 4) -> float:
    """Best fp32 rate of a size^3 matmul over `repeats` tries, in GFLOP/s."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    best = 0.0
    for _ in range(repeats):
        began = time.perf_counter()
        a @ b
        best = max(best, 2 * size**3 / (time.perf_counter() - began) / 1e9)
    return best


def plain_loop_tokens_per_s(tokens: torch.Tensor, steps: int, seed: int) -> float:
    """The bare loop anyone would write: random windows, forward, backward, AdamW step."""
    torch.manual_seed(seed)
    model = GPT(MODEL)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, betas=(0.9, 0.95), weight_decay=0.1)
    generator = torch.Generator().manual_seed(seed)
    window = torch.arange(MODEL.seq_len + 1)
    began = time.perf_counter()
    for _ in range(steps):
        starts = torch.randint(0, len(tokens) - MODEL.seq_len - 1, (BATCH_SIZE, 1), generator=generator)
        batch = tokens[starts + window]
        _, loss = model(batch[:, :-1], batch[:, 1:])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return steps * BATCH_SIZE * MODEL.seq_len / (time.perf_counter() - began)


def trainer_tokens_per_s(data, steps: int, seed: int, threads: int) -> tuple[float, float]:
    """(training throughput the trainer reports, throughput of the whole train_run call)."""
    config = TrainConfig(
        tokens=steps * BATCH_SIZE * MODEL.seq_len,
        batch_size=BATCH_SIZE,
        lr=LR,
        schedule="cosine",
        eval_every=0,
        eval_batches=1,
        checkpoint_every=0,
        device="cpu",
        dtype="fp32",
        threads=threads,
        seed=seed,
    )
    with tempfile.TemporaryDirectory() as run_dir:
        began = time.perf_counter()
        result = train_run(MODEL, config, data, Path(run_dir))
        whole = result.tokens / (time.perf_counter() - began)
    return result.tokens_per_s, whole


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as cache:
        data = prepare("markov", DataOptions(), cache_dir=Path(cache))
        tokens = torch.from_numpy(data.train_tokens().astype("int64"))
        plain_loop_tokens_per_s(tokens, 3, seed=0)  # warm both paths before timing
        trainer_tokens_per_s(data, 3, seed=0, threads=args.threads)
        ours, whole, plain, matmul = [], [], [], []
        for round_index in range(args.rounds):
            rate, whole_rate = trainer_tokens_per_s(data, args.steps, round_index, args.threads)
            ours.append(rate)
            whole.append(whole_rate)
            plain.append(plain_loop_tokens_per_s(tokens, args.steps, round_index))
            matmul.append(matmul_gflops())
            print(
                f"round {round_index + 1}: trainer {rate:,.0f} tok/s  plain loop {plain[-1]:,.0f} tok/s  "
                f"ratio {rate / plain[-1]:.3f}  matmul {matmul[-1]:.1f} GFLOP/s",
                flush=True,
            )
    peak = max(matmul)

    per_token = flops_per_token(MODEL)
    ours_rate, whole_rate, plain_rate = max(ours), max(whole), max(plain)
    model_gflops = per_token["chinchilla"] * ours_rate / 1e9
    print()
    print(
        f"model: {MODEL.n_layer} layers, d_model {MODEL.d_model}, {MODEL.n_head} heads, seq {MODEL.seq_len}, "
        f"batch {BATCH_SIZE}, vocab {MODEL.vocab_size}, fp32, {torch.get_num_threads()} threads; "
        f"{args.rounds} rounds x {args.steps} steps, fastest round (median)"
    )
    print(f"trainer (step time)        {ours_rate:>10,.0f} tokens/s  ({statistics.median(ours):,.0f})")
    print(
        f"trainer (whole call)       {whole_rate:>10,.0f} tokens/s  ({statistics.median(whole):,.0f}; "
        "setup and final evaluation included)"
    )
    print(f"plain PyTorch loop         {plain_rate:>10,.0f} tokens/s  ({statistics.median(plain):,.0f})")
    print(
        f"ratio trainer / plain      {ours_rate / plain_rate:>10.3f}  "
        f"({statistics.median(ours) / statistics.median(plain):.3f}; target >= 1.0)"
    )
    print(f"fp32 matmul 2048^3         {peak:>10.1f} GFLOP/s  ({statistics.median(matmul):.1f})")
    print(
        f"model FLOPs (Appendix F)   {model_gflops:>10.2f} GFLOP/s = {per_token['chinchilla']:,} FLOPs/token x tokens/s"
    )
    print(
        f"utilisation                {model_gflops / peak:>10.1%}  (6N count: "
        f"{per_token['kaplan'] * ours_rate / 1e9 / peak:.1%})"
    )


if __name__ == "__main__":
    main()
