"""Input errors are input errors: rejected at plan time (dry run included) in one line with exit 2 and nothing
written; a run that fails deterministically is recorded once, not retried; bf16 follows what the CPU measures."""

from __future__ import annotations

import json
import os

import pytest
from conftest import REPO, scale_in_process

from scaling_cli.errors import SpecError
from scaling_cli.plan import BF16_MAX_SLOWDOWN, load_sweep
from scaling_cli.train.runtime import available_device_types, cpu_bf16_slowdown

TINY = REPO / "sweeps" / "markov-tiny.toml"


def variant(tmp_path, *replacements: tuple[str, str]):
    text = TINY.read_text()
    for old, new in replacements:
        assert old in text, old
        text = text.replace(old, new, 1)
    path = tmp_path / "variant.toml"
    path.write_text(text)
    return path


def assert_one_line_exit_2(result, *words: str) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in lines[0], lines[0]


@pytest.mark.parametrize("dry_run", [True, False], ids=["dry-run", "sweep"])
def test_an_unknown_data_set_is_rejected_with_the_nearest_name(tmp_path, dry_run):
    spec = variant(tmp_path, ('dataset = "markov"', 'dataset = "shakespear"'))
    out = tmp_path / "out"
    result = scale_in_process("sweep", spec, "--out", out, *(["--dry-run"] if dry_run else []))
    assert_one_line_exit_2(result, "dataset", "'shakespear'", "did you mean 'shakespeare'?")
    assert not out.exists()


@pytest.mark.skipif("cuda" in available_device_types(), reason="this machine has CUDA")
@pytest.mark.parametrize("dry_run", [True, False], ids=["dry-run", "sweep"])
def test_a_device_this_machine_lacks_is_rejected_before_any_run(tmp_path, dry_run):
    spec = variant(tmp_path, ('device = "cpu"', 'device = "cuda"'))
    out = tmp_path / "out"
    result = scale_in_process("sweep", spec, "--out", out, *(["--dry-run"] if dry_run else []))
    assert_one_line_exit_2(result, "device", "'cuda' is not available")
    assert not out.exists()


def test_a_run_that_cannot_fit_in_memory_is_refused_unless_forced(tmp_path):
    spec = variant(tmp_path, ("d_model = [16, 32, 48]", "d_model = [16, 65536]"), ("head_dim = 16", "head_dim = 64"))
    refused = scale_in_process("sweep", spec, "--out", tmp_path / "out", "--dry-run")
    assert_one_line_exit_2(refused, "cannot fit in memory", "d_model=65536", "--force")
    assert "memory" in refused.stdout  # the plan shows each run's estimate
    assert scale_in_process("sweep", spec, "--out", tmp_path / "out", "--dry-run", "--force").returncode == 0
    assert not (tmp_path / "out").exists()


def test_out_of_memory_is_recorded_once_and_never_retried(tmp_path):
    spec = variant(
        tmp_path,
        ("d_model = [16, 32, 48]", "d_model = [65536]"),
        ("head_dim = 16", "head_dim = 64"),
        ("n_layer = 2", "n_layer = 200"),
        ("tokens = [12_288, 24_576]", "tokens = [24_576]"),
    )
    out = tmp_path / "out"
    result = scale_in_process("sweep", spec, "--out", out, "--force", "--retries", "2")
    assert result.returncode == 1, result.stderr
    assert "retry" not in result.stdout and "can't allocate memory" in result.stdout
    (run_dir,) = [p for p in (out / "runs").iterdir() if p.is_dir()]
    assert len((run_dir / "attempts.jsonl").read_text().splitlines()) == 1
    assert json.loads((run_dir / "row.json").read_text())["status"] == "failed"


def test_results_directory_that_cannot_be_created_is_one_line(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    result = scale_in_process("sweep", TINY, "--out", blocker / "results")
    assert_one_line_exit_2(result, "not writable")
    assert blocker.read_text() == "not a directory"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_a_read_only_results_directory_is_one_line_for_sweep_and_dry_run(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o555)
    try:
        assert_one_line_exit_2(scale_in_process("sweep", TINY, "--out", out), "not writable")
        assert scale_in_process("sweep", TINY, "--out", out, "--dry-run").returncode == 0
        assert list(out.iterdir()) == []
    finally:
        out.chmod(0o755)


def test_bf16_on_a_cpu_follows_the_measured_speed(tmp_path):
    spec = variant(tmp_path, ("checkpoint_every = 8", 'checkpoint_every = 8\ndtype = "bf16"'))
    slowdown = cpu_bf16_slowdown()
    if slowdown > 2 * BF16_MAX_SLOWDOWN:  # clearly emulated here: refused with the measurement
        with pytest.raises(SpecError, match="slower than fp32"):
            load_sweep(spec, check_hardware=True)
    elif slowdown < BF16_MAX_SLOWDOWN / 2:  # native here: accepted, and auto still means fp32 on a CPU
        assert {r.train.dtype for r in load_sweep(spec, check_hardware=True).runs()} == {"bf16"}
    assert {r.train.dtype for r in load_sweep(TINY, check_hardware=True).runs()} == {"fp32"}
