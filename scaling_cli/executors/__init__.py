"""Executors run units of a sweep somewhere: local worker processes or a Ray cluster.

An executor has `slots` (how many units run at once), `cores` (CPU cores its units share; the sweep gives
each unit the free cores, split among the units starting beside it; None leaves torch's default),
`max_unit_cores` (the most one unit can use: one machine's cores), `ship_data(refs) -> refs` (attach what
workers on other machines need to get each prepared data set), `submit(fn, task) -> concurrent.futures.Future`
and `shutdown(cancel)`.
The sweep only ever submits `scaling_cli.sweep.run_unit`, and every unit writes its results to the store
itself, so an executor needs no knowledge of what it runs.
"""

from __future__ import annotations

import os
from typing import Any, Protocol

from scaling_cli.errors import SpecError

EXECUTORS = ("local", "ray")


class Executor(Protocol):
    slots: int
    cores: int | None
    max_unit_cores: int | None
    device_types: frozenset[str]  # where its workers can train: a Ray cluster's, not the driver's

    def ship_data(self, refs: dict) -> dict: ...

    def submit(self, fn: Any, task: Any) -> Any: ...

    def shutdown(self, cancel: bool = False) -> None: ...


def make_executor(
    kind: str,
    workers: int | None = None,
    address: str | None = None,
    runs_per_gpu: int = 1,
    device: str = "auto",
    gpus_per_run: int = 1,
) -> Executor:
    """Build the executor a `scale sweep` command line asks for; option problems raise SpecError."""
    check_executor_options(kind, workers, address, runs_per_gpu, gpus_per_run)
    if kind == "ray":
        from scaling_cli.executors.ray_executor import RayExecutor

        return RayExecutor(address=address, workers=workers, runs_per_gpu=runs_per_gpu, device=device)
    from scaling_cli.executors.local import LocalExecutor

    return LocalExecutor(workers=workers, runs_per_gpu=runs_per_gpu, device=device, gpus_per_run=gpus_per_run)


def check_executor_options(
    kind: str, workers: int | None, address: str | None, runs_per_gpu: int, gpus_per_run: int = 1
) -> None:
    """SpecError for executor options a sweep would refuse (its dry run checks the same)."""
    if kind not in EXECUTORS:
        raise SpecError("--executor", "value", f"expected one of {', '.join(EXECUTORS)}, got {kind!r}")
    if workers is not None and workers < 1:
        raise SpecError("--workers", "value", f"must be at least 1, got {workers}")
    if runs_per_gpu < 1:
        raise SpecError("--runs-per-gpu", "value", f"must be at least 1, got {runs_per_gpu}")
    if address is not None and kind != "ray":
        raise SpecError("--address", "value", "only used with --executor ray")
    if gpus_per_run < 1:
        raise SpecError("--gpus-per-run", "value", f"must be at least 1, got {gpus_per_run}")
    if gpus_per_run > 1 and kind == "ray":
        raise SpecError("--gpus-per-run", "value", "data-parallel runs train on the local executor only (no Ray gangs)")


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask: taskset, cgroups cpusets), not the machine's."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows have no affinity call
        return os.cpu_count() or 1


def uses_cuda(device: str) -> bool:
    if device not in ("auto", "cuda"):
        return False
    import torch

    return torch.cuda.is_available()
