"""`scale status` of a merged directory counts each WSD trunk's compute once: a cooldown branch that the
current grid no longer plans adds only its cooldown, as it did while it was planned."""

from __future__ import annotations

import json

import pytest

from scaling_cli.store import Store
from scaling_cli.store_status import status


def test_runs_of_an_earlier_grid_count_their_own_compute_only(tiny_results):
    planned = json.loads((tiny_results / "plan.json").read_text())["runs"]
    assert any(run["branch_of"] for run in planned), "markov-tiny should hold WSD branches"
    before = status(tiny_results)
    assert before["flops_spent"] == pytest.approx(sum(run["cost_flops"] for run in planned))
    store = Store(tiny_results)
    store.init((tiny_results / "spec.toml").read_text(), [])  # what a merge with a disjoint grid leaves
    after = status(tiny_results)
    assert after["counts"] == before["counts"]
    assert after["flops_spent"] == pytest.approx(before["flops_spent"])
