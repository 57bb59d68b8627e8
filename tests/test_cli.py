"""The command list, the version, and the error contract of the `scale` command."""

from __future__ import annotations

import re

from conftest import REPO, run_scale

from scaling_cli import __version__

COMMANDS = {"sweep", "fit", "predict", "plot", "data", "status"}


def listed_commands(help_text: str) -> set[str]:
    block = help_text.split("Commands:", 1)[1]
    return {m.group(1) for m in re.finditer(r"^\s{2}(\w+)\s", block, re.M)}


def test_help_lists_every_command():
    result = run_scale("--help")
    assert result.returncode == 0
    assert listed_commands(result.stdout) == COMMANDS


def test_readme_documents_exactly_the_commands():
    readme = (REPO / "README.md").read_text()
    documented = set(re.findall(r"^### `scale (\w+)", readme, re.M))
    assert documented == COMMANDS


def test_every_command_has_help_with_an_example():
    for command in COMMANDS:
        result = run_scale(command, "--help")
        assert result.returncode == 0, result.stderr
        assert "scale " + command in result.stdout or command == "data", result.stdout


def test_version():
    result = run_scale("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"scale {__version__}"


def test_unknown_option_is_one_line_and_exit_2():
    result = run_scale("fit", "--no-such-option")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
    assert "Traceback" not in result.stderr
