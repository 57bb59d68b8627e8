"""Approach 3: the published reproduction, recovery of known laws, and the batched optimiser."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import SHARED_DATA
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize

from scaling_cli.errors import FitError
from scaling_cli.fit.batched import minimize_batched
from scaling_cli.fit.chinchilla import HuberLogObjective, fit_chinchilla, grid_starts
from scaling_cli.fit.laws import chinchilla_derived, chinchilla_loss, chinchilla_optimum

CHINCHILLA_CSV = SHARED_DATA / "chinchilla_svg_extracted_data.csv"
# Besiroglu et al. 2024, Chinchilla's procedure on Epoch AI's extraction of Figure 4.
PUBLISHED = {"E": 1.817, "A": 477.8, "B": 2143.9, "alpha": 0.347, "beta": 0.367}
TOLERANCE = {"E": 0.005, "A": 0.03, "B": 0.03, "alpha": 0.005, "beta": 0.005}
SIZES = np.logspace(6, 9, 6)
TOKENS = np.logspace(8, 11, 6)


def epoch_points():
    if not CHINCHILLA_CSV.is_file():
        pytest.skip(f"{CHINCHILLA_CSV} is absent")
    table = pd.read_csv(CHINCHILLA_CSV).sort_values("loss").iloc[:-5]  # their choice: the 5 highest losses out
    n = table["Model Size"].to_numpy()
    return n, table["Training FLOP"].to_numpy() / (6 * n), table["loss"].to_numpy()


def test_reproduces_the_published_chinchilla_fit():
    n, d, loss = epoch_points()
    result = fit_chinchilla(n, d, loss, delta=1e-3)
    for name, published in PUBLISHED.items():
        assert result["params"][name] == pytest.approx(published, rel=TOLERANCE[name]), name
    diagnostics = result["diagnostics"]
    assert result["settings"]["grid_size"] == 4500
    assert diagnostics["grad_norm"] < 1e-5
    assert diagnostics["grid_edge"] == []
    assert 0 < diagnostics["starts_at_optimum"] <= diagnostics["starts_converged"] <= 4500


def grid_table(law: dict, noise: float, seed: int):
    n, d = (a.ravel() for a in np.meshgrid(SIZES, TOKENS))
    loss = chinchilla_loss(law, n, d) * np.exp(np.random.default_rng(seed).normal(0.0, noise, n.size))
    return n, d, loss


def law_from(e, alpha, beta, term_n, term_d):
    """A law whose N and D terms are term_n and term_d at the smallest sampled N and D, so both matter."""
    return {
        "E": e,
        "A": term_n * SIZES[0] ** alpha,
        "B": term_d * TOKENS[0] ** beta,
        "alpha": alpha,
        "beta": beta,
    }


@settings(max_examples=6, deadline=None, derandomize=True)
@given(
    e=st.floats(1.0, 3.0),
    alpha=st.floats(0.2, 0.6),
    beta=st.floats(0.2, 0.6),
    term_n=st.floats(0.5, 3.0),
    term_d=st.floats(0.5, 3.0),
    seed=st.integers(0, 2**16),
)
def test_recovers_known_laws_from_noisy_tables(e, alpha, beta, term_n, term_d, seed):
    # 36 points on a 6 x 6 grid over 3 decades of N and D with 0.5% multiplicative noise. Over 40 such
    # random laws the worst errors were 3.3% in E, 0.034 in alpha, 0.045 in beta and 0.8% in predicted
    # loss; the bounds below leave a 2-3x margin. A and B are not checked: along the valley of the
    # objective they trade off against alpha and beta (errors up to a factor 2), without changing L.
    law = law_from(e, alpha, beta, term_n, term_d)
    n, d, loss = grid_table(law, noise=0.005, seed=seed)
    fitted = fit_chinchilla(n, d, loss)["params"]
    assert fitted["E"] == pytest.approx(e, rel=0.10)
    assert fitted["alpha"] == pytest.approx(alpha, abs=0.10)
    assert fitted["beta"] == pytest.approx(beta, abs=0.10)
    relative = chinchilla_loss(fitted, n, d) / chinchilla_loss(law, n, d) - 1
    assert np.abs(relative).max() < 0.02


def test_noiseless_law_is_recovered_exactly():
    law = law_from(1.7, 0.34, 0.28, 2.0, 1.0)
    n, d, loss = grid_table(law, noise=0.0, seed=0)
    fitted = fit_chinchilla(n, d, loss)["params"]
    for name, value in law.items():
        assert fitted[name] == pytest.approx(value, rel=1e-3), name


def test_compute_optimal_allocation_spends_the_budget_and_minimises_loss():
    law = {"E": 1.8, "A": 480.0, "B": 2100.0, "alpha": 0.35, "beta": 0.37}
    n_opt, d_opt = chinchilla_optimum(law, 1e21)
    assert 6 * n_opt * d_opt == pytest.approx(1e21)
    for factor in (0.8, 1.25):  # moving along the budget from the optimum raises the loss
        assert chinchilla_loss(law, n_opt * factor, d_opt / factor) > chinchilla_loss(law, n_opt, d_opt)
    assert chinchilla_derived(law)["a"] == pytest.approx(0.37 / 0.72)


def test_batched_optimiser_matches_scipy_on_the_same_starts():
    n, d, loss = grid_table(law_from(2.0, 0.3, 0.4, 1.0, 1.5), noise=0.01, seed=3)
    objective = HuberLogObjective(n, d, loss, 1e-3)
    starts = grid_starts()[::150]
    batch = minimize_batched(objective, starts)
    scalar = min((minimize(objective.scalar, s, jac=True, method="L-BFGS-B") for s in starts), key=lambda r: r.fun)
    assert batch.f[batch.converged].min() == pytest.approx(scalar.fun, rel=1e-4)


def test_gradient_matches_finite_differences():
    n, d, loss = grid_table(law_from(2.0, 0.3, 0.4, 1.0, 1.5), noise=0.01, seed=4)
    objective = HuberLogObjective(n, d, loss, 1e-3)
    x = np.array([0.5, 6.0, 8.0, 0.4, 0.35])
    _, grad = objective.scalar(x)
    step = 1e-6
    numeric = [(objective.scalar(x + step * e)[0] - objective.scalar(x - step * e)[0]) / (2 * step) for e in np.eye(5)]
    assert grad == pytest.approx(numeric, rel=1e-4, abs=1e-9)


def test_too_few_points_or_sizes_is_a_fit_error():
    with pytest.raises(FitError, match="needs at least 6 points, got 4"):
        fit_chinchilla([1e6, 2e6, 3e6, 4e6], [1e9] * 4, [3.0] * 4)
    with pytest.raises(FitError, match="needs at least 3 distinct N, got 2"):
        fit_chinchilla([1e6, 2e6] * 4, np.logspace(8, 10, 8), np.linspace(3, 2, 8))
