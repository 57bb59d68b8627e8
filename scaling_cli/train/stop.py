"""Stopping a run early on request, with its state saved: a Slurm job told that its time limit or a preemption
is near sets `STOP_REQUESTED` from its signal handler; the training loop sees it at the next step boundary,
writes `checkpoint.pt` at that step and raises `StopRequested`, so the requeued job resumes exactly there."""

from __future__ import annotations

import os
import signal
import threading

STOP_REQUESTED = threading.Event()


def preemption_signal() -> signal.Signals:
    """The signal Slurm sends before a time limit or a preemption, as submitit names it (SUBMITIT_PREEMPT_SIGNAL,
    USR2 by default)."""
    return getattr(signal, "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2"), signal.SIGUSR2)


class StopRequested(BaseException):
    """The run saved its state and stopped because a stop was requested. Not a failure of the run: a
    BaseException, so the worker's handlers of run failures let it pass up to whoever asked for the stop."""

    def __init__(self, step: int):
        super().__init__(f"stopped at step {step} on request, state saved")
        self.step = step
