"""`scale sweep`: plan a spec's runs, then train them on an executor with a live display (or only print the plan)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import typer

from scaling_cli.cli.render import SweepDisplay, duration, out, print_plan, say, state_counts, warn
from scaling_cli.errors import SpecError


def _print_spec_reference() -> None:
    from scaling_cli.spec_reference import render_reference, spec_reference

    say(render_reference(spec_reference()))
    raise typer.Exit(0)


def sweep_command(
    spec_path: Path = typer.Argument(..., metavar="SPEC", help="Sweep spec (TOML), e.g. sweeps/demo.toml."),
    out_dir: Path | None = typer.Option(None, "--out", help="Results directory [default: results/<name>/]."),
    workers: int | None = typer.Option(
        None,
        "--workers",
        help="Units trained at once [default: 1 on CPU, GPUs x runs-per-gpu on CUDA, the cluster's CPUs on Ray].",
    ),
    executor: str = typer.Option("local", "--executor", help="Where runs train: local, ray or slurm."),
    address: str | None = typer.Option(None, "--address", help="Ray cluster address (with --executor ray)."),
    runs_per_gpu: int = typer.Option(1, "--runs-per-gpu", help="Small runs packed onto each GPU."),
    gpus_per_run: int | None = typer.Option(
        None, "--gpus-per-run", help="Data-parallel ranks (GPUs) per run; overrides the spec's [train] data_parallel."
    ),
    partition: str | None = typer.Option(None, "--partition", help="Slurm partition [the spec's [slurm] table's]."),
    time_limit: int | None = typer.Option(None, "--time", help="Slurm time limit per job, minutes; then requeue [60]."),
    account: str | None = typer.Option(None, "--account", help="Slurm account to charge (with --executor slurm)."),
    gpus_per_task: int | None = typer.Option(None, "--gpus-per-task", help="GPUs per Slurm job (one unit) [0]."),
    cpus_per_task: int | None = typer.Option(None, "--cpus-per-task", help="CPU cores per Slurm job (one unit) [1]."),
    retries: int = typer.Option(2, "--retries", help="Retries of a failing run before it is recorded as failed."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan and the estimate; train nothing."),
    keep_checkpoints: bool = typer.Option(
        False,
        "--keep-checkpoints",
        help="Keep finished runs' checkpoint.pt and WSD trunks' saved states (deleted by default once not needed).",
    ),
    force: bool = typer.Option(False, "--force", help="Train runs whose memory estimate exceeds what is free."),
    track: list[str] | None = typer.Option(
        None,
        "--track",
        help="Also log each run to wandb, tensorboard or mlflow (repeatable; adds to the spec's track = [...]).",
    ),
    keep_final: bool = typer.Option(
        False, "--keep-final", help="Keep each finished run's final checkpoint.pt, for `scale export` (off: smaller)."
    ),
    help_spec: bool = typer.Option(
        False,
        "--help-spec",
        is_eager=True,
        callback=lambda given: _print_spec_reference() if given else None,
        help="Print every spec key (table, type, default, bounds, meaning) and exit.",
    ),
) -> int:
    """Train every run of a sweep spec, resuming whatever is unfinished; rerunning trains nothing new.

    Example: scale sweep sweeps/demo.toml --workers 2   (then: scale status results/demo)
    """
    from scaling_cli.data.repetition import repetition_warnings
    from scaling_cli.executors import check_executor_options, check_slurm_cluster, make_executor, slurm_options_for
    from scaling_cli.plan import plan_runs
    from scaling_cli.spec import load_spec
    from scaling_cli.sweep import check_memory, plan_sweep, run_sweep
    from scaling_cli.tracking import Tracker, chosen_trackers

    if retries < 0:
        raise SpecError("--retries", "value", f"must be 0 or more, got {retries}")
    if workers is not None and workers < 1:
        raise SpecError("--workers", "value", f"must be at least 1, got {workers}")
    from scaling_cli.store import Store

    slurm_given = {"partition": partition, "time": time_limit, "account": account,
                   "gpus_per_task": gpus_per_task, "cpus_per_task": cpus_per_task}  # fmt: skip
    check_executor_options(
        executor, workers, address, runs_per_gpu, 1 if gpus_per_run is None else gpus_per_run, slurm_given
    )
    raw = load_spec(spec_path)
    if gpus_per_run is not None:
        raw = dataclasses.replace(raw, train_fields={**raw.train_fields, "data_parallel": gpus_per_run})
    slurm = slurm_options_for(raw.slurm, slurm_given)
    if executor == "slurm":
        check_slurm_cluster(slurm)  # the dry run refuses what the run would
    if dry_run:
        spec = plan_runs(raw, check_hardware=True)
        target = out_dir if out_dir is not None else Path("results") / spec.name
        Store(target).check_could_write()
        plan = plan_sweep(spec, target, workers=workers or 1)
        if executor == "ray":  # a gang the cluster cannot place is refused by the run before training
            from scaling_cli.executors.ray_executor import check_gangs_before_running

            unsettled = [p.run for p in plan.runs if p.state not in ("done", "diverged")]
            world = max((run.train.data_parallel for run in unsettled), default=1)
            check_gangs_before_running(world, address, raw.device)
        print_plan(plan)
        for line in repetition_warnings(spec.runs()):
            warn(f"warning: {line}")
        if not force:
            check_memory(plan, workers or 1)
        return 0
    trackers = chosen_trackers(track, raw.track)
    pool = make_executor(
        executor, workers=workers, address=address, runs_per_gpu=runs_per_gpu, device=raw.device,
        gpus_per_run=gpus_per_run or 1, slurm=slurm,
    )  # fmt: skip
    spec = plan_runs(raw, devices=lambda: pool.device_types, check_hardware=True)
    target = out_dir if out_dir is not None else Path("results") / spec.name
    tracker = Tracker(trackers, target, spec.name, on_problem=warn)
    try:
        with SweepDisplay(live=out.is_terminal) as display:
            outcome = run_sweep(
                spec, target, pool, retries=retries, on_event=tracker.wrap(display), keep_checkpoints=keep_checkpoints,
                force=force,
                keep_final=keep_final,
            )  # fmt: skip
    except KeyboardInterrupt:  # say what was kept; the exit code, 130, comes from typer and main() as for any command
        warn(
            f"interrupted: finished runs are saved in {target}; rerun the same command to resume "
            "(interrupted runs continue from their last checkpoint)"
        )
        raise
    say(
        f"sweep {spec.name}: {state_counts(outcome.counts)} in {duration(outcome.wall_s)}; results in {outcome.out_dir}"
    )
    for failed in outcome.failed:
        warn(f"failed {failed['run_id']}: {failed['error']}")
    for line in tracker.catch_up(run.run_id for run in spec.runs()):
        say(line)
    for line in tracker.summary():
        warn(line)
    return 1 if outcome.failed else 0
