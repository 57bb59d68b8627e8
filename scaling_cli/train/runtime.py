"""Where and how a run computes: the device, autocast dtype, torch threads and compilation, and its clock."""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from scaling_cli.config.train import auto_device
from scaling_cli.errors import SpecError
from scaling_cli.train.config import TrainConfig


@dataclass
class Runtime:
    device: torch.device
    autocast: Callable[[], contextlib.AbstractContextManager]
    compile: bool

    def sync(self) -> None:
        """Wait for queued device work, so clocks and host reads see finished steps."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def resolve_device(name: str) -> torch.device:
    """`auto` picks CUDA, then Apple MPS, then CPU; an explicit device must be present."""
    available = available_device_types()
    if name == "auto":
        return torch.device(auto_device(available))
    if name not in available:
        raise SpecError("device", "train.device", f"{name} is not available on this machine")
    return torch.device(name)


def available_device_types() -> frozenset[str]:
    """The device types torch can train on in this process."""
    found = {"cpu"}
    if torch.cuda.is_available():
        found.add("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        found.add("mps")
    return frozenset(found)


def resolve_dtype(dtype: str, device_type: str) -> str:
    """`auto` is bf16 autocast on CUDA and fp32 everywhere else."""
    if dtype != "auto":
        return dtype
    return "bf16" if device_type == "cuda" else "fp32"


@functools.cache
def cpu_bf16_slowdown(width: int = 128, tokens: int = 1024, repeats: int = 5) -> float:
    """How many times slower a small transformer-like block (linear, GELU, LayerNorm, forward and backward)
    trains under bf16 autocast than in fp32 on this CPU, best of `repeats` each.

    CPUs without native bf16 emulate it: one AVX2 machine trained 18x slower, another with AVX512-BF16 1.4x
    faster, so this is measured rather than read from a capability flag. Measured once per process: it is a
    property of the hardware, and every plan of one process must reach the same verdict, whatever the load.
    """
    block = torch.nn.Sequential(
        torch.nn.Linear(width, 4 * width), torch.nn.GELU(), torch.nn.Linear(4 * width, width), torch.nn.LayerNorm(width)
    )
    inputs = torch.randn(tokens, width)

    def best(autocast: bool) -> float:
        times = []
        for _ in range(repeats + 1):
            began = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                loss = block(inputs).float().square().mean()
            loss.backward()
            times.append(time.perf_counter() - began)
        return min(times[1:])

    return best(True) / best(False)


def setup_runtime(cfg: TrainConfig) -> Runtime:
    """Device, threads, TF32 on CUDA, bf16 autocast (`auto`: on CUDA only) and compile (`None`: on CUDA only)."""
    device = resolve_device(cfg.device)
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    dtype = resolve_dtype(cfg.dtype, device.type)
    if dtype == "bf16":

        def autocast() -> contextlib.AbstractContextManager:
            return torch.autocast(device.type, dtype=torch.bfloat16)
    else:
        autocast = contextlib.nullcontext
    use_compile = cfg.compile if cfg.compile is not None else device.type == "cuda"
    return Runtime(device, autocast, use_compile)


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
