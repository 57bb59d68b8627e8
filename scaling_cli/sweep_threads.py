"""The CPU-thread policy of a sweep: cores per starting unit, freed cores shared out, threads a run is worth."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from scaling_cli.plan import RunPlan

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
