"""`scale predict` opens with one verdict line and says, not leaves for the reader to find, when identified
approaches disagree beyond their intervals and when the allocation would repeat the training data."""

from __future__ import annotations

import json

import numpy as np
from conftest import scale_in_process

from scaling_cli.fit import predict
from scaling_cli.fit.laws import chinchilla_optimum

CHINCHILLA = {"E": 1.8, "A": 400.0, "B": 2000.0, "alpha": 0.34, "beta": 0.36}
BUDGET = 1e21


def jittered(params: dict, count: int = 40, scale: float = 0.01) -> list[list[float]]:
    rng = np.random.default_rng(0)
    return [[v * (1 + scale * rng.standard_normal()) for v in params.values()] for _ in range(count)]


def law_entry(params: dict) -> dict:
    return {"status": "ok", "params": params, "bootstrap": {"samples": jittered(params)}}


def document(envelope_factor: float, unique_tokens: float | None = None) -> dict:
    """A fit.json with Approach 3 and an Approach 1 whose N_opt at BUDGET is `envelope_factor` times Approach 3's."""
    n3, _ = chinchilla_optimum(CHINCHILLA, BUDGET)
    a = 0.5
    envelope = {"a": a, "N0": float(n3) * envelope_factor / BUDGET**a, "b": 0.5, "D0": 1.0}
    points = [{"run_id": "r", "N": 1e8, "D": 2e9, "C": 1.2e18, "loss": 2.6, "n_runs": 1}]
    if unique_tokens:
        points[0]["U"] = unique_tokens
    return {
        "compute_convention": {"kind": "6ND"},
        "groups": {
            "all": {
                "points": points,
                "range": {"N": [1e7, 1e8], "D": [1e8, 2e9], "C": [6e15, 1.2e18], "tokens_per_param": [1, 20]},
                "laws": {
                    "chinchilla": law_entry(CHINCHILLA),
                    "envelope": law_entry(envelope),
                },
            }
        },
    }


def test_approaches_that_disagree_beyond_their_intervals_are_named():
    far = predict(document(envelope_factor=10.0), compute=BUDGET)["groups"]["all"]
    assert any(w.startswith("approaches disagree: chinchilla N_opt") for w in far["warnings"]), far["warnings"]
    assert "approaches disagree" in far["verdict"]
    near = predict(document(envelope_factor=1.0), compute=BUDGET)["groups"]["all"]
    assert not any("disagree" in w for w in near["warnings"])


def test_an_allocation_that_repeats_the_data_is_named_with_its_epochs():
    _, d_opt = chinchilla_optimum(CHINCHILLA, BUDGET)
    unique = float(d_opt) / 50
    answer = predict(document(1.0, unique_tokens=unique), compute=BUDGET)["groups"]["all"]
    repeats = [w for w in answer["warnings"] if "epochs of the" in w]
    assert repeats and "50 epochs" in repeats[0], answer["warnings"]
    fresh = predict(document(1.0, unique_tokens=float(d_opt) * 2), compute=BUDGET)["groups"]["all"]
    assert not any("epochs" in w for w in fresh["warnings"])
    given = predict(document(1.0), compute=BUDGET, unique_tokens=unique)["groups"]["all"]
    assert any("50 epochs" in w for w in given["warnings"])


def test_predict_prints_the_verdict_first_and_the_warnings(tmp_path):
    path = tmp_path / "fit.json"
    path.write_text(json.dumps(document(envelope_factor=10.0)))
    result = scale_in_process("predict", path, "--compute", str(BUDGET))
    assert result.returncode == 0, result.stderr
    first = result.stdout.splitlines()[0]
    assert first.startswith("verdict: group all: train N = ") and "expect loss" in first and "trust: low" in first
    assert "(95%)" in first and "x the largest fitted compute" in first
    assert "warning: group all: approaches disagree" in result.stderr
