"""The command list, the version, and the error contract of the installed `scale` script: its exit codes,
its one error line, --debug's traceback and Ctrl-C run as real processes; the rest in-process. The table of
bad inputs and their lines is tests/test_bad_input.py."""

from __future__ import annotations

import re
import signal
import subprocess
import time

import pytest
from conftest import REPO, SCALE, TINY, run_scale, scale_in_process

from scaling_cli import __version__

COMMANDS = {"sweep", "fit", "predict", "plot", "report", "suggest", "data", "status", "export"}


def listed_commands(help_text: str) -> set[str]:
    block = help_text.split("Commands:", 1)[1]
    return {m.group(1) for m in re.finditer(r"^\s{2}(\w+)\s", block, re.M)}


def test_help_lists_every_command():
    result = scale_in_process("--help")
    assert result.returncode == 0
    assert listed_commands(result.stdout) == COMMANDS


def test_readme_documents_exactly_the_commands():
    readme = (REPO / "README.md").read_text()
    documented = set(re.findall(r"^### `scale (\w+)", readme, re.M))
    assert documented == COMMANDS


def test_every_command_has_help_with_an_example():
    for command in COMMANDS:
        result = scale_in_process(command, "--help")
        assert result.returncode == 0, result.stderr
        assert "scale " + command in result.stdout or command == "data", result.stdout


def test_version():
    result = run_scale("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"scale {__version__}"


def test_the_installed_script_reports_bad_input_in_one_line_and_exits_2():
    result = run_scale("fit", "--no-such-option")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
    assert "Traceback" not in result.stderr


def test_debug_flag_shows_the_traceback(tmp_path):
    result = run_scale("--debug", "sweep", tmp_path / "nope.toml")
    assert result.returncode != 0
    assert "Traceback" in result.stderr


def test_rejected_command_leaves_stored_results_unchanged(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "runs.parquet").write_bytes(b"stored bytes")
    spec = tmp_path / "typo.toml"
    spec.write_text(TINY.read_text().replace("lr =", "lrr ="))
    result = scale_in_process("sweep", spec, "--out", out)
    assert result.returncode == 2 and result.stderr.startswith(f"error: {spec}: train.lrr: "), result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["runs.parquet"]
    assert (out / "runs.parquet").read_bytes() == b"stored bytes"


def test_ctrl_c_during_a_sweep_says_what_was_kept_and_exits_130(tmp_path):
    out = tmp_path / "out"
    sweep = subprocess.Popen(
        [SCALE, "sweep", str(TINY), "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # a test runner may start us ignoring it
    )
    deadline = time.time() + 120
    while not list(out.glob("runs/*/curve.jsonl")) and time.time() < deadline:
        time.sleep(0.2)
    sweep.send_signal(signal.SIGINT)
    _, stderr = sweep.communicate(timeout=120)
    if sweep.returncode == 0:
        pytest.skip("the sweep finished before the signal arrived")
    assert sweep.returncode == 130, stderr
    assert stderr.startswith(f"interrupted: finished runs are saved in {out}") and stderr.count("\n") == 1, stderr
    assert "Traceback" not in stderr
