"""The results directory of one sweep: run claims (file locks), atomic row files, compaction to parquet, status.

Layout (see docs/internals.md): `spec.toml` (the spec last run), `specs/` (every spec run here, oldest first,
so a directory that merged grids remembers each), `plan.json` (every planned run, written by the sweep),
`runs/<run_id>/` with `config.json` (the run's full configuration), `row.json` (its final row, written
once it is done, diverged or failed), `attempts.jsonl` (one line per start of the run), `curve.jsonl`
and checkpoints (written by the trainer),
and `runs.parquet` / `curves.parquet`, to which every settled run's row and curve are appended (rebuilt from
the row files when a table is missing, damaged or disagrees with them). Every file a
reader may see is written by `scaling_cli.atomic` (temporary name, fsync, rename), so it is either old or
new, never partial, and a crash loses at most the run in progress.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import secrets
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
from filelock import FileLock, Timeout

from scaling_cli import atomic
from scaling_cli.config.train import step_count
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
RECORDED_STATES = ("done", "diverged", "failed")  # a run that ended: it has a row, runs.parquet holds it
NOT_RETRAINED = ("done", "diverged")  # recorded states no sweep trains again (a failed run is retried)
SPECS = "specs"  # every spec run in the directory, as `<NNN>-<sha256 prefix>.toml` in the order first run


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
        self.keep_spec(spec_text)
        atomic.write_text(self.root / "spec.toml", spec_text)
        atomic.write_json(self.root / "plan.json", {"version": 1, "runs": plan})

    def keep_spec(self, spec_text: str) -> None:
        """Add the spec to specs/ unless it is there, after the spec.toml it replaces (a directory from
        before specs/ existed holds only that one)."""
        kept = self.specs()
        saved = self.root / "spec.toml"
        for text in ([saved.read_text()] if saved.is_file() else []) + [spec_text]:
            if text not in kept:
                digest = hashlib.sha256(text.encode()).hexdigest()[:12]
                atomic.write_text(self.root / SPECS / f"{len(kept) + 1:03d}-{digest}.toml", text)
                kept.append(text)

    def specs(self) -> list[str]:
        """The text of every spec run in this directory, oldest first."""
        return [path.read_text() for path in sorted((self.root / SPECS).glob("*.toml"))]

    def check_could_write(self) -> None:
        """StoreError where check_writable would fail, found without creating anything (for a dry run): the
        nearest existing ancestor must be a directory this process may write in."""
        existing = self.root.absolute()
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if not existing.is_dir():
            raise StoreError(str(self.root), "directory", f"not writable: {existing} is not a directory")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise StoreError(str(self.root), "directory", f"not writable: no write permission in {existing}")

    def check_writable(self) -> None:
        """StoreError unless this process can create the directory and files in it (read-only storage, a
        path under a file, missing permissions), checked before a sweep changes anything."""
        # A name of this process's own: two sweeps starting at once removed each other's shared probe file.
        probe = self.root / f".write-test-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            self.runs_dir.mkdir(parents=True, exist_ok=True)
            atomic.write_bytes(probe, b"")
            probe.unlink()
        except OSError as exc:
            raise StoreError(str(self.root), "directory", f"not writable: {exc.strerror or exc}") from None

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
        try:
            with self.claim(unit_id) as mine:
                return not mine
        except OSError:  # a read-only directory: no process can be training there
            return False

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
        if missing or row["status"] not in RECORDED_STATES:
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

    def record_attempt(
        self, run_id: str, resumed: bool, sweep_pid: int | None = None, threads: int | None = None
    ) -> None:
        """Append one line per start of a run (host, process, whether it resumed, the CPU threads it trains
        with): the tests of exactly-once, of resuming and of the thread policy read these."""
        line = {
            "time": time.time(),
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "sweep_pid": sweep_pid,
            "resumed": resumed,
            "threads": threads,
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

    def run_progress(self, run: dict, state: str) -> dict | None:
        """How far an unsettled run of the plan got: its newest curve point and the step its checkpoint
        would resume from; None when it has neither."""
        point = self.last_point(run["run_id"])
        resumes_at = self.checkpoint_step(run["run_id"])
        if point is None and resumes_at is None:
            return None
        point = point or {}
        steps = step_count(run["tokens"], int(run["batch_size"]) * int(run["seq_len"]))
        return {
            "run_id": run["run_id"],
            "state": state,
            "step": point.get("step"),
            "steps": steps,
            "tokens": point.get("tokens"),
            "tokens_total": run["tokens"],
            "train_loss": point.get("train_loss"),
            "val_loss": point.get("val_loss"),
            "wall_s": point.get("wall_s"),
            "checkpoint_step": resumes_at,
        }

    def checkpoint_step(self, run_id: str) -> int | None:
        """The step a run's checkpoint.pt holds (what an interrupted run resumes from), or None."""
        path = self.run_dir(run_id) / "checkpoint.pt"
        if not path.is_file():
            return None
        import torch  # only for directories with an unsettled run that has a checkpoint

        try:
            return int(torch.load(path, map_location="cpu", weights_only=True, mmap=True)["step"])
        except Exception:  # noqa: BLE001 - being replaced, or damaged: the run resumes or restarts anyway
            return None

    # -- compaction --
    def compact(self, run_ids: list[str] | None = None) -> None:
        """Bring runs.parquet and curves.parquet up to date, atomically and under a lock.

        With `run_ids` (the runs just settled) only their rows and curves are read and appended to the
        tables, replacing any older row of the same run: a sweep reads each run's files once, so compaction
        costs O(runs) in parsing over a sweep instead of O(runs^2). Without `run_ids`, or when a table is
        missing or unreadable, both tables are rebuilt from every row file.
        """
        with FileLock(str(self.root / ".compact.lock")):
            tables = None if run_ids is None else self._read_tables()
            if tables is None:
                rows = self.rows()
                runs = _runs_frame(rows)
                curves = self._curves_frame([row["run_id"] for row in rows])
            else:
                runs, curves = self._appended(*tables, run_ids)
            self._write_parquet(runs, self.runs_parquet)
            self._write_parquet(curves, self.curves_parquet)

    def _appended(self, runs: pd.DataFrame, curves: pd.DataFrame, run_ids: list[str]):
        rows = [row for row in (self.read_row(run_id) for run_id in run_ids) if row is not None]
        fresh = [row["run_id"] for row in rows]
        runs = _concat(runs[~runs["run_id"].isin(fresh)], _runs_frame(rows))
        runs = runs.sort_values("run_id", kind="stable", ignore_index=True)
        curves = _concat(curves[~curves["run_id"].isin(fresh)], self._curves_frame(fresh))
        curves = curves.sort_values("run_id", kind="stable", ignore_index=True)
        return _ordered(runs, RUNS_COLUMNS), _ordered(curves, CURVES_COLUMNS)

    def _read_tables(self) -> tuple[pd.DataFrame, pd.DataFrame] | None:
        try:
            runs = pd.read_parquet(self.runs_parquet)
            curves = pd.read_parquet(self.curves_parquet)
        except Exception:  # noqa: BLE001 - missing or damaged: the caller rebuilds from the row files
            return None
        if "run_id" not in runs.columns or "run_id" not in curves.columns:
            return None
        return runs, curves

    def table_problems(self) -> list[str]:
        """How runs.parquet and curves.parquet disagree with the row and curve files; empty when they agree."""
        rows = {row["run_id"]: row for row in self.rows()}
        tables = self._read_tables()
        if tables is None:
            if not rows and not self.runs_parquet.exists() and not self.curves_parquet.exists():
                return []
            return [_unreadable_tables(self.runs_parquet, self.curves_parquet)]
        runs, curves = tables
        problems = _row_disagreements(runs, rows)
        expected = {run_id: len(self.read_curve(run_id)) for run_id in rows}
        found = curves["run_id"].value_counts().to_dict()
        wrong = sorted(r for r in set(expected) | set(found) if expected.get(r, 0) != found.get(r, 0))
        if wrong:
            problems.append(f"curves.parquet: {len(wrong)} runs' points differ from their curve.jsonl ({_few(wrong)})")
        return problems

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
        return _ordered(pd.concat(frames, ignore_index=True), CURVES_COLUMNS)

    def _write_parquet(self, frame: pd.DataFrame, path: Path) -> None:
        atomic.write_via_path(path, lambda tmp: frame.to_parquet(tmp, index=False))


def _runs_frame(rows: list[dict]) -> pd.DataFrame:
    return _ordered(pd.DataFrame(rows), RUNS_COLUMNS)


def _ordered(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    return frame.reindex(columns=columns + [c for c in frame.columns if c not in columns])


def _concat(old: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    parts = [frame for frame in (old, new) if len(frame)]
    if not parts:
        return old
    return pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0].reset_index(drop=True)


def _row_disagreements(runs: pd.DataFrame, rows: dict[str, dict]) -> list[str]:
    table = {r["run_id"]: r for r in runs[["run_id", *_VERSION_FIELDS]].to_dict("records")} if len(runs) else {}
    problems = []
    missing = sorted(set(rows) - set(table))
    extra = sorted(set(table) - set(rows))
    stale = sorted(
        r for r in set(rows) & set(table) if any(_differs(rows[r].get(f), table[r].get(f)) for f in _VERSION_FIELDS)
    )
    if missing:
        problems.append(f"runs.parquet: {len(missing)} finished runs missing ({_few(missing)})")
    if extra:
        problems.append(f"runs.parquet: {len(extra)} rows without a run row file ({_few(extra)})")
    if stale:
        problems.append(f"runs.parquet: {len(stale)} rows older than their run row file ({_few(stale)})")
    return problems


_VERSION_FIELDS = ("status", "finished_at")  # a rewritten row.json (a retried failure) changes one of these


def _differs(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return not (a == b or (math.isnan(a) and math.isnan(b)))
    return a != b and not (a is None and isinstance(b, float) and math.isnan(b))


def _unreadable_tables(*paths: Path) -> str:
    broken = [p.name for p in paths if not p.exists()]
    if broken:
        return f"{' and '.join(broken)} missing"
    return f"{paths[0].name} or {paths[1].name} unreadable"


def _few(run_ids: list[str], shown: int = 3) -> str:
    more = f", +{len(run_ids) - shown} more" if len(run_ids) > shown else ""
    return ", ".join(run_ids[:shown]) + more
