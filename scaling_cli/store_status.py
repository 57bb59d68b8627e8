"""What a results directory holds right now: runs per state, compute spent and remaining, failed runs and
the progress of unfinished ones, read from the store (what `scale status` and the report show)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from scaling_cli.errors import StoreError
from scaling_cli.store import Store


def status(root: str | Path) -> dict:
    """Counts per state, compute spent and remaining, the failed runs with their errors, `progress` of every
    unsettled run that has trained at least to its first evaluation (running, or interrupted and resumable
    from its checkpoint), and `tables`: how runs.parquet / curves.parquet disagree with the run files (empty
    when they agree)."""
    store = Store(root)
    if not store.root.is_dir():
        raise StoreError(str(root), "directory", "not found")
    plan = store.read_plan()
    if not plan and not store.runs_dir.is_dir():
        raise StoreError(str(root), "directory", "not a results directory (no plan.json or runs/)")
    rows = {row["run_id"]: row for row in store.rows()}
    counts = {state: 0 for state in ("done", "diverged", "failed", "running", "pending")}
    spent = remaining = 0.0
    progress = []
    for run in plan:
        row = rows.get(run["run_id"])
        if row is not None:
            counts[row["status"]] += 1
            spent += run.get("cost_flops", run["flops"])
            continue
        unit = run.get("unit", run["run_id"])
        state = "running" if store.is_claimed(unit) else "pending"
        counts[state] += 1
        remaining += run.get("cost_flops", run["flops"])
        partial = store.run_progress(run, "running" if state == "running" else "interrupted")
        if partial is not None:
            progress.append(partial)
    planned = {run["run_id"] for run in plan}
    for run_id, row in rows.items():  # runs of an earlier version of the spec (a merged directory)
        if run_id not in planned:
            counts[row["status"]] += 1
            spent += _own_flops(store, row)
    failed = [
        {"run_id": r["run_id"], "error": r.get("error") or "", "attempts": r.get("attempts")}
        for r in rows.values()
        if r["status"] == "failed"
    ]
    return {
        "root": str(store.root),
        "tables": store.table_problems(),
        "planned": len(plan),
        "counts": counts,
        "flops_spent": spent,
        "flops_remaining": remaining,
        "failed": failed,
        "progress": progress,
    }


def _own_flops(store: Store, row: dict) -> float:
    """The compute a settled run added: for a WSD cooldown branch only its cooldown, since its trunk's row
    already holds the steps they share (its own flops column counts them again)."""
    flops = _finite(row.get("flops"))
    if not row.get("branch_of"):
        return flops
    from scaling_cli.model import ModelConfig
    from scaling_cli.train.config import TrainConfig, plan_steps

    try:
        config = json.loads((store.run_dir(row["run_id"]) / "config.json").read_text())
        steps = plan_steps(TrainConfig(**config["train"]), ModelConfig(**config["model"]))
    except (OSError, ValueError, KeyError, TypeError):  # no readable config: count the row as it stands
        return flops
    return flops * (steps.total_steps - steps.decay_start) / steps.total_steps


def _finite(value: Any) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return 0.0
    return value if math.isfinite(value) else 0.0
