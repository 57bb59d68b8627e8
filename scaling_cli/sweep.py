"""Plan a sweep (units of work, WSD trunks and their branches, compute, wall-time estimate), run it through an
executor, record every run in the store, retry failures, and resume whatever a crash left unfinished.

The unit of work handed to an executor is a `Unit`: one run, or with schedule `wsd` a trunk (the largest
budget of runs that differ only in their budget) plus a cooldown branch per smaller budget, each branch
starting from the trunk's state at the step where its cooldown begins. A worker claims a unit through the
store's file lock, so two sweeps on one directory never train the same run.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import os
import shutil
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scaling_cli import atomic
from scaling_cli.data.repetition import repetition_fields
from scaling_cli.errors import ScaleError, SpecError, StoreError
from scaling_cli.plan import RunPlan, Sweep
from scaling_cli.store import NOT_RETRAINED, Store

# Test hook: comma-separated run ids (or prefixes of them) whose training raises every time it starts.
FAIL_RUNS_ENV = "SCALE_FAIL_RUNS"
# Conservative training FLOP rates for the wall-time estimate when the store has no measured runs yet:
# small models reach a fraction of the matmul peak (design notes: ~190 GFLOP/s fp32 on 2 cores).
FALLBACK_FLOPS_PER_S = {"cpu_per_core": 25e9, "cuda": 50e12, "mps": 2e12}
# Training FLOPs per step that each CPU thread needs to pay for itself (calibrated with bench/bench_threads.py;
# the figures are in docs/benchmarks.md, "Threads"). The value is kept higher than the calibration suggests
# on purpose: fp32 weights on a CPU differ in their last bits between thread counts, and a
# run's thread count follows the machine's load and, mid-run, the cores other units free, so giving small
# runs a second thread would make the small sweeps (markov-tiny, known-answer) differ bit for bit between
# sweeps and executors (tests/test_ops_ray.py compares local and Ray results exactly). See docs/benchmarks.md.
FLOPS_PER_THREAD = 0.35e9
# In a running unit's directory: "<cores> <sweep pid>", the cores that sweep now lets the unit use (the pid, so
# that a file left by a killed sweep is ignored).
THREAD_ALLOWANCE_NAME = "threads.allowed"
PER_RUN_OVERHEAD_S = 1.0  # process start, data loading and the final evaluation of a small run


@dataclass(frozen=True)
class Unit:
    """A trunk run and the cooldown branches that start from its saved states (none unless WSD)."""

    trunk: RunPlan
    branches: tuple[tuple[RunPlan, int], ...] = ()  # (branch run, step its cooldown starts from)

    @property
    def unit_id(self) -> str:
        return self.trunk.run_id

    @property
    def runs(self) -> list[RunPlan]:
        return [self.trunk] + [run for run, _ in self.branches]


@dataclass(frozen=True)
class PlannedRun:
    run: RunPlan
    unit_id: str
    branch_of: str  # the trunk's run id, or "" for a trunk or a lone run
    branch_step: int
    cost_flops: float  # what training it adds when its trunk is shared: the branch's cooldown only
    state: str  # done, diverged, failed, running, pending
    memory_bytes: int = 0  # estimated peak memory of training it

    def record(self) -> dict:
        return {
            **self.run.describe(),
            "unit": self.unit_id,
            "branch_of": self.branch_of,
            "branch_step": self.branch_step,
            "cost_flops": self.cost_flops,
            "state": self.state,
            "memory_bytes": self.memory_bytes,
        }


@dataclass(frozen=True)
class SweepPlan:
    spec: Sweep
    out_dir: Path
    units: tuple[Unit, ...]
    runs: tuple[PlannedRun, ...]
    flops_rate: float  # training FLOP/s assumed for the estimate
    rate_source: str  # "measured ..." or "conservative constant ..."
    workers: int

    @property
    def total_flops(self) -> float:
        """Compute of the sweep if every run trained from scratch."""
        return sum(p.run.flops for p in self.runs)

    @property
    def shared_flops(self) -> float:
        """Compute of the sweep with WSD trunks shared."""
        return sum(p.cost_flops for p in self.runs)

    @property
    def saved_flops(self) -> float:
        return self.total_flops - self.shared_flops

    @property
    def remaining_flops(self) -> float:
        return sum(p.cost_flops for p in self.runs if p.state not in NOT_RETRAINED)

    def counts(self) -> dict[str, int]:
        counts = {state: 0 for state in ("done", "diverged", "failed", "running", "pending")}
        for planned in self.runs:
            counts[planned.state] += 1
        return counts

    def estimated_wall_s(self) -> float:
        pending = [p for p in self.runs if p.state not in NOT_RETRAINED]
        overhead = PER_RUN_OVERHEAD_S * len(pending) / max(1, self.workers)
        return self.remaining_flops / self.flops_rate + overhead


# ---- planning ----


def build_units(runs: list[RunPlan]) -> list[Unit]:
    """Group WSD runs that differ only in budget into a trunk (the largest) with a branch per other budget."""
    from scaling_cli.train import wsd_branch_step

    groups: dict[str, list[RunPlan]] = defaultdict(list)
    for run in runs:
        key = run.trunk_key if run.train.schedule == "wsd" else run.run_id
        groups[key].append(run)
    units = []
    for members in groups.values():
        members.sort(key=lambda r: r.tokens)
        trunk = members[-1]
        branches = tuple((run, int(wsd_branch_step(run.train, run.model))) for run in members[:-1])
        units.append(Unit(trunk=trunk, branches=branches))
    return units


def plan_sweep(spec: Sweep, out_dir: str | Path, workers: int = 1, device: str | None = None) -> SweepPlan:
    """Every run with its state in `out_dir`, its compute with trunk sharing, and a wall-time estimate."""
    store = Store(out_dir)
    units = build_units(spec.runs())
    planned = []
    for unit in units:
        running = store.root.is_dir() and store.is_claimed(unit.unit_id)
        for run, branch_of, step in _unit_members(unit):
            state = store.state(run.run_id) if store.root.is_dir() else "pending"
            if state == "pending" and running:
                state = "running"
            tokens_per_step = run.train.batch_size * run.model.seq_len
            cost = run.flops - run.flops_per_token * step * tokens_per_step
            planned.append(
                PlannedRun(
                    run=run,
                    unit_id=unit.unit_id,
                    branch_of=branch_of,
                    branch_step=step,
                    cost_flops=cost,
                    state=state,
                    memory_bytes=peak_memory_bytes(run),
                )
            )
    rate, source = _flops_rate(store, device or spec.device)
    return SweepPlan(
        spec=spec,
        out_dir=Path(out_dir),
        units=tuple(units),
        runs=tuple(planned),
        flops_rate=rate,
        rate_source=source,
        workers=workers,
    )


def peak_memory_bytes(run: RunPlan) -> int:
    """Estimated peak memory of training a run: fp32 weights, gradients and two AdamW moments (16 bytes per
    parameter), plus the activations a backward pass keeps (per layer and token about 17 d_model values and
    2.5 n_head x seq_len attention values, Korthikanti et al. 2022 in fp32) and the logits' three copies."""
    model = run.model
    tokens = run.train.batch_size * model.seq_len
    per_token = model.n_layer * (17 * model.d_model + 2.5 * model.n_head * model.seq_len) + 3 * model.vocab_size
    return int(16 * run.params + 4 * tokens * per_token)


def available_memory_bytes(device: str) -> int | None:
    """Memory a run can use on this machine: free GPU memory on CUDA, else the OS's MemAvailable."""
    if device == "cuda":
        import torch

        return min(torch.cuda.mem_get_info(i)[0] for i in range(torch.cuda.device_count()))
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def check_memory(plan: SweepPlan, workers: int) -> None:
    """Refuse a plan with a pending run that cannot fit in this machine's memory beside the other workers."""
    device = next((p.run.train.device for p in plan.runs), "cpu")
    available = available_memory_bytes(device)
    if available is None:
        return
    share = available / max(1, min(workers, len(plan.units)))
    too_big = [p for p in plan.runs if p.state not in NOT_RETRAINED and p.memory_bytes > share]
    if too_big:
        worst = max(too_big, key=lambda p: p.memory_bytes)
        run = worst.run
        raise SpecError(
            str(plan.spec.path),
            "model",
            f"{len(too_big)} run(s) cannot fit in memory: {run.run_id} (d_model={run.model.d_model}, "
            f"n_layer={run.model.n_layer}, batch {run.train.batch_size}) needs about {_gb(worst.memory_bytes)} "
            f"to train, {_gb(share)} of {device} memory is free per worker; shrink it, use fewer --workers, "
            "or pass --force",
        )


def _gb(n: float) -> str:
    return f"{n / 1e9:.3g} GB"


def _unit_members(unit: Unit) -> list[tuple[RunPlan, str, int]]:
    members = [(unit.trunk, "", 0)]
    members += [(run, unit.trunk.run_id, step) for run, step in unit.branches]
    return members


def _flops_rate(store: Store, device: str) -> tuple[float, str]:
    """FLOP/s measured by this store's finished runs, else a conservative constant for the device."""
    rows = [r for r in store.rows() if r.get("status") == "done" and (r.get("wall_s") or 0) > 0]
    if rows:
        flops = sum(r["tokens_per_s"] * r["flops"] / r["tokens"] for r in rows)
        return flops / len(rows), f"measured: mean of {len(rows)} finished runs in this directory"
    from scaling_cli.train import resolve_device

    resolved = device if device != "auto" else resolve_device("auto").type
    if resolved == "cpu":
        cores = os.cpu_count() or 1
        rate = FALLBACK_FLOPS_PER_S["cpu_per_core"] * cores
        return rate, f"conservative constant: {rate / 1e9:.0f} GFLOP/s ({cores} CPU cores)"
    rate = FALLBACK_FLOPS_PER_S[resolved]
    return rate, f"conservative constant: {rate / 1e12:.0f} TFLOP/s per {resolved} device"


# ---- the work a worker process does ----


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


def cores_for_unit(cores: int, taken: int, starting: int, idle: float | None, largest: int) -> int:
    """Cores for a unit about to start: the cores the running units leave free, split among the units starting
    now (this one included), no more than are idle when other work shares the machine, at most `largest`."""
    share = (cores - taken) // max(1, starting)
    if idle is not None:
        share = min(share, round(idle))
    return max(1, min(largest, share))


def rebalanced_cores(given: dict[str, int], cores: int, idle: float | None, largest: int) -> dict[str, int]:
    """Cores for the units still running once others have finished: the free cores (no more than are idle when
    other work shares the machine) handed out one at a time to the unit with the fewest, each at most `largest`.
    A unit never loses cores it was given."""
    free = cores - sum(given.values())
    if idle is not None:
        free = min(free, round(idle))
    cores_now = dict(given)
    for _ in range(max(0, free)):
        unit = min(cores_now, key=cores_now.get)
        if cores_now[unit] >= largest:
            break
        cores_now[unit] += 1
    return cores_now


def thread_allowance(unit_dir: Path, run: RunPlan, given: int | None, sweep_pid: int) -> Callable[[], int | None]:
    """What a training run polls: the threads worth using out of the cores its unit may use now (the latest
    allowance file from its own sweep, else the cores the unit started with)."""
    path = unit_dir / THREAD_ALLOWANCE_NAME

    def threads_now() -> int | None:
        try:
            cores, writer = (int(word) for word in path.read_text().split())
        except (OSError, ValueError):
            cores, writer = given, sweep_pid
        return threads_for(run, cores if writer == sweep_pid else given)

    return threads_now


def threads_for(run: RunPlan, available: int | None) -> int | None:
    """CPU threads worth giving a run: one per FLOPS_PER_THREAD of work in a training step, up to `available`.

    Splitting a tiny model's small matrices over threads costs more in synchronisation than it gains, and far
    more when the cores are busy with other work.
    """
    if available is None:
        return None
    step_flops = run.flops_per_token * run.train.batch_size * run.model.seq_len
    return max(1, min(available, int(step_flops // FLOPS_PER_THREAD)))


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


# ---- running a sweep ----


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
        self.cost = {p.run.run_id: p.cost_flops for p in plan.runs}
        self.queue = [u for u in plan.units if not self._unit_settled(u)]
        self.deferred: list[tuple[float, Unit]] = []
        self.inflight: dict[cf.Future, Unit] = {}
        self.failures: dict[str, int] = defaultdict(int)
        self.given_up: set[str] = set()
        self.reported = {p.run.run_id for p in plan.runs if p.state in NOT_RETRAINED}
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
        for planned in self.plan.runs:
            run_id = planned.run.run_id
            if run_id in self.reported:
                continue
            row = self.store.read_row(run_id)
            if row is not None and (row["status"] in NOT_RETRAINED or planned.unit_id in self.given_up):
                self.reported.add(run_id)
                self.flops_done_here += self.cost[run_id]
                self.emit("run", row)
        self.emit("progress", self._progress())

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
        remaining = sum(self.cost[r] for r in self.cost if r not in self.reported)
        if self.flops_done_here > 0:
            eta = remaining / (self.flops_done_here / elapsed)
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


def check_out_dir(out_dir: Path, spec: Sweep, plan: SweepPlan | None = None) -> dict | None:
    """Refuse to mix two different sweeps in one directory (its spec.toml must carry the same name), and
    compare a changed grid with the one planned there before.

    A changed grid is merged run by run: a run id names the same training wherever it appears, so finished
    runs are kept and new ones added. Two different grids must not train at once, though: their units group
    runs differently, so their claims would not keep one run from being trained twice. Returns None when the
    grid is unchanged, else {"kept", "added", "left_out"} run counts.
    """
    saved = out_dir / "spec.toml"
    if not saved.is_file():
        return None
    from scaling_cli.spec import tomllib

    try:
        name = tomllib.loads(saved.read_text()).get("name")
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        problem = f"unreadable, so it cannot tell which sweep this directory holds ({exc}); use another --out"
        raise StoreError(str(out_dir), "spec.toml", problem) from None
    if name != spec.name:
        raise StoreError(str(out_dir), "spec.toml", f"holds sweep '{name}', not '{spec.name}'; use another --out")
    if plan is None:
        return None
    store = Store(out_dir)
    before = {run["run_id"]: run.get("unit", run["run_id"]) for run in store.read_plan()}
    now = {p.run.run_id for p in plan.runs}
    if set(before) == now:
        return None
    busy = sorted({unit for unit in before.values() if unit not in plan_unit_ids(plan) and store.is_claimed(unit)})
    if busy:
        raise StoreError(
            str(out_dir),
            "spec.toml",
            f"a sweep of another grid of '{spec.name}' is training here (unit {busy[0]}); "
            "wait for it to finish, or use another --out",
        )
    return {"kept": len(now & set(before)), "added": len(now - set(before)), "left_out": len(set(before) - now)}


def plan_unit_ids(plan: SweepPlan) -> set[str]:
    return {unit.unit_id for unit in plan.units}
