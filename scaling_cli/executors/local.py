"""Run sweep units in local worker processes on this process's CPU cores and, on CUDA, packing
`runs_per_gpu` workers onto each GPU.

Workers are forked from a forkserver that has imported the worker's modules (torch, pandas) once, so a
worker starts in milliseconds instead of re-importing them (about 1.5 CPU-seconds each on 2 cores), and
a process that sweeps several times (a notebook, the test suite) starts that server only once. The server
is a clean process (no CUDA, no threads), as the spawn start method's workers were; each worker takes the
sweep process's environment as it is at submission time, since the server's is that of its start."""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import ctypes
import multiprocessing as mp
import os
import queue
import select
import signal
import sys
import threading
import time
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from scaling_cli.executors import usable_cores, uses_cuda

PARENT_CHECK_S = 0.5
# Imported once by the forkserver, inherited by every worker. torch._dynamo too: torch.optim imports it lazily
# in the first optimizer's constructor, seconds of CPU that every worker would otherwise pay again.
WORKER_MODULES = ["scaling_cli.sweep_worker", "torch._dynamo"]
PR_SET_PDEATHSIG = 1  # from <sys/prctl.h>


class LocalExecutor:
    """A pool of `slots` worker processes on this machine."""

    def __init__(self, workers: int | None = None, runs_per_gpu: int = 1, device: str = "auto", gpus_per_run: int = 1):
        gpus = _cuda_device_count() if uses_cuda(device) else 0
        if gpus and gpus_per_run > 1:  # a data-parallel run's ranks each take one of its worker's GPUs
            self.slots = workers or max(1, gpus // gpus_per_run)
            self._gpu_ids = [
                ",".join(str((i * gpus_per_run + k) % gpus) for k in range(gpus_per_run)) for i in range(self.slots)
            ]
        else:  # worker i runs on GPU i // runs_per_gpu (round robin over the GPUs there are)
            self.slots = workers or (gpus * runs_per_gpu if gpus else 1)
            self._gpu_ids = [str((i // runs_per_gpu) % gpus) for i in range(self.slots)] if gpus else []
        self.cores = self.max_unit_cores = usable_cores()
        self.rebalances_threads = True  # units share this machine's cores: a running one may take freed cores
        self._context = _worker_context()
        self._pool = self._new_pool()

    def _new_pool(self) -> cf.ProcessPoolExecutor:
        gpu_queue = self._context.Queue()
        for gpu in self._gpu_ids:
            gpu_queue.put(gpu)
        return cf.ProcessPoolExecutor(
            max_workers=self.slots,
            mp_context=self._context,
            initializer=_init_worker,
            initargs=(os.getpid(), gpu_queue, dict(os.environ)),
        )

    def idle_cores(self) -> float | None:
        """Cores of this machine idle right now (other users' work included), or None where unknown."""
        return measured_idle_cores(self.cores)

    @property
    def device_types(self) -> frozenset[str]:
        return _device_types()

    def ship_data(self, refs: dict) -> dict:
        """Workers here share this machine's cache: each finds the prepared data set by its identity."""
        return refs

    def submit(self, fn: Any, task: Any) -> cf.Future:
        try:
            return self._pool.submit(fn, task)
        except BrokenProcessPool:  # a worker died (killed, out of memory): start a fresh pool
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._new_pool()
            return self._pool.submit(fn, task)

    def shutdown(self, cancel: bool = False) -> None:
        if cancel:
            # Workers hold run claims and write checkpoints atomically, so stopping them mid-step is safe.
            for process in list(getattr(self._pool, "_processes", {}).values()):
                process.terminate()
            self._pool.shutdown(wait=False, cancel_futures=True)
        else:
            self._pool.shutdown(wait=True)


def measured_idle_cores(usable: int, window_s: float = 0.25) -> float | None:
    """Idle share of the machine's CPU time over a short window (Linux /proc/stat), as a number of cores,
    at most `usable`. On a machine busy with other work, threads a run adds only wait for each other: on
    2 cores at load 12, a bare loop ran 33k tokens/s with 1 thread and 0.8k with 2."""

    def sample() -> tuple[int, int] | None:
        try:
            fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        except (OSError, ValueError, IndexError):
            return None
        return fields[3] + fields[4], sum(fields)  # idle + iowait, total

    first = sample()
    time.sleep(window_s)
    second = sample()
    if first is None or second is None or second[1] <= first[1]:
        return None
    idle_share = (second[0] - first[0]) / (second[1] - first[1])
    return min(float(usable), idle_share * (os.cpu_count() or usable))


def _device_types() -> frozenset[str]:
    from scaling_cli.train.runtime import available_device_types

    return available_device_types()


def _cuda_device_count() -> int:
    import torch

    return torch.cuda.device_count()


def _worker_context() -> Any:
    """The forkserver start method with the worker's modules preloaded, where the platform has it."""
    if "forkserver" not in mp.get_all_start_methods():
        return mp.get_context("spawn")
    context = mp.get_context("forkserver")
    context.set_forkserver_preload(WORKER_MODULES)
    return context


def _init_worker(sweep_pid: int, gpu_queue: Any, environment: dict[str, str]) -> None:
    """Take the sweep's environment, ignore Ctrl-C (the sweep process stops workers itself), take a GPU,
    and die with the sweep."""
    os.environ.clear()
    os.environ.update(environment)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with contextlib.suppress(queue.Empty):  # empty: a CPU run, or a replacement worker keeps the default
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu_queue.get_nowait()
    _kill_me_with_parent()
    threading.Thread(target=_exit_with_sweep, args=(sweep_pid, os.getppid()), daemon=True).start()


def _kill_me_with_parent() -> None:
    """On Linux, ask the kernel to SIGKILL this worker the moment its parent dies: the forkserver, which
    exits as soon as the sweep process does (or the sweep process itself under spawn)."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _exit_with_sweep(sweep_pid: int, parent_pid: int) -> None:
    # A sweep killed with SIGKILL cannot stop its workers; without this they would keep training
    # (and keep their claims, and finish runs the kill interrupted) as orphans, and a rerun could not
    # resume their runs from checkpoints. The parent-death signal reaches a worker only once the
    # forkserver has noticed and exited, which lets a short run finish meanwhile; a pidfd wakes this
    # thread the moment the sweep process dies. Polling covers systems without pidfds.
    try:
        watched = os.pidfd_open(sweep_pid)
    except ProcessLookupError:
        os._exit(1)
    except (AttributeError, OSError):
        while os.getppid() == parent_pid and _alive(sweep_pid):
            time.sleep(PARENT_CHECK_S)
        os._exit(1)
    select.select([watched], [], [])
    os._exit(1)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True
