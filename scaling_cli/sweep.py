"""The scheduler of a sweep: run its planned units through an executor, retry failures, report progress.

Planning is in `sweep_plan`, one unit's training in `sweep_worker`, the CPU-thread policy in `sweep_threads`.

The unit of work handed to an executor is a `Unit`: one run, or with schedule `wsd` a trunk (the largest
budget of runs that differ only in their budget) plus a cooldown branch per smaller budget, each branch
starting from the trunk's state at the step where its cooldown begins. A worker claims a unit through the
store's file lock, so two sweeps on one directory never train the same run.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scaling_cli import atomic
from scaling_cli.errors import ScaleError
from scaling_cli.plan import Sweep
from scaling_cli.store import NOT_RETRAINED, Store
from scaling_cli.sweep_plan import SweepPlan, Unit, build_units, check_memory, check_out_dir, plan_sweep
from scaling_cli.sweep_threads import (
    FLOPS_PER_THREAD,
    THREAD_ALLOWANCE_NAME,
    cores_for_unit,
    rebalanced_cores,
    threads_for,
)
from scaling_cli.sweep_worker import RunOutcome, UnitReport, UnitTask, record_failure, run_unit

# Importable from here as before the split: the planning, thread-policy and worker names callers use.
__all__ = [
    "FLOPS_PER_THREAD",
    "THREAD_ALLOWANCE_NAME",
    "Progress",
    "SweepOutcome",
    "SweepPlan",
    "Unit",
    "UnitTask",
    "build_units",
    "check_memory",
    "cores_for_unit",
    "plan_sweep",
    "prepare_data",
    "rebalanced_cores",
    "run_sweep",
    "run_unit",
    "threads_for",
]


@dataclass
class SweepOutcome:
    counts: dict[str, int]
    failed: list[dict]
    wall_s: float
    out_dir: Path


@dataclass
class Progress:
    """A snapshot for displays: what is done, what each worker is training, and the expected time left."""

    runs_total: int
    runs_settled: int
    flops_total: float
    flops_done: float
    elapsed_s: float
    eta_s: float | None
    active: list[dict] = field(default_factory=list)  # {run_id, d_model, n_layer, tokens, step, loss, tok_s}


Event = Callable[[str, Any], None]
OTHER_PROCESS_SCAN_S = 5.0  # how often the scheduler looks for rows written by another sweep process


def prepare_data(spec: Sweep) -> dict:
    """Prepare each data set of the spec once, in this process, before any worker needs it; return a
    `DataRef` per data set, by which workers find (or receive, or prepare) and verify it."""
    from scaling_cli.data import prepare
    from scaling_cli.dataref import ref_for

    refs = {}
    vocab = spec.vocab_size if spec.tokenizer == "bpe" else None
    for dataset in spec.datasets:
        try:
            prepared = prepare(dataset, spec.data_options, tokenizer=spec.tokenizer, vocab_size=vocab)
        except ScaleError as exc:
            raise type(exc)(str(spec.path), "dataset", f"{dataset!r}: {exc.problem}") from None
        refs[dataset] = ref_for(dataset, prepared, spec.data_options, spec.tokenizer, vocab)
    return refs


def run_sweep(
    spec: Sweep,
    out_dir: str | Path,
    executor: Any,
    retries: int = 2,
    on_event: Event | None = None,
    poll_s: float = 0.5,
    keep_checkpoints: bool = False,
    force: bool = False,
    keep_final: bool = False,
) -> SweepOutcome:
    """Train every unsettled run of the spec through `executor`; return the final counts.

    Events sent to `on_event(kind, payload)`: "plan" (SweepPlan), "run" (a settled row, as soon as it is
    written, by this or another process), "retry" (dict), "progress" (Progress, every poll).
    """
    emit = on_event or (lambda kind, payload: None)
    started = time.time()
    plan = plan_sweep(spec, out_dir, workers=executor.slots)
    if not force:
        check_memory(plan, executor.slots)
    if hasattr(executor, "check_units"):  # e.g. Ray: a data-parallel gang larger than the cluster, before training
        unsettled = {p.unit_id for p in plan.runs if p.state not in NOT_RETRAINED}
        executor.check_units([unit for unit in plan.units if unit.unit_id in unsettled])
    Store(out_dir).check_writable()
    data = executor.ship_data(prepare_data(spec))
    emit("plan", plan)
    store = Store(out_dir)
    changed = check_out_dir(store.root, spec, plan)
    if changed:
        emit("grid_changed", changed)
    store.init(spec.text, [p.record() for p in plan.runs])
    repair_tables(store, emit)
    runner = _Runner(plan, store, executor, data, retries, emit, started)
    runner.keep_checkpoints = keep_checkpoints
    runner.keep_final = keep_final
    runner.loop(poll_s)
    final = plan_sweep(spec, out_dir, workers=executor.slots)
    failed = [
        {"run_id": p.run.run_id, "error": (store.read_row(p.run.run_id) or {}).get("error", "")}
        for p in final.runs
        if p.state == "failed"
    ]
    return SweepOutcome(counts=final.counts(), failed=failed, wall_s=time.time() - started, out_dir=Path(out_dir))


def repair_tables(store: Store, emit: Event) -> None:
    """Rebuild runs.parquet and curves.parquet when they are missing, damaged or disagree with the run files."""
    problems = store.table_problems()
    if problems:
        store.compact()
        emit("tables_rebuilt", problems)


class _Runner:
    """The scheduling loop of one sweep process: submit claimable units, collect reports, retry, report."""

    def __init__(
        self, plan: SweepPlan, store: Store, executor: Any, data: dict, retries: int, emit: Event, started: float
    ):
        self.plan, self.store, self.executor = plan, store, executor
        self.data, self.retries, self.emit, self.started = data, retries, emit, started
        self.by_unit = {u.unit_id: u for u in plan.units}
        self.planned = {p.run.run_id: p for p in plan.runs}
        self.cost = {p.run.run_id: p.cost_flops for p in plan.runs}
        self.branch_tokens = {
            p.run.run_id: p.branch_step * p.run.train.batch_size * p.run.model.seq_len for p in plan.runs
        }
        self.started_at_tokens: dict[str, int] = {}  # run id -> tokens it had trained when its unit was submitted
        self.queue = [u for u in plan.units if not self._unit_settled(u)]
        self.deferred: list[tuple[float, Unit]] = []
        self.inflight: dict[cf.Future, Unit] = {}
        self.failures: dict[str, int] = defaultdict(int)
        self.given_up: set[str] = set()
        self.reported = {p.run.run_id for p in plan.runs if p.state in NOT_RETRAINED}
        self.collected: set[str] = set()  # run ids of units collected since the last report
        self.next_full_scan = 0.0  # when to look at every unreported run's row (other sweep processes)
        self.flops_done_here = 0.0
        self.keep_checkpoints = False
        self.keep_final = False
        self.cores_inflight: dict[str, int] = {}  # unit id -> cores it was given

    def _unit_settled(self, unit: Unit) -> bool:
        return all(self.store.state(run.run_id) in NOT_RETRAINED for run in unit.runs)

    def loop(self, poll_s: float) -> None:
        try:
            while self.queue or self.deferred or self.inflight:
                self._submit_ready()
                if self.inflight:
                    finished, _ = cf.wait(list(self.inflight), timeout=poll_s, return_when=cf.FIRST_COMPLETED)
                else:
                    finished = set()
                    time.sleep(poll_s)
                for future in finished:
                    unit = self.inflight.pop(future)
                    self.cores_inflight.pop(unit.unit_id, None)
                    (self.store.run_dir(unit.unit_id) / THREAD_ALLOWANCE_NAME).unlink(missing_ok=True)
                    self._collect(future, unit)
                if finished:
                    self._rebalance_threads()
                self._report()
        finally:
            self.executor.shutdown(cancel=bool(self.inflight or self.queue))
        self.next_full_scan = 0.0  # the last report sees every row, whoever wrote it
        self._report()

    def _submit_ready(self) -> None:
        now = time.time()
        ready = [unit for when, unit in self.deferred if when <= now]
        self.deferred = [(when, unit) for when, unit in self.deferred if when > now]
        self.queue = ready + self.queue
        while self.queue and len(self.inflight) < self.executor.slots:
            unit = self.queue.pop(0)
            if self._unit_settled(unit):
                continue
            if self.store.is_claimed(unit.unit_id):  # another sweep process is training it: look again soon
                self.deferred.append((now + 1.0, unit))
                continue
            final = self.failures[unit.unit_id] >= self.retries
            task = UnitTask(
                unit=unit,
                store_root=str(self.store.root),
                data=self.data,
                threads=self._cores_for_next(),
                final_attempt=final,
                sweep_pid=os.getpid(),
                keep_checkpoints=self.keep_checkpoints,
                keep_final=self.keep_final,
            )
            for run in unit.runs:  # what it trains from here on counts towards this process's FLOP rate
                point = self.store.last_point(run.run_id)
                self.started_at_tokens[run.run_id] = point["tokens"] if point else self.branch_tokens[run.run_id]
            self.inflight[self.executor.submit(run_unit, task)] = unit
            self.cores_inflight[unit.unit_id] = task.threads or 0

    def _cores_for_next(self) -> int | None:
        """The free cores split evenly among the units that will run beside this one: with fewer units left
        than workers, each new unit gets the cores the idle workers leave free. Where the executor can see
        its machine's idle cores, cores busy with other work count as taken."""
        cores = getattr(self.executor, "cores", None)
        if cores is None:
            return None
        return cores_for_unit(
            cores=cores,
            taken=sum(self.cores_inflight.values()),
            starting=min(self.executor.slots - len(self.inflight), 1 + len(self.queue) + len(self.deferred)),
            idle=self.executor.idle_cores() if hasattr(self.executor, "idle_cores") else None,
            largest=getattr(self.executor, "max_unit_cores", None) or cores,
        )

    def _rebalance_threads(self) -> None:
        """With no unit waiting to start, the running units share the cores the finished ones freed: each gets
        an allowance file that its training loop reads between steps. Only executors whose units share this
        machine's cores do this (a Ray task keeps the CPUs it reserved)."""
        if self.queue or self.deferred or not self.inflight or not getattr(self.executor, "rebalances_threads", False):
            return
        cores = self.executor.cores
        largest = getattr(self.executor, "max_unit_cores", None) or cores
        if cores - sum(self.cores_inflight.values()) <= 0:
            return
        given = rebalanced_cores(self.cores_inflight, cores, self.executor.idle_cores(), largest)
        for unit_id, count in given.items():
            if count != self.cores_inflight[unit_id]:
                atomic.write_text(self.store.run_dir(unit_id) / THREAD_ALLOWANCE_NAME, f"{count} {os.getpid()}")
        self.cores_inflight = given

    def _collect(self, future: cf.Future, unit: Unit) -> None:
        self.collected.update(run.run_id for run in unit.runs)
        try:
            report = future.result()
        except Exception as exc:  # noqa: BLE001 - the worker process died (killed, out of memory, ...)
            report = UnitReport(
                unit.unit_id,
                outcomes=tuple(
                    RunOutcome(run.run_id, "error", f"worker died: {type(exc).__name__}: {exc}")
                    for run in unit.runs
                    if self.store.state(run.run_id) not in NOT_RETRAINED
                ),
            )
        if report.busy:
            self.deferred.append((time.time() + 1.0, unit))
            return
        errors = [o for o in report.outcomes if o.status == "error"]
        if not errors:
            return
        self.failures[unit.unit_id] += 1
        attempt = self.failures[unit.unit_id]
        if attempt <= self.retries and not any(o.deterministic for o in errors):
            self.emit("retry", {"unit": unit.unit_id, "attempt": attempt, "error": errors[0].error})
            self.queue.append(unit)
            return
        self.given_up.add(unit.unit_id)
        messages = {o.run_id: o.error for o in errors}
        for run in unit.runs:  # what a dead worker could not write, and branches of a failed trunk
            if self.store.state(run.run_id) == "pending":
                message = messages.get(run.run_id) or f"its trunk {unit.trunk.run_id} failed: {errors[0].error}"
                branch_of = "" if run is unit.trunk else unit.trunk.run_id
                record_failure(self.store, run, branch_of, message)

    def _report(self) -> None:
        """Emit the rows settled since the last report, then the progress. Each poll reads the rows of the runs
        whose units are running or were just collected; every OTHER_PROCESS_SCAN_S it reads all unreported
        rows, for runs another sweep process trains in the same directory."""
        now = time.monotonic()
        full = now >= self.next_full_scan
        if full:
            self.next_full_scan = now + OTHER_PROCESS_SCAN_S
        watched = self.collected | {run.run_id for unit in self.inflight.values() for run in unit.runs}
        self.collected = set()
        for planned in self.plan.runs:
            run_id = planned.run.run_id
            if run_id in self.reported or not (full or run_id in watched):
                continue
            row = self.store.read_row(run_id)
            if row is not None and (row["status"] in NOT_RETRAINED or planned.unit_id in self.given_up):
                self.reported.add(run_id)
                if run_id in self.started_at_tokens:  # trained (or finished) by this process
                    trained = planned.run.tokens - self.started_at_tokens[run_id]
                    self.flops_done_here += max(0, trained) * planned.run.flops_per_token
                self.emit("run", row)
        self.emit("progress", self._progress())

    def _flops_in_flight(self, active: list[dict]) -> float:
        """FLOPs the running runs have trained since this process submitted them (from their last curve points)."""
        total = 0.0
        for entry in active:
            run_id, seen = entry["run_id"], entry["seen"]
            if seen is not None and run_id in self.started_at_tokens:
                trained = max(0, seen - self.started_at_tokens[run_id])
                total += trained * self.planned[run_id].run.flops_per_token
        return total

    def _progress(self) -> Progress:
        active = []
        for unit in self.inflight.values():
            run = next((r for r in unit.runs if self.store.read_row(r.run_id) is None), None)
            if run is None:
                continue
            point = self.store.last_point(run.run_id) or {}
            wall = point.get("wall_s") or 0.0
            tok_s = (point.get("tokens") or 0) / wall if wall > 0 else None
            active.append(
                {
                    "run_id": run.run_id,
                    "d_model": run.model.d_model,
                    "n_layer": run.model.n_layer,
                    "tokens": run.tokens,
                    "step": point.get("step"),
                    "loss": point.get("train_loss"),
                    "seen": point.get("tokens"),
                    "tok_s": tok_s,
                    "eta_s": max(0.0, (run.tokens - point["tokens"]) / tok_s) if tok_s else None,
                }
            )
        elapsed = time.time() - self.started
        in_flight = self._flops_in_flight(active)
        remaining = max(0.0, sum(self.cost[r] for r in self.cost if r not in self.reported) - in_flight)
        trained_here = self.flops_done_here + in_flight  # FLOPs as they are trained, not when a run finishes
        if trained_here > 0:
            eta = remaining / (trained_here / elapsed)
        else:  # nothing finished yet in this process: fall back on the plan's estimate
            eta = max(0.0, self.plan.estimated_wall_s() - elapsed)
        eta = max([eta] + [a["eta_s"] for a in active if a["eta_s"] is not None])
        return Progress(
            runs_total=len(self.plan.runs),
            runs_settled=len(self.reported),
            flops_total=self.plan.shared_flops,
            flops_done=self.plan.shared_flops - remaining,
            elapsed_s=elapsed,
            eta_s=eta,
            active=active,
        )
