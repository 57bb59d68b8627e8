"""The worker side of a sweep: train one unit (claim it, train its runs in order, write their rows)."""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from dataclasses import dataclass
from typing import Any

from scaling_cli.data.repetition import repetition_fields
from scaling_cli.errors import ScaleError
from scaling_cli.plan import RunPlan
from scaling_cli.store import NOT_RETRAINED, Store
from scaling_cli.sweep_plan import Unit
from scaling_cli.sweep_threads import thread_allowance

# Test hook: comma-separated run ids (or prefixes of them) whose training raises every time it starts.
FAIL_RUNS_ENV = "SCALE_FAIL_RUNS"


@dataclass(frozen=True)
class UnitTask:
    """Everything a worker needs to train one unit; picklable, so it can cross to a process or a Ray node."""

    unit: Unit
    store_root: str
    data: dict  # dataset name -> DataRef (identity, not a path: a worker on another machine has its own cache)
    threads: int | None  # CPU cores this unit may use (its runs take as many as pay, up to this); None: torch's default
    final_attempt: bool
    sweep_pid: int
    keep_checkpoints: bool = False  # else a settled run's checkpoint and a finished trunk's states are deleted
    keep_final: bool = False  # keep finished (done) runs' final checkpoint.pt, for `scale export`


@dataclass(frozen=True)
class RunOutcome:
    run_id: str
    status: str  # done, diverged, error (an attempt that raised), skipped (already settled)
    error: str = ""
    deterministic: bool = False  # the same inputs fail the same way again: retrying cannot help


@dataclass(frozen=True)
class UnitReport:
    unit_id: str
    busy: bool = False  # another process holds the unit's claim
    outcomes: tuple[RunOutcome, ...] = ()


def run_unit(task: UnitTask) -> UnitReport:
    """Claim the unit, train its trunk (saving states for pending branches), then each branch."""
    store = Store(task.store_root)
    unit = task.unit
    with store.claim(unit.unit_id) as mine:
        if not mine:
            return UnitReport(unit.unit_id, busy=True)
        outcomes = []
        pending = [(run, step) for run, step in unit.branches if store.state(run.run_id) not in NOT_RETRAINED]
        if store.state(unit.trunk.run_id) in NOT_RETRAINED:
            outcomes.append(RunOutcome(unit.trunk.run_id, "skipped"))
        else:
            saves = sorted({step for _, step in pending if step > 0})
            trunk = _train_one(store, task, unit.trunk, trunk_saves=saves, start_from=None, branch_of="")
            outcomes.append(trunk)
            if trunk.status == "error":
                return UnitReport(unit.unit_id, outcomes=tuple(outcomes))
        trunk_states = store.run_dir(unit.trunk.run_id) / "trunk"
        for run, step in pending:
            saved = trunk_states / f"step_{step}.pt"
            # Without the saved state (the trunk diverged earlier, or it finished before this budget was
            # added to the spec) the branch trains from scratch: same result, more compute.
            start = saved if saved.exists() else None
            outcomes.append(_train_one(store, task, run, trunk_saves=(), start_from=start, branch_of=unit.trunk.run_id))
        if not task.keep_checkpoints:
            remove_training_states(store, unit, keep_final=task.keep_final)
        return UnitReport(unit.unit_id, outcomes=tuple(outcomes))


def remove_training_states(store: Store, unit: Unit, keep_final: bool = False) -> None:
    """Delete what only an unsettled run needs: settled runs' checkpoints, and the trunk's saved states once
    every branch is settled (they are the bulk of a results directory: model plus two optimizer moments)."""
    from scaling_cli.train import CHECKPOINT_NAME

    settled = [run for run in unit.runs if store.state(run.run_id) in NOT_RETRAINED]
    for run in settled:
        if not (keep_final and store.state(run.run_id) == "done"):
            (store.run_dir(run.run_id) / CHECKPOINT_NAME).unlink(missing_ok=True)
    trunk_states = store.run_dir(unit.trunk.run_id) / "trunk"
    if len(settled) == len(unit.runs) and trunk_states.is_dir():
        shutil.rmtree(trunk_states, ignore_errors=True)


def _train_one(store: Store, task: UnitTask, run: RunPlan, trunk_saves, start_from, branch_of: str) -> RunOutcome:
    from scaling_cli.dataref import resolve
    from scaling_cli.train import train_run

    run_dir = store.run_dir(run.run_id)
    store.write_config(
        run.run_id,
        {
            **run.describe(),
            "branch_of": branch_of,
            "model": run.model.to_dict(),
            "train": run.train.to_dict(),
            "data": run.data_options.to_dict(),
        },
    )
    store.clear_row(run.run_id)
    allowance = thread_allowance(store.run_dir(task.unit.unit_id), run, task.threads, task.sweep_pid)
    threads = allowance()  # a branch trained after its trunk starts with the cores the unit has by then
    resumed = (run_dir / "checkpoint.pt").exists()
    store.record_attempt(run.run_id, resumed=resumed, sweep_pid=task.sweep_pid, threads=threads)
    try:
        _maybe_inject_failure(run.run_id)
        data = resolve(task.data[run.dataset])
        train_cfg = dataclasses.replace(run.train, threads=threads)
        result = train_run(
            run.model, train_cfg, data, run_dir, trunk_saves=trunk_saves, start_from=start_from,
            thread_allowance=allowance if threads else None,
        )  # fmt: skip
    except Exception as exc:  # noqa: BLE001 - any failure of one run is recorded, the sweep goes on
        message = " | ".join(f"{type(exc).__name__}: {exc}".strip().splitlines())  # one line for tables
        deterministic = is_deterministic(exc)
        if task.final_attempt or deterministic:
            record_failure(store, run, branch_of, message)
        return RunOutcome(run.run_id, "error", message, deterministic)
    row = {
        **run.describe(),
        **_trained(run, result),
        **_result_fields(result),
        **_data_fields(data),
        **repetition_fields(_trained(run, result).get("tokens", run.tokens), data.manifest),
        "branch_of": branch_of,
        "attempts": len(store.attempts(run.run_id)),
        "error": result.diverged_reason,  # why a diverged run stopped; empty for a done run
        "finished_at": time.time(),
    }
    store.write_row(run.run_id, row)
    store.compact([run.run_id])
    return RunOutcome(run.run_id, result.status)


# Failures that the same run on the same machine meets again: out of memory, a shape or value error, bad
# input. A retry only helps a failure from outside the run (a killed worker, a lost file system, a flaky node).
DETERMINISTIC_MESSAGES = ("can't allocate memory", "out of memory", "size mismatch", "shape", "must match")


def is_deterministic(exc: BaseException) -> bool:
    if isinstance(exc, (MemoryError, ScaleError, ValueError, TypeError, IndexError, KeyError)):
        return True
    return isinstance(exc, RuntimeError) and any(m in str(exc).lower() for m in DETERMINISTIC_MESSAGES)


def record_failure(store: Store, run: RunPlan, branch_of: str, message: str) -> None:
    nan = float("nan")
    row = {
        **run.describe(),
        "status": "failed",
        "train_loss": nan,
        "val_loss": nan,
        "val_bpb": nan,
        "branch_of": branch_of,
        "attempts": len(store.attempts(run.run_id)),
        "error": message,
        "finished_at": time.time(),
    }
    store.write_row(run.run_id, row)
    store.compact([run.run_id])


def _maybe_inject_failure(run_id: str) -> None:
    targets = [t.strip() for t in os.environ.get(FAIL_RUNS_ENV, "").split(",") if t.strip()]
    if any(run_id.startswith(t) for t in targets):
        raise RuntimeError(f"injected failure ({FAIL_RUNS_ENV} test hook)")


def _trained(run: RunPlan, result: Any) -> dict:
    """What a finished run actually trained: its budget rounded down to whole optimiser steps."""
    if result.status != "done":
        return {}
    tokens = int(result.tokens)
    return {
        "tokens": tokens,
        "flops": run.flops_per_token * tokens,
        "flops_6nd": run.flops_6nd_per_token * tokens,
        "tokens_per_param": tokens / run.params,
    }


def _result_fields(result: Any) -> dict:
    return {
        "status": result.status,
        "train_loss": result.train_loss,
        "val_loss": result.val_loss,
        "val_bpb": result.val_bpb,
        "wall_s": result.wall_s,
        "tokens_per_s": result.tokens_per_s,
        "device": result.device,
        "steps": result.steps,
        "diverged_step": result.diverged_step,
        "data_parallel": result.data_parallel,
        "flops_per_s": result.flops_per_s,
        "peak_flops": result.peak_flops,
        "mfu": result.mfu,
    }


def _data_fields(data: Any) -> dict:
    baselines = data.baselines or {}
    fields = {f"bpb_{name}": baselines.get(name) for name in ("lz4", "lz4hc", "zlib", "bz2", "lzma")}
    fields["entropy_rate_bits"] = data.entropy_rate_bits
    fields["bytes_per_token"] = data.bytes_per_token
    return fields
