"""The README cannot go stale: its demo figures and its printed excerpt are what the current code draws and prints
from the committed demo snapshot (docs/figures/demo/, written by `make docs`), compared as data, not pixels."""

from __future__ import annotations

import importlib.util
import json
import re

import pytest
from conftest import REPO

from scaling_cli.plot import load_inputs
from scaling_cli.plot.figdata import DATA_SUFFIX, differences, drawn_data

spec = importlib.util.spec_from_file_location("make_docs", REPO / "docs" / "make_docs.py")
make_docs = importlib.util.module_from_spec(spec)
spec.loader.exec_module(make_docs)
README = (REPO / "README.md").read_text()


@pytest.fixture(scope="module")
def drawn_now() -> dict:
    return drawn_data(load_inputs(make_docs.SNAPSHOT, fit_if_missing=False), make_docs.README_FIGURES)


@pytest.mark.parametrize("name", make_docs.README_FIGURES)
def test_each_readme_figure_is_what_the_current_code_draws_from_the_snapshot(name, drawn_now):
    assert f"(docs/figures/{name}.png)" in README and (make_docs.FIGURES / f"{name}.png").is_file()
    saved = json.loads((make_docs.FIGURES / f"{name}{DATA_SUFFIX}").read_text())
    assert isinstance(drawn_now[name], dict), drawn_now[name]
    assert differences(saved, drawn_now[name]) == [], "run `make docs` and commit docs/figures"
    lines = [line for ax in saved["axes"] for line in ax["lines"] if len(line["x"]) > 1]
    assert lines, "the sidecar holds plotted values"


def test_the_drift_check_notices_a_changed_value(drawn_now):
    name = make_docs.README_FIGURES[0]
    saved = json.loads((make_docs.FIGURES / f"{name}{DATA_SUFFIX}").read_text())
    line = next(line for ax in saved["axes"] for line in ax["lines"] if len(line["y"]) > 1)
    line["y"][0] *= 1.01
    assert differences(saved, drawn_now[name])


def test_the_readme_excerpt_is_what_scale_predict_prints_now():
    shown = make_docs.readme_excerpt(README)
    assert shown.count("\n") >= 3 and "verdict:" in shown
    assert shown == make_docs.excerpt_block(), "run `make docs` and commit README.md"


def test_no_readme_command_reads_files_outside_the_repository():
    blocks = re.findall(r"```\n(.*?)```", README, re.S)
    assert blocks
    assert not [line for block in blocks for line in block.splitlines() if "../" in line]
