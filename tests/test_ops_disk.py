"""Sharing and disk, and progress a user can see: results files follow the umask, settled runs leave no
training states behind unless asked, a sweep's log shows each run's progress, and `scale status` shows how far
an interrupted run got."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest
from conftest import REPO, SCALE, scale_in_process

from scaling_cli.store import Store

TINY = REPO / "sweeps" / "markov-tiny.toml"


def sweep_with_umask(out: Path, umask: int, *extra: str, spec: Path = TINY) -> subprocess.CompletedProcess:
    # A real process: the umask is the process's, and the sweep's workers must follow the sweep's.
    command = f"umask {umask:03o} && exec {SCALE} sweep {spec} --out {out} --workers 2 {' '.join(extra)}"
    return subprocess.run(["sh", "-c", command], cwd=REPO, capture_output=True, text=True, timeout=300)


def files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def current_umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


@pytest.fixture(scope="module")
def default_sweep(tiny_sweep, tmp_path_factory):
    """markov-tiny swept with default options under the default umask 022: the session's sweep, which ran as
    a subprocess of this one (under its umask), else a sweep of its own."""
    if current_umask() == 0o022:
        return tiny_sweep
    out = tmp_path_factory.mktemp("disk") / "tiny"
    result = sweep_with_umask(out, 0o022)
    assert result.returncode == 0, result.stderr
    return out, result


def test_settled_runs_keep_no_checkpoint_or_trunk_state(default_sweep):
    out, _ = default_sweep
    assert [p for p in files_under(out) if p.suffix == ".pt"] == []
    assert not any(p.name == "trunk" for p in out.rglob("*"))
    # six runs of the tiny sweep: tables, rows and curves only
    assert sum(p.stat().st_size for p in files_under(out)) < 200_000


def test_results_are_readable_by_others_under_the_default_umask(default_sweep):
    out, _ = default_sweep
    for path in files_under(out):
        assert stat.S_IMODE(path.stat().st_mode) & 0o044 == 0o044, path


def test_a_sweep_log_shows_each_runs_progress_and_the_sweep_eta(tmp_path):
    # One run long enough (384 steps, seconds) for the scheduler to see it running: markov-tiny's runs now
    # often finish between two of its polls, and a run it never saw running has no progress line to print.
    spec = tmp_path / "one-run.toml"
    grid = TINY.read_text().replace("d_model = [16, 32, 48]", "d_model = [48]")
    spec.write_text(grid.replace("tokens = [12_288, 24_576]", "tokens = 196_608"))
    result = scale_in_process("sweep", spec, "--out", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    progress = [line for line in result.stdout.splitlines() if line.startswith("progress ")]
    assert progress, result.stdout
    assert all(" tok/s ETA " in line and "| sweep " in line and "ETA" in line.split("| sweep ")[1] for line in progress)


def test_keep_checkpoints_keeps_them_and_a_group_writable_umask_is_respected(tmp_path):
    one_width = tmp_path / "one-width.toml"  # one WSD unit: a trunk and its cooldown branch
    one_width.write_text(TINY.read_text().replace("d_model = [16, 32, 48]", "d_model = [16]"))
    out = tmp_path / "kept"
    result = sweep_with_umask(out, 0o002, "--keep-checkpoints", spec=one_width)
    assert result.returncode == 0, result.stderr
    run_dirs = [p for p in (out / "runs").iterdir() if p.is_dir()]
    assert all((d / "checkpoint.pt").is_file() for d in run_dirs)
    assert any((d / "trunk").is_dir() for d in run_dirs)
    for name in ("runs.parquet", "curves.parquet", "spec.toml", "plan.json"):
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o664, name
    checkpoint = next(d / "checkpoint.pt" for d in run_dirs)
    assert stat.S_IMODE(checkpoint.stat().st_mode) == 0o664


def test_status_shows_how_far_an_interrupted_run_got(tmp_path):
    spec = tmp_path / "long.toml"
    spec.write_text(
        TINY.read_text()
        .replace("d_model = [16, 32, 48]", "d_model = [32]")
        .replace("tokens = [12_288, 24_576]", "tokens = [2_000_000]")
        .replace('schedule = "wsd"', 'schedule = "cosine"')
    )
    out = tmp_path / "out"
    sweep = subprocess.Popen([SCALE, "sweep", str(spec), "--out", str(out)], cwd=REPO, stdout=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not list((out / "runs").glob("*/checkpoint.pt")) and time.time() < deadline:
            time.sleep(0.2)
        time.sleep(0.5)
    finally:
        os.kill(sweep.pid, signal.SIGKILL)
        sweep.wait()
    # The killed sweep's worker dies after it (through the forkserver): until then its claim says "running".
    (unit,) = {run["unit"] for run in json.loads((out / "plan.json").read_text())["runs"]}
    deadline = time.time() + 30
    while Store(out).is_claimed(unit) and time.time() < deadline:
        time.sleep(0.05)
    shown = scale_in_process("status", out)
    assert shown.returncode == 0, shown.stderr
    line = next(line for line in shown.stdout.splitlines() if line.startswith("interrupted"))
    assert "step " in line and "/3906 " in line and "checkpoint at step " in line, shown.stdout
