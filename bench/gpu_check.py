"""GPU check: how well our trainer uses a CUDA GPU, measured against the GPU's own bf16 matmul rate.

On a CUDA device this script, in one run:
1. measures the bf16 matmul ceiling (8192^3 products timed with CUDA events) in TFLOP/s;
2. trains a GPT-2-small-shaped model (12 layers, d_model 768, 12 heads, vocabulary 50257, context 1024,
   124M parameters) with our trainer (`train_run`: bf16 autocast, TF32, fused AdamW, torch.compile) for a
   few hundred steps, after a short warm-up run that pays for compilation, and reports tokens/s and
   model-FLOP utilisation (Appendix F FLOPs per token x tokens/s / the measured matmul rate; the 6N count
   is shown as well);
3. does the same for a ~1M-parameter model (4 layers, d_model 128, byte vocabulary, context 256);
4. trains a small sweep (three shapes on the markov data set) through `scale sweep`'s machinery with
   `runs_per_gpu = 2` (two runs packed on each GPU), and, when the machine has 2 or more GPUs, one run with
   `data_parallel = 2` (DDP over two GPUs); prints each run's MFU as runs.parquet records it (Appendix F
   FLOP/s over the data-sheet peak of `scaling_cli.train.mfu`, per device).
It prints a markdown section for docs/benchmarks.md and, with --out, writes it to that file.

Tokens are uniform random ids: the check is about throughput, not loss, so no corpus is needed.
Without CUDA it exits with status 1 and says so; --cpu-smoke runs the same code at toy sizes on the CPU
to check the script itself (its numbers mean nothing).

Needs this repository importable (run from the repo root). The scaling_cli.data package imports lz4,
which the device image may lack: carry a wheel for its Python (e.g. `pip download lz4 --only-binary=:all:
--python-version 3.12 --platform manylinux_2_17_x86_64 -d wheels/`) and `pip install --no-index wheels/*`
there first.

Usage: python bench/gpu_check.py [--steps 300] [--batch-size 32] [--out FILE] [--cpu-smoke]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scaling_cli.executors.local import LocalExecutor
from scaling_cli.model import ModelConfig, count_params, flops_per_token
from scaling_cli.plan import load_sweep
from scaling_cli.store import Store
from scaling_cli.sweep import run_sweep
from scaling_cli.train import TrainConfig, train_run

GPT2_SMALL = ModelConfig(d_model=768, n_layer=12, n_head=12, seq_len=1024, vocab_size=50257)
SMALL = ModelConfig(d_model=128, n_layer=4, n_head=4, seq_len=256, vocab_size=256)


@dataclass
class RandomTokens:
    """The part of PreparedData that train_run reads, filled with uniform random token ids."""

    vocab_size: int
    n_train: int
    n_val: int
    name: str = "random"
    bytes_per_token: float = 1.0  # nominal: bits per byte mean nothing on random ids

    def __post_init__(self) -> None:
        rng = np.random.default_rng(0)
        dtype = np.uint16 if self.vocab_size <= 2**16 else np.int32
        self._train = rng.integers(0, self.vocab_size, self.n_train).astype(dtype)
        self._val = rng.integers(0, self.vocab_size, self.n_val).astype(dtype)

    def train_tokens(self) -> np.ndarray:
        return self._train

    def val_tokens(self) -> np.ndarray:
        return self._val


def matmul_tflops(device: str, dtype: torch.dtype, size: int) -> float:
    """Mean rate of ten size^3 products after three warm-ups, in TFLOP/s."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    if device == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(10):
            a @ b
        end.record()
        torch.cuda.synchronize()
        seconds = start.elapsed_time(end) / 1000
    else:
        began = time.perf_counter()
        for _ in range(10):
            a @ b
        seconds = time.perf_counter() - began
    return 10 * 2 * size**3 / seconds / 1e12


def measure_training(model_cfg: ModelConfig, batch_size: int, steps: int, device: str, compile_model: bool) -> dict:
    """Warm-up run (compilation), then a timed run of `steps`; the trainer's own step-time throughput."""
    tokens_per_step = batch_size * model_cfg.seq_len
    data = RandomTokens(model_cfg.vocab_size, n_train=max(4_000_000, 4 * tokens_per_step), n_val=64 * model_cfg.seq_len)

    def run(n_steps: int):
        config = TrainConfig(
            tokens=n_steps * tokens_per_step,
            batch_size=batch_size,
            lr=6e-4,
            warmup_tokens=10 * tokens_per_step,
            eval_every=0,
            eval_batches=1,
            checkpoint_every=0,
            device=device,
            dtype="bf16",
            compile=compile_model,
        )
        with tempfile.TemporaryDirectory() as run_dir:
            began = time.perf_counter()
            result = train_run(model_cfg, config, data, Path(run_dir))
            return result, time.perf_counter() - began

    _, warmup_s = run(max(2, steps // 10))
    result, call_s = run(steps)
    return {
        "params": count_params(model_cfg)[0],
        "tokens_per_s": result.tokens_per_s,
        "whole_call_tokens_per_s": result.tokens / call_s,
        "warmup_s": warmup_s,
        "final_train_loss": result.train_loss,
        "status": result.status,
    }


def report(peak: float, rows: list[tuple[str, ModelConfig, int, int, dict]], device_name: str) -> str:
    lines = [
        f"## GPU check ({device_name}, torch {torch.__version__})",
        "",
        f"bf16 matmul ceiling (8192^3, mean of 10): {peak:.1f} TFLOP/s",
        "",
        "| model | params | batch x seq | steps | tokens/s (steps) | tokens/s (whole call) "
        + "| MFU Appendix F | MFU 6N | warm-up run s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for label, cfg, batch, steps, m in rows:
        per_token = flops_per_token(cfg)
        mfu = per_token["chinchilla"] * m["tokens_per_s"] / 1e12 / peak
        mfu_6n = per_token["kaplan"] * m["tokens_per_s"] / 1e12 / peak
        lines.append(
            f"| {label} | {m['params']:,} | {batch} x {cfg.seq_len} | {steps} | {m['tokens_per_s']:,.0f} | "
            f"{m['whole_call_tokens_per_s']:,.0f} | {mfu:.1%} | {mfu_6n:.1%} | {m['warmup_s']:.0f} |"
        )
    lines += ["", "Trainer defaults on CUDA: bf16 autocast, TF32, fused AdamW, torch.compile; random token ids.", ""]
    return "\n".join(lines)


SWEEP_SPEC = """name = "gpu-check-{label}"
dataset = "markov"
device = "{device}"
seeds = [0]
[model]
shapes = [{shapes}]
seq_len = {seq_len}
[train]
tokens = [{tokens}]
lr = 1e-3
batch_size = {batch_size}
data_parallel = {ranks}
checkpoint_every = 1000000
dtype = "{dtype}"
[eval]
every = 1000000
batches = 1
"""
SWEEP_SHAPES = [(128, 4, 4), (256, 4, 4), (512, 8, 8)]  # (d_model, n_layer, n_head)
SMOKE_SHAPES = [(32, 2, 2), (64, 2, 2)]


def shapes_toml(shapes: list[tuple[int, int, int]]) -> str:
    return ", ".join(f"{{d_model = {d}, n_layer = {n}, n_head = {h}}}" for d, n, h in shapes)


def sweep_check(device: str, smoke: bool, work: Path) -> list[str]:
    """A small sweep with two runs packed per GPU, and a two-rank run where two GPUs exist: MFU per run."""
    gpus = torch.cuda.device_count() if device == "cuda" else 0
    seq_len, batch, steps = (64, 4, 4) if smoke else (256, 64, 200)
    shapes = SMOKE_SHAPES if smoke else SWEEP_SHAPES
    cases = [("packed", shapes_toml(shapes), 1, LocalExecutor(runs_per_gpu=2, device=device))]
    if gpus >= 2 or smoke:  # the smoke test runs the two ranks with gloo on the CPU
        cases.append(("2 ranks", shapes_toml(shapes[:1]), 2, LocalExecutor(workers=1, device=device, gpus_per_run=2)))
    else:
        print(f"sweep check: {gpus} GPU(s), no 2-rank run", flush=True)
    lines = [
        "| sweep | shape | params | ranks | tokens/s | TFLOP/s | peak TFLOP/s | MFU |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, case_shapes, ranks, pool in cases:
        spec = work / f"{label.replace(' ', '-')}.toml"
        spec.write_text(SWEEP_SPEC.format(
            label=label.replace(" ", "-"), device=device, shapes=case_shapes, seq_len=seq_len,
            tokens=steps * batch * seq_len, batch_size=batch, ranks=ranks, dtype="fp32" if smoke else "bf16",
        ))  # fmt: skip
        out = work / spec.stem
        try:
            outcome = run_sweep(load_sweep(spec), out, pool, retries=0)
        finally:
            pool.shutdown()
        print(f"sweep check {label}: {outcome.counts}", flush=True)
        for row in Store(out).rows():
            lines.append(
                f"| {label} | d{row['d_model']}/L{row['n_layer']} | {row['params']:,} | {row['data_parallel']} | "
                f"{row['tokens_per_s']:,.0f} | {row['flops_per_s'] / 1e12:.2f} | {row['peak_flops'] / 1e12:.1f} | "
                f"{row['mfu']:.1%} |"
            )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=32, help="sequences per step for the 124M model")
    parser.add_argument("--small-batch-size", type=int, default=128, help="sequences per step for the 1M model")
    parser.add_argument("--out", type=Path, help="also write the markdown section here")
    parser.add_argument("--cpu-smoke", action="store_true", help="toy sizes on the CPU, to test this script")
    args = parser.parse_args()

    if args.cpu_smoke:
        device, device_name, compile_model = "cpu", "CPU smoke test, numbers meaningless", False
        big = ModelConfig(d_model=64, n_layer=2, n_head=2, seq_len=64, vocab_size=512)
        small, steps, batch, small_batch, size = SMALL, 4, 2, 2, 512
    elif not torch.cuda.is_available():
        print(
            "gpu_check: no CUDA device here; run it on a machine with an NVIDIA GPU "
            "(or pass --cpu-smoke to test the script)",
            file=sys.stderr,
        )
        sys.exit(1)
    else:
        device, device_name, compile_model = "cuda", torch.cuda.get_device_name(), True
        big, small, steps, batch, small_batch, size = (
            GPT2_SMALL,
            SMALL,
            args.steps,
            args.batch_size,
            args.small_batch_size,
            8192,
        )

    peak = matmul_tflops(device, torch.bfloat16, size)
    print(f"bf16 matmul: {peak:.1f} TFLOP/s", flush=True)
    rows = []
    for label, cfg, batch_size in (("GPT-2 small shape", big, batch), ("~1M params", small, small_batch)):
        measured = measure_training(cfg, batch_size, steps, device, compile_model)
        print(f"{label}: {measured}", flush=True)
        rows.append((label, cfg, batch_size, steps, measured))
    text = report(peak, rows, device_name)
    with tempfile.TemporaryDirectory() as work:
        text += "\n".join(
            [
                "",
                "### A small sweep (packed 2 per GPU) and a data-parallel run",
                "",
                *sweep_check(device, args.cpu_smoke, Path(work)),
                "",
            ]
        )
    print(text)
    if args.out is not None:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
