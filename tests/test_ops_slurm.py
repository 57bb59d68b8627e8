"""`scale sweep --executor slurm` against a real one-node Slurm cluster (munged, slurmctld, slurmd started here):
rows equal the local executor's, exactly once; a job signalled before its time limit saves its run's state,
is requeued and resumes to the row an uninterrupted run writes; bad Slurm options are one line and exit 2.

Without the Slurm packages these tests skip, except in CI (CI=true), where `make test` installs them
(.ci/install-slurm) and a missing Slurm is a failure. The slow tests' scenarios run on the cluster at once (one
module fixture starts them; each test then asserts on its own), so that their waits on Slurm overlap."""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import functools
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from conftest import REPO, SCALE, Ran, scale_in_process
from slurm_cluster import missing_binaries, running_cluster

from scaling_cli.store import Store

TINY = REPO / "sweeps" / "markov-tiny.toml"
COMPARED = ["run_id", "status", "steps", "tokens", "train_loss", "val_loss", "val_bpb"]
# A unit's job trains with its --cpus-per-task threads, the local run with the cores it was given: fp32 sums
# in another order differ in their last bits.
THREAD_NOISE = 1e-5


def test_a_stop_request_saves_the_state_at_that_step_and_the_resumed_run_retraces_the_uninterrupted_one(tmp_path):
    """The hook the Slurm job's signal handler uses, without Slurm: stop at a step, resume, same curve."""
    from scaling_cli.data import DataOptions, prepare
    from scaling_cli.model import ModelConfig
    from scaling_cli.train import CURVE_NAME, TrainConfig, train_run
    from scaling_cli.train.stop import STOP_REQUESTED, StopRequested

    data = prepare("markov", DataOptions(markov_bytes=50_000, val_min_bytes=8_192), cache_dir=tmp_path / "cache")
    model = ModelConfig(d_model=16, n_layer=1, n_head=1, seq_len=16)
    train = TrainConfig(tokens=40 * 128, batch_size=8, lr=3e-3, eval_every=4, eval_batches=1, checkpoint_every=1000,
                        device="cpu", dtype="fp32", threads=1)  # fmt: skip
    whole = train_run(model, train, data, tmp_path / "whole")

    def stop_after_step_12(point: dict) -> None:
        if point["step"] == 12:
            STOP_REQUESTED.set()

    with pytest.raises(StopRequested) as stopped:
        train_run(model, train, data, tmp_path / "cut", on_point=stop_after_step_12)
    STOP_REQUESTED.clear()
    assert stopped.value.step == 12 and (tmp_path / "cut" / "checkpoint.pt").is_file()
    resumed = train_run(model, train, data, tmp_path / "cut")
    assert (resumed.val_loss, resumed.train_loss, resumed.steps) == (whole.val_loss, whole.train_loss, whole.steps)
    assert (tmp_path / "cut" / CURVE_NAME).read_text().count("\n") == (
        tmp_path / "whole" / CURVE_NAME
    ).read_text().count("\n")


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    missing = missing_binaries()
    if missing:
        message = f"Slurm is not installed ({', '.join(missing)} missing): apt-get install slurmctld slurmd munge"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message}; in CI `make test` installs it with .ci/install-slurm")
        pytest.skip(message)
    with running_cluster(tmp_path_factory.mktemp("slurm")) as cluster:
        yield cluster


def test_command_line_options_override_the_spec_slurm_table_and_become_sbatch_parameters(tmp_path):
    from scaling_cli.executors import slurm_options_for
    from scaling_cli.spec import load_spec

    spec = tmp_path / "cluster.toml"
    spec.write_text(TINY.read_text() + '\n[slurm]\npartition = "gpu"\ntime = 120\naccount = "lab"\n')
    table = load_spec(spec).slurm
    chosen = slurm_options_for(table, {"partition": None, "time": 1, "cpus_per_task": 4})
    assert (chosen.partition, chosen.time, chosen.account, chosen.cpus_per_task) == ("gpu", 1, "lab", 4)
    pytest.importorskip("submitit")
    from scaling_cli.executors.slurm import sbatch_parameters

    parameters = sbatch_parameters(chosen)
    assert parameters["partition"] == "gpu" and parameters["account"] == "lab" and parameters["time"] == 1
    assert parameters["signal_delay_s"] == 30 and "gpus_per_task" not in parameters  # a 1-minute job: warned at 30 s
    assert sbatch_parameters(table)["signal_delay_s"] == 90


LONG_RUN = """
name = "slurm-requeue"
dataset = "markov"
device = "cpu"

[data]
markov_order = 1
markov_alphabet = 16
markov_bytes = 200_000
val_min_bytes = 16_384

[model]
d_model = 32
n_layer = 2
head_dim = 16
seq_len = 32

[train]
tokens = 204_800  # 400 steps of 512 tokens: a few seconds, long enough to be signalled mid-way
batch_size = 16
lr = 1e-2
schedule = "cosine"
warmup_tokens = 2_048
checkpoint_every = 100_000  # none before the end: a resume can only start from the state saved on the signal

[eval]
every = 40
batches = 2
"""


@dataclass
class Acted:
    """What a scenario left: its results directory, the exit and output of its `scale sweep --executor slurm`,
    and for the scenarios that act on the running job, that job's id, its run's directory and the timings."""

    out: Path
    returncode: int
    stdout: str
    stderr: str
    job: str = ""
    run_dir: Path | None = None
    timings: str = ""
    reference: Ran | None = None  # the local sweep it is compared with, where there is one


@dataclass(frozen=True)
class Scenario:
    """A slow test's part: `on_slurm(env, folder)` in a thread of its own, and `here(folder)`, the local sweep
    its rows are compared with, trained meanwhile in this process's main thread (where scale_in_process must run:
    it swaps the process's os.environ and output), in workers forked from the forkserver that has the imports."""

    on_slurm: Callable[[dict, Path], Acted]
    here: Callable[[Path], Ran] | None = None


@pytest.fixture(scope="module")
def slurm_runs(slurm, request, tmp_path_factory):
    """The scenarios (SCENARIOS) of this module's selected tests, all started at once on the cluster, whose node
    has CPUs for all of their jobs: a job's start, Slurm's requeue delay and the wait for a missing result then
    overlap instead of adding up (measured, one after the other: 121 s of test time on the idle machine, 228 s
    at load 6). Each test asserts on what its own scenario left, in its own results directory."""
    # Read once, here: scale_in_process, in the tests that run meanwhile, swaps os.environ and the working directory.
    env = {**os.environ, **slurm.env}
    names = [item.name for item in request.session.items if item.module is request.module and item.name in SCENARIOS]
    folders = {name: tmp_path_factory.mktemp("scenario") for name in names}
    with cf.ThreadPoolExecutor(max_workers=max(len(names), 1), thread_name_prefix="slurm-scenario") as pool:
        on_slurm = {name: pool.submit(SCENARIOS[name].on_slurm, env, folders[name]) for name in names}
        here = {name: SCENARIOS[name].here(folders[name]) for name in names if SCENARIOS[name].here}
        if EXACTLY_ONCE_TEST in names:
            request.getfixturevalue("tiny_sweep")  # that test's local rows: trained meanwhile, if not yet there
        yield {name: (on_slurm[name], here.get(name)) for name in names}


@pytest.fixture
def scenario(slurm_runs, request) -> Acted:
    """What this test's scenario left once it has ended (its error, when it failed, is raised here)."""
    on_slurm, reference = slurm_runs[request.node.name]
    return dataclasses.replace(on_slurm.result(), reference=reference)


def _requeue_spec(folder: Path, ranks: int, name: str) -> Path:
    spec = folder / name
    spec.write_text(LONG_RUN.replace("batch_size = 16", f"batch_size = 16\ndata_parallel = {ranks}"))
    return spec


def _requeue_here(ranks: int, folder: Path) -> Ran:
    """The uninterrupted local sweep of the requeued one's spec (a copy of it: the other thread reads its own)."""
    spec = _requeue_spec(folder, ranks, "local.toml")
    return scale_in_process("sweep", spec, "--out", folder / "local", "--workers", "1")


def _requeue_mid_run(ranks: int, env: dict, tmp_path: Path) -> Acted:
    """Signal the job on Slurm once its run has a curve point; its `scontrol` exits late."""
    spec = _requeue_spec(tmp_path, ranks, "requeue.toml")
    out = tmp_path / "slurm"
    env = _with_a_lingering_scontrol(env, tmp_path)
    started = time.monotonic()
    sweep = _scale(env, "sweep", spec, "--executor", "slurm", "--out", out, "--time", "5")
    try:
        run_dir = _wait_for_training(out, sweep)
        signalled = time.monotonic()
        job = _first_job(out)
        # What Slurm sends `--signal` seconds before a job's time limit (and on preemption): submitit's signal.
        # Sent here rather than by a 1-minute limit: Slurm ticks every 30 s, so that signal comes 1-25 s after
        # the start, sometimes before Python has a handler (measured: a job killed 1 s in by its own warning).
        subprocess.run(["scancel", "--signal=USR2", job], check=True, env=env)
        stdout, stderr = sweep.communicate(timeout=300)
        finished = time.monotonic()
    finally:
        sweep.kill()
    timings = f"first curve point {signalled - started:.1f} s after submitting, row {finished - signalled:.1f} s after"
    return Acted(out, sweep.returncode, stdout, stderr, job, run_dir, timings + " the signal")


def _with_a_lingering_scontrol(env: dict, folder: Path) -> dict:
    """`env` with a `scontrol` first on PATH that runs the real one, then takes 2 s to exit, as on a loaded
    machine: Slurm SIGTERMs the whole job on `scontrol requeue`, and once failed a job there by killing that
    `scontrol` before it exited (CI, 2026-12-06). 2 s is well inside the test cluster's KillWait of 5 s."""
    lingering = folder / "bin"
    lingering.mkdir()
    (lingering / "scontrol").write_text(f'#!/bin/sh\n"{shutil.which("scontrol")}" "$@"; rc=$?; sleep 2; exit $rc\n')
    (lingering / "scontrol").chmod(0o755)
    return {**env, "PATH": f"{lingering}{os.pathsep}{env['PATH']}"}


def _lose_the_result(env: dict, tmp_path: Path) -> Acted:
    """Kill the job's Python once its run has a curve point, as the kernel's OOM killer would."""
    spec = tmp_path / "cancelled.toml"
    spec.write_text(LONG_RUN)
    out = tmp_path / "slurm"
    sweep = _scale(env, "sweep", spec, "--executor", "slurm", "--out", out, "--retries", "0")
    try:
        run_dir = _wait_for_training(out, sweep)
        job = _first_job(out)
        # No signal to save on, no result, no requeue. (scancel without cgroups killed srun but once left the
        # task running to the end.)
        os.kill(Store(out).attempts(run_dir.name)[-1]["pid"], signal.SIGKILL)
        stdout, stderr = sweep.communicate(timeout=300)
    finally:
        sweep.kill()
    return Acted(out, sweep.returncode, stdout, stderr, job, run_dir)


def _sweep_markov_tiny(env: dict, tmp_path: Path) -> Acted:
    out = tmp_path / "slurm"
    started = time.monotonic()
    sweep = _scale(env, "sweep", TINY, "--executor", "slurm", "--out", out, "--time", "5")
    stdout, stderr = sweep.communicate(timeout=600)
    return Acted(out, sweep.returncode, stdout, stderr, timings=f"{time.monotonic() - started:.1f} s")


def _scale(env: dict, *args: str | Path) -> subprocess.Popen:
    """A real `scale` process, given its whole environment (scenarios run beside tests that change os.environ)."""
    return subprocess.Popen(
        [SCALE, *map(str, args)], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _first_job(out: Path) -> str:
    """The id of the (only) job submitted so far: its folder under <out>/slurm/."""
    return next(p.name for p in (out / "slurm").iterdir() if p.is_dir())


def _wait_for_training(out: Path, sweep: subprocess.Popen, timeout_s: float = 180.0) -> Path:
    """The run's directory once its curve has a point before the last (the job is mid-way through training)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert sweep.poll() is None, sweep.communicate()
        for curve in (out / "runs").glob("*/curve.jsonl") if (out / "runs").is_dir() else []:
            points = [json.loads(line) for line in curve.read_text().splitlines() if line.strip()]
            if points and points[-1]["step"] < 400:
                return curve.parent
        time.sleep(0.05)
    raise AssertionError("the job did not start training in time")


REQUEUE_TEST = "test_a_job_signalled_before_its_time_limit_is_requeued_and_resumes_to_the_same_row"
EXACTLY_ONCE_TEST = "test_a_sweep_on_slurm_writes_the_local_rows_exactly_once"
SCENARIOS = {  # a test's name -> its scenario
    f"{REQUEUE_TEST}[1]": Scenario(functools.partial(_requeue_mid_run, 1), functools.partial(_requeue_here, 1)),
    f"{REQUEUE_TEST}[2]": Scenario(functools.partial(_requeue_mid_run, 2), functools.partial(_requeue_here, 2)),
    "test_a_job_that_ends_without_a_result_fails_its_runs_with_its_log_named": Scenario(_lose_the_result),
    EXACTLY_ONCE_TEST: Scenario(_sweep_markov_tiny),
}


@pytest.mark.slow
@pytest.mark.parametrize("ranks", [1, 2])
def test_a_job_signalled_before_its_time_limit_is_requeued_and_resumes_to_the_same_row(scenario, ranks):
    """Also for a data-parallel run (2 gloo ranks): the job relays the stop to its ranks, which save at one
    step; with no periodic checkpoint, the resumed attempt can only start from that state."""
    out, job, tmp_path = scenario.out, scenario.job, scenario.out.parent
    assert scenario.reference.returncode == 0, scenario.reference.stderr
    assert scenario.returncode == 0, scenario.stderr + (out / "slurm" / job / f"{job}_0_log.err").read_text()
    attempts = Store(out).attempts(scenario.run_dir.name)
    log = "".join((out / "slurm" / job / f"{job}_0_log.{kind}").read_text() for kind in ("out", "err"))
    print(f"requeue: {scenario.timings}, {len(attempts)} attempts\n{scenario.stdout}")
    assert "state saved; requeueing" in log, log
    assert "retry" not in scenario.stdout and [p.name for p in (out / "slurm").iterdir() if p.is_dir()] == [job], log
    assert len(attempts) >= 2 and attempts[-1]["resumed"], attempts
    assert set(pd.read_parquet(out / "runs.parquet").data_parallel) == {ranks}

    columns = COMPARED + ["flops", "params"]
    local = pd.read_parquet(tmp_path / "local" / "runs.parquet")[columns]
    remote = pd.read_parquet(out / "runs.parquet")[columns]
    pd.testing.assert_frame_equal(local, remote, check_exact=False, rtol=THREAD_NOISE)
    local_curve = pd.read_parquet(tmp_path / "local" / "curves.parquet").sort_values("step", ignore_index=True)
    remote_curve = pd.read_parquet(out / "curves.parquet").sort_values("step", ignore_index=True)
    assert list(local_curve.step) == list(remote_curve.step)  # the resumed curve has each point once
    pd.testing.assert_series_equal(local_curve.val_loss, remote_curve.val_loss, rtol=THREAD_NOISE)


@pytest.mark.slow
def test_a_job_that_ends_without_a_result_fails_its_runs_with_its_log_named(scenario):
    log = scenario.out / "slurm" / scenario.job / f"{scenario.job}_0_log.err"
    assert scenario.returncode == 1, scenario.stderr
    assert f"slurm job {scenario.job} ended without a result; its log: {log}" in scenario.stderr, scenario.stderr
    assert log.is_file(), log


@pytest.mark.slow
def test_a_sweep_on_slurm_writes_the_local_rows_exactly_once(scenario, slurm, tiny_sweep):
    """Its scenario and the session's markov-tiny (the local rows) are under way from the module's first Slurm
    test on (slurm_runs)."""
    out, result = scenario.out, scenario
    assert result.returncode == 0, result.stderr + slurm.log("slurmctld")[-2000:]
    print(f"scale sweep --executor slurm, markov-tiny (3 units, 6 runs): {result.timings}\n{result.stdout}")

    local = pd.read_parquet(tiny_sweep[0] / "runs.parquet")[COMPARED].sort_values("run_id", ignore_index=True)
    remote = pd.read_parquet(out / "runs.parquet")[COMPARED].sort_values("run_id", ignore_index=True)
    pd.testing.assert_frame_equal(local, remote, check_exact=False, rtol=THREAD_NOISE)
    store = Store(out)
    assert all(len(store.attempts(run_id)) == 1 for run_id in remote.run_id)  # each run trained once
    jobs = sorted(p.name for p in (out / "slurm").iterdir() if p.is_dir())
    assert len(jobs) == 3 and all((out / "slurm" / j / f"{j}_0_log.out").is_file() for j in jobs), jobs

    again = scale_in_process("sweep", TINY, "--executor", "slurm", "--out", out, env=slurm.env)
    assert again.returncode == 0, again.stderr
    assert "6 done" in again.stdout, again.stdout
    assert sorted(p.name for p in (out / "slurm").iterdir() if p.is_dir()) == jobs  # no job submitted
    assert len(pd.read_parquet(out / "runs.parquet")) == 6
    assert all(len(store.attempts(run_id)) == 1 for run_id in remote.run_id)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("options", "field"),
    [
        (["--time", "0"], "--time"),
        (["--cpus-per-task", "0"], "--cpus-per-task"),
        (["--gpus-per-task", "-1"], "--gpus-per-task"),
        (["--partition", "nosuch"], "--partition"),
        (["--partition", "nosuch", "--dry-run"], "--partition"),  # the dry run refuses what the run would
    ],
)
def test_bad_slurm_options_are_one_line_and_exit_2(slurm, options, field, tmp_path):
    result = scale_in_process("sweep", TINY, "--executor", "slurm", "--out", tmp_path / "out", *options, env=slurm.env)
    assert result.returncode == 2, result
    assert result.stderr.startswith(f"error: {field}:") and result.stderr.count("\n") == 1, result.stderr
    assert not (tmp_path / "out").exists()


def test_slurm_options_without_the_slurm_executor_are_refused(tmp_path):
    result = scale_in_process("sweep", TINY, "--time", "5", "--dry-run", "--out", tmp_path / "out")
    assert result.returncode == 2 and result.stderr.startswith("error: --time:"), result.stderr


@pytest.mark.parametrize("dry", [True, False], ids=["dry-run", "run"])
def test_a_slurm_that_does_not_answer_is_one_line_and_exit_2(dry, tmp_path):
    conf = tmp_path / "slurm.conf"  # a controller nobody runs (port 1), asked with a short timeout
    conf.write_text("ClusterName=gone\nSlurmctldHost=localhost\nSlurmctldPort=1\nMessageTimeout=1\n"
                    "NodeName=localhost CPUs=1\nPartitionName=p Nodes=localhost\n")  # fmt: skip
    env = {"SLURM_CONF": str(conf)}
    args = ["sweep", TINY, "--executor", "slurm", "--out", tmp_path / "out", *(["--dry-run"] if dry else [])]
    result = scale_in_process(*args, env=env)
    assert result.returncode == 2 and result.stderr.startswith("error: --executor: slurm: "), result.stderr
    assert result.stderr.count("\n") == 1 and not (tmp_path / "out").exists(), result.stderr
