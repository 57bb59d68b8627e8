"""Every allocation spends exactly the compute asked for: C = k(N_opt) N_opt D_opt, with k(N) the model's own
Appendix F FLOPs per parameter-token on the sweep's shape rule, never a ratio that extrapolates below 6."""

from __future__ import annotations

import numpy as np
import pytest

from scaling_cli.fit import FitOptions, fit_all, predict
from scaling_cli.fit import law as registry
from scaling_cli.model import ModelConfig, count_params, flops_per_token

BUDGET = 1e20


def model_k(n: float, d_model_of_run: int = 16) -> float:
    """FLOPs per parameter-token of markov-tiny's shape rule (2 layers, 16-channel heads, context 32, bytes)
    at the width whose parameter count brackets n, interpolated in ln N: computed here from the model."""
    sizes, ratios = [], []
    for width in range(d_model_of_run, 1 << 20, 16):
        config = ModelConfig(d_model=width, n_layer=2, n_head=width // 16, seq_len=32, vocab_size=256)
        total, _ = count_params(config)
        sizes.append(total)
        ratios.append(flops_per_token(config)["chinchilla"] / total)
        if total > n:
            break
    return float(np.interp(np.log(n), np.log(sizes), ratios))


@pytest.fixture(scope="module")
def document(tiny_sweep):
    return fit_all(tiny_sweep[0], options=FitOptions(bootstrap=0))  # what its 3 sizes x 2 budgets support


def test_the_convention_of_our_own_runs_is_the_model_formula(document):
    convention = document["compute_convention"]
    assert convention["kind"] == "model_formula", convention["description"]
    assert 6.0 < convention["limit"] < 6.01  # Appendix F's large-model limit: 6 plus the attention term
    assert "shape rule" in convention["description"]


PUBLISHED = {  # Epoch AI's refit of Chinchilla's Approach 3 (Besiroglu et al. 2024), for Approach 3's arithmetic
    "chinchilla": {"E": 1.817, "A": 482.0, "B": 2085.4, "alpha": 0.348, "beta": 0.366},
}


def test_every_allocation_spends_the_budget_at_the_models_own_flops(document):
    """Each allocating law's split under our runs' convention, from its fitted parameters (the 2 budgets of
    markov-tiny cannot fit Approach 3, so it takes published ones), and every answer predict gives."""
    convention = document["compute_convention"]
    laws = {name: entry["params"] for name, entry in document["groups"]["all"]["laws"].items() if "params" in entry}
    laws = {**PUBLISHED, **laws}
    allocating = [name for name in laws if registry.get(name).allocates]
    assert "envelope" in allocating and "chinchilla" in allocating
    for name in allocating:
        law = registry.get(name)
        n, d = (float(v) for v in law.allocate(laws[name], convention, BUDGET))
        assert BUDGET / (n * d) == pytest.approx(model_k(n), rel=0.01), name
        assert BUDGET / (n * d) >= 6.0
    answers = predict(document, compute=BUDGET)["groups"]["all"]["compute"]
    for name, row in answers.items():
        if row.get("status", "ok") == "ok" and "N_opt" in row:
            assert row["flops_per_param_token"] == pytest.approx(model_k(row["N_opt"]), rel=0.01), name
