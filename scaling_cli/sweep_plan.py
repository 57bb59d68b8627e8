"""Plan a sweep: its units of work (one run, or a WSD trunk with a cooldown branch per smaller budget), their
compute, memory and wall-time estimate, and the checks of a results directory before anything trains.
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from scaling_cli.errors import SpecError, StoreError
from scaling_cli.plan import RunPlan, Sweep
from scaling_cli.store import NOT_RETRAINED, Store

# Conservative training FLOP rates for the wall-time estimate when the store has no measured runs yet:
# small models reach a fraction of the matmul peak (design notes: ~190 GFLOP/s fp32 on 2 cores).
FALLBACK_FLOPS_PER_S = {"cpu_per_core": 25e9, "cuda": 50e12, "mps": 2e12}
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


def shared_cost(run: RunPlan, branch_step: int) -> float:
    """The compute a run adds when it branches from a longer WSD trunk at `branch_step` (0: it trains alone):
    every step after the branch point, none of the steps it shares."""
    return run.flops - run.flops_per_token * branch_step * run.train.batch_size * run.model.seq_len


def branch_cost(run: RunPlan) -> float:
    """The compute a WSD run adds as a branch of a longer trunk (its cooldown); any other run's full compute."""
    from scaling_cli.train import wsd_branch_step

    return shared_cost(run, int(wsd_branch_step(run.train, run.model)) if run.train.schedule == "wsd" else 0)


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
            planned.append(
                PlannedRun(
                    run=run,
                    unit_id=unit.unit_id,
                    branch_of=branch_of,
                    branch_step=step,
                    cost_flops=shared_cost(run, step),
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
