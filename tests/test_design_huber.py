"""suggest's information matrix accounts for the Huber fit's efficiency: at delta = 1e-3 with percent-level
log-loss noise the fit is effectively L1, whose variance under Gaussian noise is pi/2 that of least squares."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize_scalar

from scaling_cli.fit import design


def huber_location(sample: np.ndarray, delta: float) -> float:
    """The Huber M-estimate of location: what the fit does to one parameter's residuals."""

    def loss(m):
        r = np.abs(sample - m)
        return float(np.sum(np.where(r <= delta, 0.5 * r * r, delta * (r - 0.5 * delta))))

    return minimize_scalar(loss, bracket=(sample.min(), sample.max()), tol=1e-12).x


def test_the_factor_is_pi_over_two_for_percent_noise_and_one_for_tiny_noise():
    assert design.huber_variance_factor(0.02) == pytest.approx(np.pi / 2, rel=0.03)
    assert design.huber_variance_factor(0.05) == pytest.approx(np.pi / 2, rel=0.015)
    assert design.huber_variance_factor(1e-5) == pytest.approx(1.0, rel=1e-3)


def test_the_factor_matches_the_variance_of_a_huber_fit_on_gaussian_noise():
    rng = np.random.default_rng(0)
    sigma, size = 0.02, 41
    samples = rng.normal(0.0, sigma, size=(600, size))
    huber = np.var([huber_location(s, design.HUBER_DELTA) for s in samples])
    least_squares = sigma**2 / size
    assert huber / least_squares == pytest.approx(design.huber_variance_factor(sigma), rel=0.15)


def test_the_information_matrix_uses_the_huber_variance():
    x = np.array([0.5, 6.0, 7.0, 0.34, 0.28])
    n, d = (a.ravel() for a in np.meshgrid([1e6, 1e7, 1e8], [1e9, 1e10, 1e11]))
    jac = design.log_loss_jacobian(x, n, d)
    prior = np.diag(1.0 / design.WEAK_PRIOR_SD**2)
    measured = design.information(x, n, d, 0.02) - prior
    assert np.allclose(measured, jac.T @ jac / (0.02**2 * design.huber_variance_factor(0.02)))
    assert np.allclose(measured * np.pi / 2, jac.T @ jac / 0.02**2, rtol=0.03)
