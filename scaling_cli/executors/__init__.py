"""Executors run units of a sweep somewhere: local worker processes, a Ray cluster (a data-parallel run's ranks
as one gang on a placement group) or Slurm jobs.

An executor has `slots` (how many units run at once), `cores` (CPU cores its units share; the sweep gives
each unit the free cores, split among the units starting beside it; None leaves torch's default),
`max_unit_cores` (the most one unit can use: one machine's cores), `ship_data(refs) -> refs` (attach what
workers on other machines need to get each prepared data set), `submit(fn, task) -> concurrent.futures.Future`
and `shutdown(cancel)`.
The sweep only ever submits `scaling_cli.sweep.run_unit`, and every unit writes its results to the store
itself, so an executor needs no knowledge of what it runs.
"""

from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING, Any, Protocol

from scaling_cli.errors import SpecError

if TYPE_CHECKING:
    from scaling_cli.spec import SlurmOptions

EXECUTORS = ("local", "ray", "slurm")


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
    slurm: SlurmOptions | None = None,
) -> Executor:
    """Build the executor a `scale sweep` command line asks for; option problems raise SpecError.
    `slurm`: the spec's [slurm] table with the command line's options applied (`slurm_options_for`)."""
    check_executor_options(kind, workers, address, runs_per_gpu, gpus_per_run)
    if kind == "slurm":
        options = slurm_options_for(slurm, None)
        check_slurm_cluster(options)
        from scaling_cli.executors.slurm import SlurmExecutor

        return SlurmExecutor(options, workers=workers)
    if kind == "ray":
        from scaling_cli.executors.ray_executor import RayExecutor

        return RayExecutor(address=address, workers=workers, runs_per_gpu=runs_per_gpu, device=device)
    from scaling_cli.executors.local import LocalExecutor

    return LocalExecutor(workers=workers, runs_per_gpu=runs_per_gpu, device=device, gpus_per_run=gpus_per_run)


def check_executor_options(
    kind: str,
    workers: int | None,
    address: str | None,
    runs_per_gpu: int,
    gpus_per_run: int = 1,
    slurm_given: dict | None = None,
) -> None:
    """SpecError for executor options a sweep would refuse (its dry run checks the same). `slurm_given`: the
    Slurm options given on the command line, by field name (None values are not given)."""
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
    for key, value in (slurm_given or {}).items():
        if value is None:
            continue
        from scaling_cli.spec import SlurmOptions

        checks = {item.name: item.metadata["check"] for item in dataclasses.fields(SlurmOptions)}
        option = "--" + key.replace("_", "-")
        if kind != "slurm":
            raise SpecError(option, "value", "only used with --executor slurm")
        try:
            checks[key](value)
        except (TypeError, ValueError) as exc:
            raise SpecError(option, "value", str(exc)) from None


def slurm_options_for(table: SlurmOptions | None, given: dict | None) -> SlurmOptions:
    """The spec's [slurm] table with the command line's options (those not None) put over it."""
    from scaling_cli.spec import SlurmOptions

    chosen = {key: value for key, value in (given or {}).items() if value is not None}
    return dataclasses.replace(table or SlurmOptions(), **chosen)


def check_slurm_cluster(options: SlurmOptions) -> None:
    """SpecError when Slurm cannot run the sweep's jobs: submitit or sbatch missing, or no such partition."""
    import shutil

    try:
        import submitit  # noqa: F401
    except ImportError:
        raise SpecError("--executor", "slurm", "submitit is not installed: pip install 'scaling-cli[slurm]'") from None
    if shutil.which("sbatch") is None or shutil.which("squeue") is None:
        raise SpecError("--executor", "slurm", "sbatch and squeue are not on PATH (is this a Slurm login node?)")
    from scaling_cli.executors.slurm import partitions

    known = partitions()
    if options.partition and options.partition not in known:
        raise SpecError("--partition", "value", f"no partition {options.partition!r}; Slurm has {', '.join(known)}")


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
