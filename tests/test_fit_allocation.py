"""One compute convention end to end: fit.json's at_compute, `predict` and allocation.optimal_allocation (what
`plot` calls) give the same N_opt at the same C, under the constraint the table's C column obeys."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scaling_cli.fit import FitOptions, TableOptions, fit_all, predict
from scaling_cli.fit.allocation import compute_of, optimal_allocation, ratio_of
from scaling_cli.fit.laws import chinchilla_loss, chinchilla_optimum

LAW = {"E": 1.9, "A": 400.0, "B": 2000.0, "alpha": 0.34, "beta": 0.36}
SIZES = (1e5, 2e5, 4e5, 8e5, 1.6e6, 3.2e6)
TOKENS = (2e6, 8e6, 3.2e7, 1.28e8)


def flops_per_param_token(n):
    """Like Appendix F at small sizes: embeddings and attention add most at the smallest models."""
    return 6.0 + 900.0 * np.asarray(n, dtype=float) ** -0.5


def results_dir(directory):
    rng = np.random.default_rng(0)
    rows = []
    for n in SIZES:
        for d in TOKENS:
            rows.append(
                {
                    "run_id": f"n{n:g}-d{d:g}",
                    "params": n,
                    "tokens": d,
                    "flops": flops_per_param_token(n) * n * d,
                    "val_loss": float(chinchilla_loss(LAW, n, d)) * (1 + rng.normal(0, 0.001)),
                    "status": "done",
                }
            )
    directory.mkdir()
    pd.DataFrame(rows).to_parquet(directory / "runs.parquet")
    return directory


@pytest.fixture(scope="module")
def document(tmp_path_factory):
    source = results_dir(tmp_path_factory.mktemp("alloc") / "results")
    return fit_all(source, options=FitOptions(laws=("chinchilla",), bootstrap=20, at_compute=1e13))


def test_the_convention_is_the_fitted_flops_per_parameter_token(document):
    """No run configs to take the model's formula from: k(N) is fitted, and its limit is physically possible."""
    convention = document["compute_convention"]
    assert convention["kind"] == "ratio_fit" and convention["max_rel_error"] < 0.01
    assert convention["c0"] >= 6.0 and "held at 6" in convention["description"]
    sizes = np.array(SIZES)
    assert np.allclose(ratio_of(convention, sizes), flops_per_param_token(sizes), rtol=0.01)


def test_fit_predict_and_the_allocation_function_agree(document):
    at = document["groups"]["all"]["laws"]["chinchilla"]["at_compute"]
    split = predict(document, compute=1e13)["groups"]["all"]["compute"]["chinchilla"]
    n_opt, d_opt = optimal_allocation(document, "all", "chinchilla", 1e13)
    for n in (split["N_opt"], float(n_opt)):
        assert n == pytest.approx(at["N_opt"], rel=0.01)
    assert d_opt == pytest.approx(at["D_opt"], rel=0.01)
    vector_n, _ = optimal_allocation(document, "all", "chinchilla", np.array([1e12, 1e13, 1e14]))
    assert vector_n[1] == pytest.approx(at["N_opt"], rel=1e-6) and np.all(np.diff(vector_n) > 0)


def test_the_split_obeys_the_tables_compute_and_minimises_the_law_along_it(document):
    convention = document["compute_convention"]
    params = document["groups"]["all"]["laws"]["chinchilla"]["params"]
    n_opt, d_opt = optimal_allocation(document, "all", "chinchilla", 1e13)
    assert float(compute_of(convention, n_opt, d_opt)) == pytest.approx(1e13, rel=1e-9)
    best = float(chinchilla_loss(params, n_opt, d_opt))
    for factor in (0.97, 1.03):
        n = n_opt * factor
        assert float(chinchilla_loss(params, n, 1e13 / float(compute_of(convention, n, 1.0)))) > best
    n_6nd, d_6nd = chinchilla_optimum(params, 1e13)  # assuming C = 6 N D would give a different run
    assert abs(n_6nd / n_opt - 1) > 0.02 and d_6nd / d_opt > 1.2


def test_a_table_without_tokens_uses_six_n_d(tmp_path):
    n = np.repeat(SIZES, len(TOKENS))
    d = np.tile(TOKENS, len(SIZES))
    table = tmp_path / "t.csv"
    pd.DataFrame({"N": n, "C": 6 * n * d, "loss": chinchilla_loss(LAW, n, d)}).to_csv(table, index=False)
    document = fit_all(table, TableOptions(n_col="N", c_col="C"), FitOptions(laws=("chinchilla",), bootstrap=0))
    assert document["compute_convention"]["kind"] == "6ND"
    n_opt, d_opt = optimal_allocation(document, "all", "chinchilla", 1e13)
    assert 6 * n_opt * d_opt == pytest.approx(1e13)
    assert n_opt == pytest.approx(chinchilla_optimum(LAW, 1e13)[0], rel=0.1)
