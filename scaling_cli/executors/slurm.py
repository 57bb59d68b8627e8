"""Run sweep units as Slurm jobs through submitit: one job per unit, its logs and pickles under `<out>/slurm/`.

A job calls the same `run_unit` as the other executors and writes to the same results directory, which must
be on a filesystem the nodes share (claims and row files make a second attempt at a settled unit a no-op).
Slurm signals a job (submitit's SIGUSR2, `--signal` 90 s before its time limit, or on preemption); the job asks its
training loop to stop at the next step boundary with its state saved (`scaling_cli.train.stop`), and submitit
requeues it; the requeued job resumes from that state. The sweep's future for a unit completes when its job
finally ends, with the unit's report.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import logging
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import submitit

from scaling_cli.errors import SpecError

if TYPE_CHECKING:
    from scaling_cli.spec import SlurmOptions

POLL_S = 1.0  # how often result files are looked for (a stat per running job)
QUEUE_CHECK_S = 5.0  # how often squeue is asked which jobs still exist
MISSING_GRACE_S = 10.0  # a job gone from the queue may still be writing its result file on a shared filesystem
SIGNAL_DELAY_S = 90  # Slurm's warning before the time limit (halved for limits of a minute or two)
STOP_TIMEOUT_S = 30  # how long a signalled job waits for its loop to save before it requeues anyway
MAX_TIMEOUTS = 1000  # requeues after a time limit before submitit gives up; a long unit may need many chunks
DEFAULT_SLOTS = 64  # units submitted at once when --workers is not given; Slurm queues the rest of them


class SlurmUnit(submitit.helpers.Checkpointable):
    """The callable a job runs: `fn(task)`, stopped on submitit's signal with the training state saved first.

    submitit installs its own handler of that signal (checkpoint, `scontrol requeue`, exit). Calling it in the middle
    of a training step would lose the steps since the last periodic checkpoint, so this handler only asks the
    loop to stop; the submitit handler runs once the loop has saved (or after STOP_TIMEOUT_S, as a last resort).
    """

    def __call__(self, fn: Any, task: Any) -> Any:
        from scaling_cli.train.stop import STOP_REQUESTED, StopRequested, preemption_signal

        warning = preemption_signal()
        submitit_requeue = signal.getsignal(warning)
        if not callable(submitit_requeue):  # not under submitit (a test calling this directly): nothing to requeue
            return fn(task)

        def requeue(signum: int, frame: Any) -> None:
            """submitit's handler: pickle this call again, `scontrol requeue`, exit. The requeue makes Slurm
            SIGTERM every process of the job, `scontrol` included if it has not exited yet (seen on a loaded
            machine: the job failed with "scontrol requeue died with SIGTERM" instead of being requeued). An
            ignored signal stays ignored in the child, so `scontrol` finishes; this process exits right after."""
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            submitit_requeue(signum, frame)

        def stop_soon(signum: int, frame: Any) -> None:
            STOP_REQUESTED.set()
            signal.signal(signal.SIGALRM, requeue)
            signal.alarm(STOP_TIMEOUT_S)

        signal.signal(warning, stop_soon)
        try:
            return fn(task)
        except StopRequested as stop:
            signal.alarm(0)
            logging.getLogger("submitit").warning(f"scale: {stop}; requeueing")  # into the job's log
            requeue(warning, None)
            raise
        finally:
            signal.alarm(0)  # the unit ended on its own before the loop saw the stop: nothing to requeue


class SlurmJobFailed(RuntimeError):
    """A unit's job ended without a result (cancelled, killed, node failure, or too many requeues)."""


class SlurmExecutor:
    """Submit each unit as one Slurm job with the given options; `slots` jobs are in the queue at once."""

    def __init__(self, options: SlurmOptions, workers: int | None = None):
        self.options = options
        self.slots = workers or DEFAULT_SLOTS
        self.max_unit_cores = options.cpus_per_task
        self.cores = options.cpus_per_task * self.slots  # each unit gets its job's cores, no more
        self.device_types = frozenset({"cpu", "cuda"} if options.gpus_per_task else {"cpu"})
        self._submitit: submitit.SlurmExecutor | None = None
        self._jobs: dict[str, tuple[Any, cf.Future]] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._watcher = threading.Thread(target=self._watch, name="slurm-jobs", daemon=True)
        self._watcher.start()

    def ship_data(self, refs: dict) -> dict:
        """Jobs find each prepared data set by its identity in their node's cache (or prepare and verify it)."""
        return refs

    def submit(self, fn: Any, task: Any) -> cf.Future:
        executor = self._executor_for(Path(task.store_root) / "slurm")
        job = executor.submit(SlurmUnit(), fn, task)
        future: cf.Future = cf.Future()
        future.set_running_or_notify_cancel()
        with self._lock:
            self._jobs[job.job_id] = (job, future)
        return future

    def _executor_for(self, folder: Path) -> submitit.SlurmExecutor:
        """One submitit executor, its folder under the results directory (the first unit's store says where)."""
        if self._submitit is None:
            executor = submitit.SlurmExecutor(folder=folder / "%j", max_num_timeout=MAX_TIMEOUTS)
            executor.update_parameters(**sbatch_parameters(self.options))
            self._submitit = executor
        return self._submitit

    def shutdown(self, cancel: bool = False) -> None:
        self._stopping.set()
        with self._lock:
            jobs = list(self._jobs.values())
        if cancel:
            for job, future in jobs:
                with contextlib.suppress(Exception):  # already ended
                    job.cancel(check=False)
                future.cancel()
        self._watcher.join(timeout=2 * POLL_S)

    def _watch(self) -> None:
        """Complete each unit's future once its job has written its result, or has left the queue without one."""
        gone_since: dict[str, float] = {}
        next_queue_check = 0.0
        while not self._stopping.is_set():
            with self._lock:
                jobs = dict(self._jobs)
            now = time.monotonic()
            queued = None
            if jobs and now >= next_queue_check:
                queued = jobs_in_queue()
                next_queue_check = now + QUEUE_CHECK_S
            for job_id, (job, future) in jobs.items():
                if job.paths.result_pickle.exists():
                    gone_since.pop(job_id, None)
                    self._finish(job_id, job, future)
                    continue
                if queued is not None and job_id not in queued:
                    gone_since.setdefault(job_id, now)
                elif queued is not None:
                    gone_since.pop(job_id, None)  # back in the queue (requeued)
                # Judged at every poll, not only at a queue check, so that a lost job fails once its grace is over.
                if job_id in gone_since and now - gone_since[job_id] > MISSING_GRACE_S:
                    self._fail(job_id, job, future, "ended without a result")
            self._stopping.wait(POLL_S)

    def _finish(self, job_id: str, job: Any, future: cf.Future) -> None:
        try:
            result = job.result()
        except Exception as exc:  # noqa: BLE001 - submitit re-raises the job's error, whatever its type
            self._fail(job_id, job, future, f"failed: {job_error(exc)}")
            return
        with self._lock:
            self._jobs.pop(job_id, None)
        future.set_result(result)

    def _fail(self, job_id: str, job: Any, future: cf.Future, what: str) -> None:
        with self._lock:
            self._jobs.pop(job_id, None)
        future.set_exception(SlurmJobFailed(f"slurm job {job_id} {what}; its log: {job.paths.stderr}"))


TRACE_RULE = "-" * 22  # submitit frames a failed job's traceback between two such lines


def job_error(exc: Exception) -> str:
    """The line that says what went wrong in a job: its traceback's last line, not the log paths that submitit
    appends after it."""
    framed = str(exc).split(TRACE_RULE)
    text = framed[1] if len(framed) >= 3 else str(exc)
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


def sbatch_parameters(options: SlurmOptions) -> dict:
    """submitit's SlurmExecutor parameters for one unit's job."""
    parameters = {
        "time": options.time,
        "cpus_per_task": options.cpus_per_task,
        "ntasks_per_node": 1,
        "nodes": 1,
        "signal_delay_s": min(SIGNAL_DELAY_S, options.time * 30),
        "job_name": "scale-unit",
    }
    if options.partition:
        parameters["partition"] = options.partition
    if options.account:
        parameters["account"] = options.account
    if options.gpus_per_task:
        parameters["gpus_per_task"] = options.gpus_per_task
    return parameters


def jobs_in_queue() -> set[str] | None:
    """Ids of this user's jobs Slurm still knows as queued or running (requeued ones included); None when
    squeue cannot be asked right now (the controller busy or restarting: look again later)."""
    try:
        listed = subprocess.run(["squeue", "--me", "-h", "-o", "%i"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if listed.returncode != 0:
        return None
    return {line.strip() for line in listed.stdout.splitlines() if line.strip()}


def partitions() -> list[str]:
    """The cluster's partition names; SpecError when Slurm does not answer (no sinfo, no controller)."""
    if shutil.which("sinfo") is None:
        raise SpecError("--executor", "slurm", "sinfo is not on PATH (is this a Slurm login node?)")
    try:
        listed = subprocess.run(["sinfo", "-h", "-o", "%R"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SpecError("--executor", "slurm", f"sinfo did not answer: {exc}") from None
    if listed.returncode != 0:
        problem = (listed.stderr.strip().splitlines() or [f"exit status {listed.returncode}"])[-1]
        raise SpecError("--executor", "slurm", f"Slurm does not answer: sinfo: {problem}")
    return sorted({line.strip() for line in listed.stdout.splitlines() if line.strip()})
