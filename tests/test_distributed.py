"""Data-parallel runs on CPU with gloo: K = 1, K = 2 and gradient accumulation train the same curve (up to
float reduction order), rank 0 writes the files, and a run whose rank was killed resumes exactly."""

from __future__ import annotations

import os
import signal
import time
from dataclasses import replace

import pytest
import torch

from conftest import one_run_spec
from trainer_runs import first_order_markov, read_curve

from scaling_cli.model import ModelConfig
from scaling_cli.train import CHECKPOINT_NAME, TrainConfig, train_run

# each run starts rank processes, each paying a torch start-up; train_run sets torch's threads for the process
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("keep_torch_threads")]

TINY = ModelConfig(d_model=32, n_layer=2, n_head=2, seq_len=32)
# Float sums in another order: measured max |difference| of any loss on these curves about 1e-6.
REDUCTION_NOISE = 1e-4


def config(steps: int, **overrides) -> TrainConfig:
    settings = {
        "tokens": steps * 8 * 32, "batch_size": 8, "lr": 3e-3, "warmup_tokens": 2 * 8 * 32, "eval_every": 4,
        "eval_batches": 2, "checkpoint_every": 0, "device": "cpu", "dtype": "fp32", "threads": 1,
    }  # fmt: skip
    return TrainConfig(**{**settings, **overrides})


@pytest.fixture(scope="module")
def markov(tmp_path_factory):
    return first_order_markov(tmp_path_factory, 100_000)


def max_loss_difference(a: list[dict], b: list[dict]) -> float:
    assert [p["step"] for p in a] == [p["step"] for p in b]
    return max(abs(p[k] - q[k]) for p, q in zip(a, b) for k in ("train_loss", "val_loss"))


STEPS = 160
TWO_RANKS = config(STEPS, data_parallel=2, eval_every=20, checkpoint_every=20)


@pytest.fixture(scope="module")
def two_ranks(markov, tmp_path_factory):
    """One uninterrupted two-rank run (rank processes cost a torch start-up each: trained once)."""
    run_dir = tmp_path_factory.mktemp("two-ranks")
    return train_run(TINY, TWO_RANKS, markov, run_dir), run_dir


def test_two_ranks_and_accumulation_train_the_curve_of_one_rank(markov, two_ranks, tmp_path):
    two, two_dir = two_ranks
    one = train_run(TINY, replace(TWO_RANKS, data_parallel=1), markov, tmp_path / "k1")
    accumulated = train_run(TINY, replace(TWO_RANKS, data_parallel=1, micro_batch_size=4), markov, tmp_path / "acc")
    reference = read_curve(tmp_path / "k1")
    differences = {
        "K=2": max_loss_difference(reference, read_curve(two_dir)),
        "K=1, 2 accumulation steps": max_loss_difference(reference, read_curve(tmp_path / "acc")),
    }
    print(f"max |loss difference| against K=1: {differences}")
    assert all(d < REDUCTION_NOISE for d in differences.values()), differences
    assert len(reference) == STEPS // 20 and reference[-1]["train_loss"] < reference[0]["train_loss"] - 0.5
    for result in (two, accumulated):
        assert (result.status, result.steps, result.tokens) == ("done", one.steps, one.tokens)
    assert (one.data_parallel, two.data_parallel) == (1, 2)
    assert not (two_dir / "rank0_result.json").exists()


def without_clock(points: list[dict]) -> list[dict]:
    return [{k: v for k, v in point.items() if k != "wall_s"} for point in points]


def test_a_run_whose_rank_was_killed_resumes_exactly(markov, two_ranks, tmp_path):
    """kill -9 of rank 1 after rank 0's first checkpoint stops the whole run; training again resumes from that
    checkpoint and ends with the curve of an uninterrupted two-rank run. The launcher runs in a thread of this
    process (its ranks are processes of their own either way), where the run's failure arrives as the exception
    launch raises when a rank dies."""
    import threading

    from torch.multiprocessing import ProcessExitedException

    cfg, (reference, reference_dir) = TWO_RANKS, two_ranks
    run_dir = tmp_path / "killed"
    failures: list[Exception] = []

    def launch_the_run() -> None:
        try:
            train_run(TINY, cfg, markov, run_dir)
        except Exception as exc:  # noqa: BLE001 - the test looks at it below
            failures.append(exc)

    launcher = threading.Thread(target=launch_the_run, daemon=True)
    launcher.start()
    pids, deadline = run_dir / "ranks.pids", time.monotonic() + 120
    while not (run_dir / CHECKPOINT_NAME).exists() and launcher.is_alive() and time.monotonic() < deadline:
        time.sleep(0.002)
    rank1 = int(pids.read_text().split()[1])
    os.kill(rank1, signal.SIGSTOP)  # rank 0 cannot finish without it: it waits in the next all-reduce
    os.kill(rank1, signal.SIGKILL)
    launcher.join(timeout=60)
    assert not launcher.is_alive() and len(failures) == 1, failures
    assert isinstance(failures[0], ProcessExitedException), repr(failures[0])
    saved = torch.load(run_dir / CHECKPOINT_NAME, weights_only=True)["step"]
    assert 0 < saved < STEPS
    resumed = train_run(TINY, cfg, markov, run_dir)
    assert without_clock(read_curve(run_dir)) == without_clock(read_curve(reference_dir))
    assert (resumed.val_loss, resumed.steps, resumed.data_parallel) == (reference.val_loss, STEPS, 2)


def test_a_stop_request_reaches_every_rank_and_the_rerun_resumes_exactly(markov, two_ranks, tmp_path):
    """The flag a Slurm job's signal handler sets (STOP_REQUESTED) in the launching process, mid-run: the
    launcher relays it, the ranks agree on it at a finiteness read, rank 0 saves at that step, the run raises
    StopRequested there; training again resumes and ends with the uninterrupted two-rank curve bit for bit."""
    import threading

    from scaling_cli.train.stop import STOP_REQUESTED, StopRequested

    cfg, (reference, reference_dir) = TWO_RANKS, two_ranks
    run_dir = tmp_path / "stopped"

    def stop_after_first_evaluation() -> None:
        deadline = time.monotonic() + 120
        curve = run_dir / "curve.jsonl"  # created empty when training starts: wait for its first point
        while not (curve.exists() and curve.stat().st_size > 0) and time.monotonic() < deadline:
            time.sleep(0.002)
        STOP_REQUESTED.set()

    watcher = threading.Thread(target=stop_after_first_evaluation, daemon=True)
    watcher.start()
    try:
        with pytest.raises(StopRequested) as stopped:
            train_run(TINY, cfg, markov, run_dir)
    finally:
        STOP_REQUESTED.clear()
        watcher.join()
    saved = torch.load(run_dir / CHECKPOINT_NAME, weights_only=True)["step"]
    assert 0 < saved == stopped.value.step < STEPS, (saved, stopped.value.step)
    assert not (run_dir / "stop.requested").exists()
    assert [p["step"] for p in read_curve(run_dir)][-1] <= saved
    resumed = train_run(TINY, cfg, markov, run_dir)
    assert without_clock(read_curve(run_dir)) == without_clock(read_curve(reference_dir))
    assert (resumed.val_loss, resumed.steps, resumed.data_parallel) == (reference.val_loss, STEPS, 2)


def test_fsdp_trains_the_same_curve_and_resumes_from_its_gathered_state(markov, tmp_path):
    """FSDP2 on two ranks: the curve of one rank (to reduction noise); its saved state is whole (gathered on
    rank 0), and a run continued from the state saved at step 4 retraces the uninterrupted run exactly."""
    cfg = config(12, data_parallel=2, sharding="fsdp")
    one = train_run(TINY, replace(cfg, data_parallel=1, checkpoint_every=12), markov, tmp_path / "k1")
    sharded = train_run(TINY, cfg, markov, tmp_path / "fsdp", trunk_saves=[4])
    assert max_loss_difference(read_curve(tmp_path / "k1"), read_curve(tmp_path / "fsdp")) < REDUCTION_NOISE
    state = tmp_path / "fsdp" / "trunk" / "step_4.pt"
    saved = torch.load(state, weights_only=True)["model"]
    whole = torch.load(tmp_path / "k1" / CHECKPOINT_NAME, weights_only=True)["model"]
    assert {name: t.shape for name, t in saved.items()} == {name: t.shape for name, t in whole.items()}
    continued = train_run(TINY, cfg, markov, tmp_path / "continued", start_from=state)
    assert without_clock(read_curve(tmp_path / "continued")) == without_clock(read_curve(tmp_path / "fsdp"))
    assert (continued.val_loss, sharded.steps) == (sharded.val_loss, one.steps)


SPEC = one_run_spec("dp", 2048, every=4, batches=2, train="data_parallel = 2")


def test_a_sweep_trains_a_data_parallel_run_and_records_its_ranks(tmp_path):
    """The local executor's worker launches the run's ranks; runs.parquet records K, the run id leaves it out."""
    from scaling_cli.executors.local import LocalExecutor
    from scaling_cli.plan import load_sweep
    from scaling_cli.store import Store
    from scaling_cli.sweep import run_sweep

    spec = tmp_path / "dp.toml"
    spec.write_text(SPEC)
    outcome = run_sweep(load_sweep(spec), tmp_path / "out", LocalExecutor(workers=1), retries=0)
    assert outcome.counts["done"] == 1, outcome
    (row,) = Store(tmp_path / "out").rows()
    assert (row["data_parallel"], row["steps"], row["status"]) == (2, 8, "done")
    assert row["flops_per_s"] > 0 and "mfu" in row and "peak_flops" in row  # NaN on a CPU without SCALE_PEAK_FLOPS
    single = tmp_path / "single.toml"
    single.write_text(SPEC.replace("data_parallel = 2", "data_parallel = 1"))
    assert [r.run_id for r in load_sweep(single).runs()] == [row["run_id"]]
