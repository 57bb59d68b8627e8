"""Data-parallel runs: launch a run's ranks on this machine, join their process group, wrap the model
(DDP or FSDP2), and give each rank its rows of the global batch.

Every rank draws the whole global batch of a step from (seed, step) and keeps its own rows, so the data a
run sees, and its run id, do not depend on how many ranks train it. Rank 0 writes the curve and the
checkpoints; every rank reads the same checkpoint to resume.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from scaling_cli.train.config import TrainConfig
from scaling_cli.train.stop import preemption_signal


@dataclass(frozen=True)
class Ranks:
    """This process's place in its run: rank `rank` of `world`."""

    rank: int = 0
    world: int = 1

    @property
    def writer(self) -> bool:
        """Whether this rank writes the run's files (curve, checkpoints, trunk states)."""
        return self.rank == 0


SINGLE = Ranks()


def rank_rows(batch: torch.Tensor, ranks: Ranks) -> torch.Tensor:
    """This rank's contiguous share of the global batch's rows."""
    share = batch.shape[0] // ranks.world
    return batch[ranks.rank * share : (ranks.rank + 1) * share]


def wrap_model(model: torch.nn.Module, cfg: TrainConfig, ranks: Ranks, device: torch.device) -> torch.nn.Module:
    """The module the steps run forward through: the model itself on one rank, else DDP or FSDP2 over it."""
    if ranks.world == 1:
        return model
    if cfg.sharding == "fsdp":
        from torch.distributed.fsdp import fully_shard

        for block in getattr(model, "blocks", []):
            fully_shard(block)
        return fully_shard(model)
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


@contextlib.contextmanager
def gradient_sync(module: torch.nn.Module, enabled: bool):
    """Within the block, backward passes reduce gradients across ranks only when `enabled` (the last pass of
    an accumulated step); a model on one rank has nothing to reduce."""
    if enabled or not (hasattr(module, "no_sync") or hasattr(module, "set_requires_gradient_sync")):
        yield
        return
    if hasattr(module, "no_sync"):  # DDP
        with module.no_sync():
            yield
        return
    module.set_requires_gradient_sync(False)  # FSDP2
    try:
        yield
    finally:
        module.set_requires_gradient_sync(True)


def full_states(model: torch.nn.Module, optimizer: torch.optim.Optimizer, cfg: TrainConfig) -> tuple[dict, dict]:
    """The model's and optimizer's whole state dicts (under FSDP2 a collective that gathers them on rank 0)."""
    if cfg.sharding != "fsdp":
        return model.state_dict(), optimizer.state_dict()
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

    return get_state_dict(model, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def state_loader(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, cfg: TrainConfig, ranks: Ranks
) -> Callable[[dict, dict], None] | None:
    """How saved whole states go into a sharded model and its optimizer (None: their own load_state_dict)."""
    if ranks.world == 1 or cfg.sharding != "fsdp":
        return None
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

    def load(model_state: dict, optimizer_state: dict) -> None:
        whole = StateDictOptions(full_state_dict=True)
        set_state_dict(model, optimizer, model_state_dict=model_state, optim_state_dict=optimizer_state, options=whole)

    return load


def all_finite(finite: torch.Tensor, ranks: Ranks, stop: bool = False) -> tuple[torch.Tensor, bool]:
    """Per-step finiteness agreed by every rank (a step is finite only where it was finite on all of them),
    on the host, and whether any rank asked to stop: the stop bit rides in the same reduction, so every rank
    learns it at the same step without a collective of its own."""
    if ranks.world == 1:
        return finite.cpu(), stop
    go_on = torch.tensor([0 if stop else 1], dtype=torch.int32, device=finite.device)
    flags = torch.cat([finite.to(torch.int32), go_on])
    dist.all_reduce(flags, op=dist.ReduceOp.MIN)
    flags = flags.cpu()
    return flags[:-1].bool(), not bool(flags[-1])


# A data-parallel run's ranks are processes of their own, out of reach of the signal that asks the launching
# process (a Slurm job) to stop. The launcher creates this file in the run directory when a stop is asked
# for; rank 0 looks for it at each finiteness read, and once every rank has stopped with the state saved,
# rank 0 writes the step it stopped at into it.
STOP_FILE = "stop.requested"


def stop_asked(run_dir: Path, ranks: Ranks) -> bool:
    """Whether this rank asks its run to stop: rank 0 of a data-parallel run, when the launcher's file exists."""
    return ranks.world > 1 and ranks.writer and (Path(run_dir) / STOP_FILE).exists()


def rank_mean(value: torch.Tensor, ranks: Ranks) -> torch.Tensor:
    """The mean of `value` over ranks (a new tensor; `value` is left alone)."""
    if ranks.world == 1:
        return value
    total = value.detach().clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total / ranks.world


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# How this process starts a data-parallel run's ranks when not as processes on this machine: an executor that
# places them itself (Ray's gang on a placement group) installs its launcher with `ranks_launched_by`.
_launcher: Callable[[int, Callable, tuple, Path], None] | None = None


@contextlib.contextmanager
def ranks_launched_by(launcher: Callable[[int, Callable, tuple, Path], None]):
    """Within the block, `launch(world, target, args, run_dir)` calls `launcher` with the same arguments."""
    global _launcher
    previous, _launcher = _launcher, launcher
    try:
        yield
    finally:
        _launcher = previous


def launch(world: int, target: Callable, args: tuple, run_dir: Path) -> None:
    """Run `target(ranks, *args)` in `world` new processes joined in one process group; rank 0's return
    value is written by the target itself. If any rank dies, the others are stopped and this raises."""
    if _launcher is not None:
        _launcher(world, target, args, run_dir)
        return
    import torch.multiprocessing as mp

    from scaling_cli.train.stop import STOP_REQUESTED, StopRequested

    stop_file = Path(run_dir) / STOP_FILE
    stop_file.unlink(missing_ok=True)  # a request to an earlier attempt is not one to this
    port = free_port()
    here = (dict(os.environ), os.getcwd())
    context = mp.start_processes(
        _forked_rank, args=(here, world, port, target, args, "127.0.0.1", str(stop_file)), nprocs=world,
        join=False, start_method=_rank_start_method(),
    )  # fmt: skip
    (Path(run_dir) / "ranks.pids").write_text("".join(f"{pid}\n" for pid in context.pids()))
    while not context.join(timeout=JOIN_POLL_S):
        if STOP_REQUESTED.is_set() and not stop_file.exists():
            stop_file.touch()
    stopped_at = stop_file.read_text().strip() if stop_file.exists() else ""
    stop_file.unlink(missing_ok=True)
    if stopped_at:
        raise StopRequested(int(stopped_at))


JOIN_POLL_S = 0.5  # how often the launcher looks for a stop request while its ranks train

# What a forkserver that this process starts for ranks imports once, so that each rank forks with torch (and the
# torch._dynamo that AdamW's constructor imports) loaded: a spawned rank spent seconds of CPU importing them.
RANK_MODULES = ["scaling_cli.train.launch", "torch._dynamo"]


def _rank_start_method() -> str:
    """forkserver where the platform has it. A forkserver this process already runs (the local executor's)
    is used as it is; the preload list only shapes one started here. Where CUDA is, ranks are spawned as
    before: no GPU was at hand to check that nothing the server imports initialises CUDA before a fork, and a
    GPU rank's start-up is small beside its training."""
    import multiprocessing

    if "forkserver" not in multiprocessing.get_all_start_methods() or torch.cuda.is_available():
        return "spawn"
    multiprocessing.get_context("forkserver").set_forkserver_preload(RANK_MODULES)
    _start_forkserver_deaf_to_the_warning()
    return "forkserver"


def _start_forkserver_deaf_to_the_warning() -> None:
    """Slurm sends its time-limit warning to every process of the job: the forkserver would die of it (and its
    ranks, whose parent-death signal it is, with it) before rank 0 could save. An ignored signal stays ignored
    across exec and fork, so start the server while the warning is ignored here; a rank ignores it anyway."""
    import multiprocessing.forkserver
    import threading

    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        multiprocessing.forkserver.ensure_running()
        return
    warning = preemption_signal()
    previous = signal.signal(warning, signal.SIG_IGN)
    try:
        multiprocessing.forkserver.ensure_running()
    finally:
        signal.signal(warning, signal.SIG_DFL if previous is None else previous)  # None: a handler set in C


def _forked_rank(rank: int, here: tuple[dict[str, str], str], *rank_args) -> None:
    """A rank forked from a forkserver has the environment and directory the server started with: take the
    launcher's (the preemption signal's name, devices and paths a run reads from them) before running."""
    environment, directory = here
    os.environ.clear()
    os.environ.update(environment)
    os.chdir(directory)
    rank_main(rank, *rank_args)


def rank_main(
    rank: int, world: int, port: int, target: Callable, args: tuple, address: str = "127.0.0.1", stop_file: str = ""
) -> None:
    """One rank: join the run's process group at rank 0's `address`:`port`, run the target, leave the group.
    A rank that stopped on request waits for the others (rank 0 saves first); rank 0 then writes the step
    into `stop_file`, for the launcher."""
    from scaling_cli.train.stop import StopRequested

    # Slurm signals every process of the job; the launcher relays its stop request to the ranks, whom the
    # signal's default action (for USR1/USR2: terminate) would otherwise kill before they save.
    signal.signal(preemption_signal(), signal.SIG_IGN)
    os.environ.update(MASTER_ADDR=address, MASTER_PORT=str(port))
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(rank % torch.cuda.device_count())
    dist.init_process_group(backend, rank=rank, world_size=world)
    try:
        target(Ranks(rank, world), *args)
    except StopRequested as stop:
        dist.barrier()
        if rank == 0 and stop_file:
            Path(stop_file).write_text(f"{stop.step}\n")
    finally:
        dist.destroy_process_group()
