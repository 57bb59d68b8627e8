"""Executors run units of a sweep somewhere: local worker processes or a Ray cluster.

An executor has `slots` (how many units run at once), `threads` (CPU threads each unit's training uses,
or None to leave torch's default), `submit(fn, task) -> concurrent.futures.Future` and `shutdown(cancel)`.
The sweep only ever submits `scaling_cli.sweep.run_unit`, and every unit writes its results to the store
itself, so an executor needs no knowledge of what it runs.
"""

from __future__ import annotations

from typing import Any, Protocol

from scaling_cli.errors import SpecError

EXECUTORS = ("local", "ray")


class Executor(Protocol):
    slots: int
    threads: int | None

    def submit(self, fn: Any, task: Any) -> Any: ...

    def shutdown(self, cancel: bool = False) -> None: ...


def make_executor(
    kind: str, workers: int | None = None, address: str | None = None, runs_per_gpu: int = 1, device: str = "auto"
) -> Executor:
    """Build the executor a `scale sweep` command line asks for; option problems raise SpecError."""
    if kind not in EXECUTORS:
        raise SpecError("--executor", "value", f"expected one of {', '.join(EXECUTORS)}, got {kind!r}")
    if workers is not None and workers < 1:
        raise SpecError("--workers", "value", f"must be at least 1, got {workers}")
    if runs_per_gpu < 1:
        raise SpecError("--runs-per-gpu", "value", f"must be at least 1, got {runs_per_gpu}")
    if address is not None and kind != "ray":
        raise SpecError("--address", "value", "only used with --executor ray")
    if kind == "ray":
        from scaling_cli.executors.ray_executor import RayExecutor

        return RayExecutor(address=address, workers=workers, runs_per_gpu=runs_per_gpu, device=device)
    from scaling_cli.executors.local import LocalExecutor

    return LocalExecutor(workers=workers, runs_per_gpu=runs_per_gpu, device=device)


def uses_cuda(device: str) -> bool:
    if device not in ("auto", "cuda"):
        return False
    import torch

    return torch.cuda.is_available()
