"""Kaplan's single-variable law loss = E + exp(k - alpha ln x), fitted to many row subsets at once.

One fit is a small least-squares problem on log loss with box bounds (0 <= alpha <= 10, 0 <= E below the
subset's lowest loss). The full fit and every bootstrap resample solve the same problem on different rows,
so they are solved together: each subset is a row mask over one array, each subset starts from the straight
lines through log(loss - E) at a few E (closed-form weighted regressions) and from any given starts, and
every start takes projected Levenberg-Marquardt steps in lock-step with numpy. The best start per subset wins.

Any of alpha, E and the critical scale X_c may be held (`--fix`): a held alpha or E keeps its value, a held
X_c ties k = alpha ln X_c, and only the rest is fitted.
"""

from __future__ import annotations

import numpy as np

E_FRACTIONS = (0.0, 0.5, 0.9)  # starting E as fractions of the subset's lowest loss
ALPHA_MAX = 10.0
CEILING = 0.99  # E stays below this fraction of the lowest loss
MAX_STEPS = 200
TOLERANCE = 1e-8  # relative change of the cost that ends a start's descent (scipy least_squares' ftol)


def fit_terms(
    log_x: np.ndarray,
    loss: np.ndarray,
    masks: np.ndarray,
    *,
    irreducible: bool,
    starts=(),
    held: dict | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """((B, 3) best (k, alpha, E), (B,) cost) for each row mask of `masks` (B, n); `starts` are (k, alpha, E)
    vectors tried by every subset besides its own; `held` maps "alpha", "E" or "log_scale" (ln X_c) to values.

    Without `irreducible`, E is held at 0 (a straight line in log-log space)."""
    held = dict(held or {})
    if not irreducible:
        held["E"] = 0.0
    log_x, log_loss = np.asarray(log_x, dtype=float), np.log(np.asarray(loss, dtype=float))
    weight = np.asarray(masks, dtype=float)
    ceiling = CEILING * np.exp(np.where(weight > 0, log_loss, np.inf).min(axis=1))
    theta0, owner = _starts(log_x, log_loss, weight, ceiling, np.asarray(starts, dtype=float).reshape(-1, 3), held)
    theta, cost = _descend(theta0, log_x, log_loss, weight[owner], ceiling[owner], held)
    cost = np.where(np.isfinite(cost), cost, np.inf).reshape(len(weight), -1)
    best = cost.argmin(axis=1)
    rows = np.arange(len(weight))
    return theta.reshape(len(weight), -1, 3)[rows, best], cost[rows, best]


def _starts(log_x, log_loss, weight, ceiling, extra, held) -> tuple[np.ndarray, np.ndarray]:
    """(B * S, 3) starts, subset-major: the regression lines at each E fraction, then the shared extras."""
    per_subset = []
    for fraction in E_FRACTIONS if "E" not in held else (None,):
        e = ceiling * fraction if fraction is not None else np.full(len(weight), held["E"])
        y = np.log(np.maximum(np.exp(log_loss)[None, :] - e[:, None], 1e-300))
        slope, intercept = _weighted_line(log_x, y, weight)
        per_subset.append(np.stack([intercept, np.maximum(-slope, 1e-3), e], axis=1))
    for vector in extra:
        per_subset.append(np.broadcast_to(vector, (len(weight), 3)))
    theta = np.stack(per_subset, axis=1).reshape(-1, 3)
    owner = np.repeat(np.arange(len(weight)), len(per_subset))
    return _project(theta, ceiling[owner], held), owner


def _weighted_line(x, y, weight) -> tuple[np.ndarray, np.ndarray]:
    """Per row of `weight`: slope and intercept of the weighted least-squares line y = intercept + slope x."""
    total = weight.sum(axis=1)
    mean_x = weight @ x / total
    mean_y = (weight * y).sum(axis=1) / total
    centred = x[None, :] - mean_x[:, None]
    slope = (weight * centred * (y - mean_y[:, None])).sum(axis=1) / (weight * centred**2).sum(axis=1)
    return slope, mean_y - slope * mean_x


def _project(theta: np.ndarray, ceiling: np.ndarray, held: dict) -> np.ndarray:
    """Into the bounds, with held coordinates at their values (a held X_c sets k = alpha ln X_c)."""
    theta = theta.copy()
    theta[:, 1] = np.clip(theta[:, 1], 0.0, ALPHA_MAX) if "alpha" not in held else held["alpha"]
    theta[:, 2] = np.clip(theta[:, 2], 0.0, ceiling) if "E" not in held else held["E"]
    if "log_scale" in held:
        theta[:, 0] = theta[:, 1] * held["log_scale"]
    return theta


def _residuals(theta, log_x, log_loss, weight):
    """Masked residuals of log loss and their derivatives by k, alpha and E."""
    k, alpha, e = (theta[:, i : i + 1] for i in range(3))
    term = np.exp(np.minimum(k - alpha * log_x[None, :], 700.0))
    predicted = e + term
    residual = (np.log(predicted) - log_loss[None, :]) * weight
    share = term / predicted * weight
    jacobian = np.stack([share, -log_x[None, :] * share, weight / predicted], axis=2)
    return residual, jacobian


def _free_jacobian(jacobian: np.ndarray, held: dict) -> np.ndarray:
    """The Jacobian in the free coordinates: held columns zeroed, a held X_c folding k into alpha."""
    jacobian = jacobian.copy()
    if "log_scale" in held:
        jacobian[:, :, 1] += held["log_scale"] * jacobian[:, :, 0]
        jacobian[:, :, 0] = 0.0
    for name, column in (("alpha", 1), ("E", 2)):
        if name in held:
            jacobian[:, :, column] = 0.0
    return jacobian


def _descend(theta, log_x, log_loss, weight, ceiling, held) -> tuple[np.ndarray, np.ndarray]:
    """Projected Levenberg-Marquardt from every start in lock-step; (theta, cost) where each one stopped."""
    with np.errstate(all="ignore"):
        residual, jacobian = _residuals(theta, log_x, log_loss, weight)
        cost = 0.5 * (residual**2).sum(axis=1)
        damping = np.full(len(theta), 1e-3)
        active = np.isfinite(cost)
        for _ in range(MAX_STEPS):
            if not active.any():
                break
            free = _free_jacobian(jacobian[active], held)
            normal = np.einsum("pni,pnj->pij", free, free)
            gradient = np.einsum("pni,pn->pi", free, residual[active])
            scaled = (
                normal
                + damping[active, None, None] * (np.eye(3) * np.maximum(normal, 1e-12))
                + np.eye(3) * (np.abs(free).sum(axis=1)[:, :, None] == 0)
            )
            step = -np.linalg.solve(scaled, gradient[:, :, None])[:, :, 0]
            trial = _project(theta[active] + step, ceiling[active], held)
            trial_residual, trial_jacobian = _residuals(trial, log_x, log_loss, weight[active])
            trial_cost = 0.5 * (trial_residual**2).sum(axis=1)
            better = np.isfinite(trial_cost) & (trial_cost < cost[active])
            index = np.flatnonzero(active)
            moved = index[better]
            settled = (cost[moved] - trial_cost[better]) <= TOLERANCE * np.maximum(cost[moved], 1e-300)
            theta[moved], cost[moved] = trial[better], trial_cost[better]
            residual[moved], jacobian[moved] = trial_residual[better], trial_jacobian[better]
            damping[moved] /= 3.0
            stuck = index[~better]
            damping[stuck] *= 4.0
            active[moved[settled]] = False
            active[stuck[damping[stuck] > 1e12]] = False
    return theta, cost
