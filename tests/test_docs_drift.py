"""The README cannot go stale: its figures, its printed excerpt and every number its prose quotes are what the
current code draws, prints and computes from the committed snapshots (docs/figures/<results>/, written by
`make docs`), compared as data, not pixels."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import sys

import pytest
from conftest import REPO

from scaling_cli.plot.figdata import DATA_SUFFIX, differences

sys.path.insert(0, str(REPO / "docs"))
spec = importlib.util.spec_from_file_location("make_docs", REPO / "docs" / "make_docs.py")
make_docs = importlib.util.module_from_spec(spec)
spec.loader.exec_module(make_docs)
readme_facts = make_docs.readme_facts
README = (REPO / "README.md").read_text()


@pytest.fixture(scope="module")
def drawn_now() -> dict:
    return make_docs.drawn_now()


@pytest.mark.parametrize("name", make_docs.README_FIGURES)
def test_each_readme_figure_is_what_the_current_code_draws_from_its_snapshot(name, drawn_now):
    assert f"(docs/figures/{name}.png)" in README and (make_docs.FIGURES / f"{name}.png").is_file()
    saved = json.loads((make_docs.FIGURES / f"{name}{DATA_SUFFIX}").read_text())
    assert isinstance(drawn_now[name], dict), drawn_now[name]
    assert differences(saved, drawn_now[name]) == [], "run `make docs` and commit docs/figures"
    lines = [line for ax in saved["axes"] for line in ax["lines"] if len(line["x"]) > 1]
    assert lines, "the sidecar holds plotted values"


def test_every_figure_the_readme_shows_is_regenerated():
    shown = set(re.findall(r"\(docs/figures/([\w-]+)\.png\)", README))
    assert shown == set(make_docs.README_FIGURES)


def test_the_drift_check_notices_a_changed_value(drawn_now):
    name = next(iter(make_docs.README_FIGURES))
    saved = json.loads((make_docs.FIGURES / f"{name}{DATA_SUFFIX}").read_text())
    line = next(line for ax in saved["axes"] for line in ax["lines"] if len(line["y"]) > 1)
    line["y"][0] *= 1.01
    assert differences(saved, drawn_now[name])


def test_the_readme_excerpt_is_what_scale_predict_prints_now():
    shown = make_docs.readme_excerpt(README)
    assert shown.count("\n") >= 3 and "verdict:" in shown
    assert shown == make_docs.excerpt_block(), "run `make docs` and commit README.md"


def test_every_number_the_prose_quotes_is_computed_from_the_snapshots_now():
    shown = readme_facts.shown(README)
    assert len(shown) >= 25, "the demo, known-answer, data-quality, repeat and lr-transfer paragraphs are marked"
    facts = readme_facts.facts()
    assert not set(shown) - set(facts), "a marker without a fact in docs/readme_facts.py"
    stale = {name: (text, facts[name]) for name, text in shown.items() if text != facts[name]}
    assert not stale, f"run `make docs` and commit README.md: {stale}"
    assert readme_facts.fill(README, facts) == README


def test_a_changed_snapshot_changes_the_quoted_numbers(tmp_path):
    """The facts are read from the snapshot files, not remembered: a different E in the demo's fit.json is a
    different sentence in the README."""
    root = shutil.copytree(make_docs.FIGURES, tmp_path / "figures", ignore=shutil.ignore_patterns("*.png"))
    fit = json.loads((root / "demo" / "fit.json").read_text())
    fit["groups"]["all"]["laws"]["chinchilla"]["params"]["E"] = 1.2345
    (root / "demo" / "fit.json").write_text(json.dumps(fit))
    before, after = readme_facts.facts(), readme_facts.facts(root)
    assert after["demo-e"].startswith("1.234 [") and after["demo-e"] != before["demo-e"]
    assert {name for name in before if before[name] != after[name]} == {"demo-e", "demo-law"}


def test_no_readme_command_reads_files_outside_the_repository():
    blocks = re.findall(r"```\w*\n(.*?)```", README, re.S)
    assert blocks
    assert not [line for block in blocks for line in block.splitlines() if "../" in line]
