"""`scale sweep --dry-run` refuses exactly the options and output paths the real sweep refuses, and
`--gpus-per-run` reaches the runs as `data_parallel` without changing their ids."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import REPO, scale_in_process
from scaling_cli.plan import load_sweep, plan_runs
from scaling_cli.spec import load_spec

DEMO = REPO / "sweeps" / "demo.toml"
REFUSED = [
    (["--runs-per-gpu", "0"], "error: --runs-per-gpu: value: must be at least 1, got 0"),
    (["--executor", "k8s"], "error: --executor: value: expected one of local, ray, slurm, got 'k8s'"),
    (["--executor", "slurm", "--time", "0"], "error: --time: value: must be between 1 and 525600, got 0"),
    (["--time", "5"], "error: --time: value: only used with --executor slurm"),
    (["--gpus-per-run", "0"], "error: --gpus-per-run: value: must be at least 1, got 0"),
    (["--gpus-per-run", "3"], "train: batch_size: 16 does not split evenly over data_parallel = 3"),
]


@pytest.mark.parametrize("dry", [True, False], ids=["dry-run", "run"])
@pytest.mark.parametrize(("options", "line"), REFUSED, ids=[" ".join(o) for o, _ in REFUSED])
def test_the_dry_run_refuses_what_the_run_refuses(options, line, dry, tmp_path):
    ran = scale_in_process("sweep", DEMO, "--out", tmp_path / "out", *options, *(["--dry-run"] if dry else []))
    assert ran.returncode == 2, ran
    assert line in ran.stderr and len(ran.stderr.strip().splitlines()) == 1, ran.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("dry", [True, False], ids=["dry-run", "run"])
def test_an_output_path_under_a_file_is_refused_by_both(dry, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    ran = scale_in_process("sweep", DEMO, "--out", blocker / "out", *(["--dry-run"] if dry else []))
    assert ran.returncode == 2, ran
    assert ran.stderr.startswith(f"error: {blocker / 'out'}: directory: not writable"), ran.stderr


def test_a_writable_new_directory_passes_the_dry_run_and_is_not_created(tmp_path):
    target: Path = tmp_path / "new" / "deeper"
    ran = scale_in_process("sweep", DEMO, "--out", target, "--dry-run", "--gpus-per-run", "2")
    assert ran.returncode == 0, ran
    assert not (tmp_path / "new").exists()


def test_data_parallel_is_not_part_of_the_run_id():
    raw = load_spec(DEMO)
    two = plan_runs(type(raw)(**{**raw.__dict__, "train_fields": {**raw.train_fields, "data_parallel": 2}}))
    assert [r.run_id for r in two.runs()] == [r.run_id for r in load_sweep(DEMO).runs()]
    assert {r.train.data_parallel for r in two.runs()} == {2}
