"""The results directory of one sweep: run claims (file locks), atomic row files, compaction to parquet, status.

Layout (see docs/internals.md): `spec.toml`, `plan.json` (every planned run, written by the sweep),
`runs/<run_id>/` with `config.json` (the run's full configuration), `row.json` (its final row, written
once it is done, diverged or failed), `attempts.jsonl` (one line per start of the run), `curve.jsonl`
and checkpoints (written by the trainer),
and `runs.parquet` / `curves.parquet`, rebuilt from the row files after every finished run. Every file a
reader may see is written by `scaling_cli.atomic` (temporary name, fsync, rename), so it is either old or
new, never partial, and a crash loses at most the run in progress.
"""

from __future__ import annotations

import json
import math
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
from filelock import FileLock, Timeout

from scaling_cli import atomic
from scaling_cli.errors import StoreError

RUNS_COLUMNS = [
    "run_id",
    "sweep",
    "dataset",
    "tokenizer",
    "vocab_size",
    "n_layer",
    "d_model",
    "n_head",
    "seq_len",
    "params",
    "params_nonembed",
    "tokens",
    "flops",
    "flops_6nd",
    "tokens_per_param",
    "lr",
    "batch_size",
    "schedule",
    "seed",
    "train_loss",
    "val_loss",
    "val_bpb",
    "status",
    "wall_s",
    "tokens_per_s",
    "device",
    "steps",
    "diverged_step",
    "branch_of",
    "bpb_lz4",
    "bpb_lz4hc",
    "bpb_zlib",
    "bpb_bz2",
    "bpb_lzma",
    "entropy_rate_bits",
    "bytes_per_token",
    "attempts",
    "error",
    "finished_at",
]
CURVES_COLUMNS = ["run_id", "step", "tokens", "flops", "lr", "train_loss", "val_loss", "val_bpb", "wall_s"]
FINAL_STATES = ("done", "diverged", "failed")


class Store:
    """One results directory. Safe to use from several processes (and machines sharing the directory)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    # -- paths --
    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    def run_dir(self, run_id: str) -> Path:
        return self.runs_dir / run_id

    @property
    def runs_parquet(self) -> Path:
        return self.root / "runs.parquet"

    @property
    def curves_parquet(self) -> Path:
        return self.root / "curves.parquet"

    # -- setup --
    def init(self, spec_text: str, plan: list[dict]) -> None:
        """Create the directory, save the spec as run and the plan (every run with its compute)."""
        try:
            self.runs_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(str(self.root), "directory", f"cannot create it: {exc.strerror}") from None
        atomic.write_text(self.root / "spec.toml", spec_text)
        atomic.write_json(self.root / "plan.json", {"version": 1, "runs": plan})

    def read_plan(self) -> list[dict]:
        path = self.root / "plan.json"
        if not path.is_file():
            return []
        try:
            return json.loads(path.read_text())["runs"]
        except (OSError, ValueError, KeyError) as exc:
            raise StoreError(str(path), "plan", f"unreadable: {exc}") from None

    # -- claims --
    @contextmanager
    def claim(self, unit_id: str) -> Iterator[bool]:
        """Try to take the unit's lock without waiting; yields True when this process holds it.

        The lock is an OS file lock, so it disappears with its holder: a unit whose worker was killed
        can be claimed again at once.
        """
        self.run_dir(unit_id).mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.run_dir(unit_id) / "claim.lock"), timeout=0)
        try:
            lock.acquire()
        except Timeout:
            yield False
            return
        try:
            yield True
        finally:
            lock.release()

    def is_claimed(self, unit_id: str) -> bool:
        path = self.run_dir(unit_id) / "claim.lock"
        if not path.exists():
            return False
        with self.claim(unit_id) as mine:
            return not mine

    # -- rows and attempts --
    def read_row(self, run_id: str) -> dict | None:
        path = self.run_dir(run_id) / "row.json"
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise StoreError(str(path), "row", f"unreadable: {exc}") from None

    def state(self, run_id: str) -> str:
        row = self.read_row(run_id)
        return row["status"] if row else "pending"

    def write_row(self, run_id: str, row: dict) -> None:
        missing = [c for c in ("run_id", "status") if c not in row]
        if missing or row["status"] not in FINAL_STATES:
            raise StoreError(str(self.run_dir(run_id)), "row", f"incomplete row (missing {missing})")
        atomic.write_json(self.run_dir(run_id) / "row.json", row)

    def write_config(self, run_id: str, config: dict) -> None:
        """The run's full configuration, for people reading the directory; written once."""
        path = self.run_dir(run_id) / "config.json"
        if not path.exists():
            atomic.write_json(path, config)

    def clear_row(self, run_id: str) -> None:
        """Forget a failed run's row before retrying it (done and diverged rows are final)."""
        (self.run_dir(run_id) / "row.json").unlink(missing_ok=True)

    def record_attempt(self, run_id: str, resumed: bool, sweep_pid: int | None = None) -> None:
        """Append one line per start of a run: the test of exactly-once and of resuming reads these."""
        line = {
            "time": time.time(),
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "sweep_pid": sweep_pid,
            "resumed": resumed,
        }
        self.run_dir(run_id).mkdir(parents=True, exist_ok=True)
        with open(self.run_dir(run_id) / "attempts.jsonl", "a") as handle:
            handle.write(json.dumps(line) + "\n")

    def attempts(self, run_id: str) -> list[dict]:
        path = self.run_dir(run_id) / "attempts.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def rows(self) -> list[dict]:
        if not self.runs_dir.is_dir():
            return []
        found = []
        for run_dir in sorted(self.runs_dir.iterdir()):
            row = self.read_row(run_dir.name) if (run_dir / "row.json").exists() else None
            if row is not None:
                found.append(row)
        return found

    def last_point(self, run_id: str) -> dict | None:
        """The newest curve point of a run (for progress displays); None before the first evaluation."""
        path = self.run_dir(run_id) / "curve.jsonl"
        try:
            with open(path, "rb") as handle:
                handle.seek(0, os.SEEK_END)
                handle.seek(max(0, handle.tell() - 4096))
                lines = handle.read().decode(errors="replace").strip().splitlines()
        except OSError:
            return None
        for line in reversed(lines):
            try:
                return json.loads(line)
            except ValueError:
                continue
        return None

    def read_curve(self, run_id: str) -> list[dict]:
        path = self.run_dir(run_id) / "curve.jsonl"
        if not path.exists():
            return []
        points = []
        for line in path.read_text().splitlines():
            try:
                points.append(json.loads(line))
            except ValueError:
                continue  # a line cut short by a crash
        return points

    # -- compaction --
    def compact(self) -> None:
        """Rebuild runs.parquet and curves.parquet from the row files, atomically and under a lock."""
        with FileLock(str(self.root / ".compact.lock")):
            rows = self.rows()
            runs = pd.DataFrame(rows)
            runs = runs.reindex(columns=RUNS_COLUMNS + [c for c in runs.columns if c not in RUNS_COLUMNS])
            curves = self._curves_frame([row["run_id"] for row in rows])
            self._write_parquet(runs, self.runs_parquet)
            self._write_parquet(curves, self.curves_parquet)

    def _curves_frame(self, run_ids: list[str]) -> pd.DataFrame:
        frames = []
        for run_id in run_ids:
            points = self.read_curve(run_id)
            if points:
                frame = pd.DataFrame(points)
                frame.insert(0, "run_id", run_id)
                frames.append(frame)
        if not frames:
            return pd.DataFrame({c: pd.Series(dtype="float64") for c in CURVES_COLUMNS}).astype({"run_id": str})
        curves = pd.concat(frames, ignore_index=True)
        return curves.reindex(columns=CURVES_COLUMNS + [c for c in curves.columns if c not in CURVES_COLUMNS])

    def _write_parquet(self, frame: pd.DataFrame, path: Path) -> None:
        atomic.write_via_path(path, lambda tmp: frame.to_parquet(tmp, index=False))


def status(root: str | Path) -> dict:
    """Counts per state, compute spent and remaining, and the failed runs with their errors."""
    store = Store(root)
    if not store.root.is_dir():
        raise StoreError(str(root), "directory", "not found")
    plan = store.read_plan()
    if not plan and not store.runs_dir.is_dir():
        raise StoreError(str(root), "directory", "not a results directory (no plan.json or runs/)")
    rows = {row["run_id"]: row for row in store.rows()}
    counts = {state: 0 for state in ("done", "diverged", "failed", "running", "pending")}
    spent = remaining = 0.0
    for run in plan:
        row = rows.get(run["run_id"])
        if row is not None:
            counts[row["status"]] += 1
            spent += run.get("cost_flops", run["flops"])
            continue
        unit = run.get("unit", run["run_id"])
        counts["running" if store.is_claimed(unit) else "pending"] += 1
        remaining += run.get("cost_flops", run["flops"])
    planned = {run["run_id"] for run in plan}
    for run_id, row in rows.items():  # runs of an earlier version of the spec
        if run_id not in planned:
            counts[row["status"]] += 1
            spent += _finite(row.get("flops"))
    failed = [
        {"run_id": r["run_id"], "error": r.get("error") or "", "attempts": r.get("attempts")}
        for r in rows.values()
        if r["status"] == "failed"
    ]
    return {
        "root": str(store.root),
        "planned": len(plan),
        "counts": counts,
        "flops_spent": spent,
        "flops_remaining": remaining,
        "failed": failed,
    }


def _finite(value: Any) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return 0.0
    return value if math.isfinite(value) else 0.0
