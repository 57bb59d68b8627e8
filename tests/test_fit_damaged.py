"""A damaged fit.json is bad input: one line naming the field, exit 2, never a traceback or a `nan` answer."""

from __future__ import annotations

import json

import pytest
from conftest import scale_in_process

GOOD = {
    "groups": {
        "all": {
            "range": {"N": [1e6, 1e8], "D": [1e8, 1e10], "C": [1e15, 1e18], "tokens_per_param": [1, 100]},
            "laws": {
                "chinchilla": {
                    "status": "ok",
                    "params": {"E": 1.8, "A": 400.0, "B": 2000.0, "alpha": 0.34, "beta": 0.36},
                }
            },
        }
    }
}


def damaged(edit):
    document = json.loads(json.dumps(GOOD))
    edit(document)
    return document


CASES = {
    "non-numeric parameter": (
        lambda doc: doc["groups"]["all"]["laws"]["chinchilla"]["params"].update(alpha="big"),
        "groups.all.laws.chinchilla.params.alpha: must be a finite number, got 'big'",
    ),
    "NaN parameter": (
        lambda doc: doc["groups"]["all"]["laws"]["chinchilla"]["params"].update(alpha=float("nan")),
        "groups.all.laws.chinchilla.params.alpha: must be a finite number, got nan",
    ),
    "missing params": (
        lambda doc: doc["groups"]["all"]["laws"]["chinchilla"].pop("params"),
        "groups.all.laws.chinchilla.params: must be a table of parameters, got nothing",
    ),
    "laws null": (
        lambda doc: doc["groups"]["all"].update(laws=None),
        "groups.all.laws: must be a table of fitted laws, got nothing",
    ),
    "backtest a string": (
        lambda doc: doc["groups"]["all"].update(backtest="yes"),
        "groups.all.backtest: must be a table, got text",
    ),
    "no groups": (lambda doc: doc.pop("groups"), "groups: not a fit.json written by `scale fit` (no groups table)"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_damaged_fit_json_is_one_line_and_exit_2(tmp_path, case):
    edit, expected = CASES[case]
    path = tmp_path / "fit.json"
    path.write_text(json.dumps(damaged(edit)))  # json writes NaN as the literal NaN, as a careless editor would
    before = path.read_bytes()
    result = scale_in_process("predict", path, "--compute", "1e20")
    assert result.returncode == 2, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0] == f"error: {path}: {expected}", result.stderr
    assert "Traceback" not in result.stderr and path.read_bytes() == before


def test_the_undamaged_document_answers(tmp_path):
    path = tmp_path / "fit.json"
    path.write_text(json.dumps(GOOD))
    result = scale_in_process("predict", path, "--compute", "1e20")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("verdict: group all: train N = ")
