"""End to end against a known answer: the shipped known-answer sweep's fitted E is its source's entropy rate.

This trains `sweeps/known-answer.toml` as shipped (20 runs of 3.9k-117k parameters on the back-off Markov
source; a reduced grid recovers E less well, see docs/benchmarks.md), so it is the slowest test of the suite.
"""

from __future__ import annotations

import math
import tomllib

import numpy as np
import pandas as pd
import pytest
from conftest import REPO, scale_in_process

from scaling_cli.data import DataOptions, prepare
from scaling_cli.data.markov import build_backoff_chain, entropy_by_context_bits, stationary_distribution
from scaling_cli.fit import FitOptions, TableOptions, fit_all

SPEC = REPO / "sweeps" / "known-answer.toml"


def test_backoff_chain_rows_are_distributions_and_every_order_carries_signal():
    chain = build_backoff_chain(order=2, alphabet=32, concentration=4.0, seed=0)
    assert chain.probs.shape == (32**2, 32)
    assert np.allclose(chain.probs.sum(axis=1), 1.0)
    by_order = entropy_by_context_bits(chain, stationary_distribution(chain))
    unigram, bigram, rate = by_order
    assert unigram - bigram > 0.5 and bigram - rate > 0.2  # bits each order adds: a ladder, not a cliff
    assert unigram < math.log2(32)


def test_backoff_options_leave_existing_data_set_names_alone():
    assert "markov_kind" not in DataOptions().to_dict()
    backoff = DataOptions(markov_kind="backoff", markov_concentration=4).to_dict()
    assert backoff["markov_kind"] == "backoff" and backoff["markov_concentration"] == 4.0
    with pytest.raises(ValueError, match="markov_kind: must be one of sparse, backoff"):
        DataOptions(markov_kind="trigram")


@pytest.mark.slow
def test_known_answer_sweep_recovers_the_entropy_rate(tmp_path):
    out = tmp_path / "known-answer"
    result = scale_in_process("sweep", SPEC, "--out", out, "--workers", "2")
    assert result.returncode == 0, result.stderr[-2000:]
    runs = pd.read_parquet(out / "runs.parquet")
    assert (runs["status"] == "done").all() and len(runs) == 20
    rate_nats = float(runs["entropy_rate_bits"].iloc[0]) * math.log(2)
    manifest_rate = prepare("markov", DataOptions(**tomllib.loads(SPEC.read_text())["data"])).entropy_rate_bits
    assert manifest_rate == pytest.approx(float(runs["entropy_rate_bits"].iloc[0]), rel=1e-12)

    fit = fit_all(out, TableOptions(), FitOptions(bootstrap=50))
    chinchilla = fit["groups"]["all"]["laws"]["chinchilla"]
    params = chinchilla["params"]
    assert chinchilla["status"] == "ok", chinchilla.get("problems")
    assert not chinchilla["diagnostics"]["grid_edge"]
    assert params["alpha"] > 0 and params["beta"] > 0
    assert params["E"] == pytest.approx(rate_nats, rel=0.05), f"fitted E {params['E']:.4f}, true {rate_nats:.4f}"
    assert runs["val_loss"].min() > rate_nats  # no run beats the entropy rate
