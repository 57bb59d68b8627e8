"""Minimise many small smooth problems at once: BFGS run in lock-step over a batch of starting points.

Every start keeps its own inverse-Hessian estimate; one numpy call evaluates the objective and gradient
of all still-active starts together, so thousands of starts cost about as much as a few dozen loops of
a scalar optimiser. Starts leave the batch as soon as they meet scipy's L-BFGS-B stopping rules.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

# fun_grad(x, rows) -> (f, g): objective values (k,) and gradients (k, p) of the starts `rows` at x (k, p).
FunGrad = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]

ARMIJO_C1 = 1e-4
MAX_HALVINGS = 40


@dataclass
class BatchResult:
    x: np.ndarray  # (k, p) final points
    f: np.ndarray  # (k,) objective at x
    grad_norm: np.ndarray  # (k,) max-abs gradient at x
    converged: np.ndarray  # (k,) met the gradient or objective-decrease rule
    iterations: np.ndarray  # (k,) BFGS iterations used


def minimize_batched(
    fun_grad: FunGrad,
    x0: np.ndarray,
    *,
    max_iter: int = 1000,
    gtol: float = 1e-5,
    ftol: float = 2.220446049250313e-09,
    max_first_step: float = 1.0,
) -> BatchResult:
    """BFGS with backtracking (Armijo) line search on every row of x0 at once.

    Stopping rules follow scipy's L-BFGS-B defaults: max |gradient| <= gtol, or a relative decrease
    (f_old - f_new) / max(|f_old|, |f_new|, 1) <= ftol.
    """
    x = np.array(x0, dtype=float)
    k, p = x.shape
    all_rows = np.arange(k)
    f, g = fun_grad(x, all_rows)
    inv_h = np.broadcast_to(np.eye(p), (k, p, p)).copy()
    fresh = np.ones(k, dtype=bool)  # inverse Hessian not yet scaled by a curvature pair
    converged = np.abs(g).max(axis=1) <= gtol
    stalled = ~np.isfinite(f)
    iterations = np.zeros(k, dtype=int)
    for _ in range(max_iter):
        active = np.flatnonzero(~converged & ~stalled)
        if active.size == 0:
            break
        iterations[active] += 1
        direction = -np.einsum("kij,kj->ki", inv_h[active], g[active])
        slope = np.einsum("ki,ki->k", direction, g[active])
        uphill = ~(slope < 0)
        if uphill.any():  # the estimate lost positive definiteness: restart from steepest descent
            reset = active[uphill]
            inv_h[reset] = np.eye(p)
            fresh[reset] = True
            direction[uphill] = -g[reset]
            slope[uphill] = -np.einsum("ki,ki->k", g[reset], g[reset])
        step = np.ones(active.size)
        first = fresh[active]
        size = np.abs(direction).max(axis=1)
        step[first] = np.minimum(1.0, max_first_step / np.maximum(size[first], 1e-300))
        f_new, g_new, step, ok = _backtrack(fun_grad, x, f, active, direction, slope, step)
        stalled[active[~ok]] = True
        moved = active[ok]
        s = step[ok, None] * direction[ok]
        y = g_new[ok] - g[moved]
        f_old = f[moved]
        x[moved] += s
        f[moved] = f_new[ok]
        g[moved] = g_new[ok]
        _bfgs_update(inv_h, fresh, moved, s, y)
        decrease = (f_old - f[moved]) / np.maximum(np.maximum(np.abs(f_old), np.abs(f[moved])), 1.0)
        done = (decrease <= ftol) | (np.abs(g[moved]).max(axis=1) <= gtol)
        converged[moved[done]] = True
    grad_norm = np.abs(g).max(axis=1)
    converged |= grad_norm <= gtol
    return BatchResult(x=x, f=f, grad_norm=grad_norm, converged=converged & np.isfinite(f), iterations=iterations)


def _backtrack(fun_grad, x, f, active, direction, slope, step):
    """Halve each start's step until the Armijo condition holds; returns values at the accepted points."""
    f_new = np.full(active.size, np.inf)
    g_new = np.zeros_like(direction)
    ok = np.zeros(active.size, dtype=bool)
    todo = np.arange(active.size)
    for _ in range(MAX_HALVINGS):
        rows = active[todo]
        trial = x[rows] + step[todo, None] * direction[todo]
        f_try, g_try = fun_grad(trial, rows)
        accept = np.isfinite(f_try) & (f_try <= f[rows] + ARMIJO_C1 * step[todo] * slope[todo])
        f_new[todo[accept]] = f_try[accept]
        g_new[todo[accept]] = g_try[accept]
        ok[todo[accept]] = True
        todo = todo[~accept]
        if todo.size == 0:
            break
        step[todo] *= 0.5
    return f_new, g_new, step, ok


def _bfgs_update(inv_h, fresh, rows, s, y):
    """Apply the BFGS inverse-Hessian update where the curvature condition y.s > 0 holds."""
    ys = np.einsum("ki,ki->k", y, s)
    good = ys > 1e-12 * np.linalg.norm(y, axis=1) * np.linalg.norm(s, axis=1)
    if not good.any():
        return
    rows, s, y, ys = rows[good], s[good], y[good], ys[good]
    p = s.shape[1]
    first = fresh[rows]
    if first.any():  # scale the identity by the observed curvature before the first update (Nocedal-Wright 6.20)
        scale = ys[first] / np.einsum("ki,ki->k", y[first], y[first])
        inv_h[rows[first]] = scale[:, None, None] * np.eye(p)
        fresh[rows[first]] = False
    rho = 1.0 / ys
    h = inv_h[rows]
    hy = np.einsum("kij,kj->ki", h, y)
    yhy = np.einsum("ki,ki->k", y, hy)
    # H+ = H - rho (s hy^T + hy s^T) + (rho^2 yHy + rho) s s^T, the expanded BFGS inverse update
    outer_s_hy = s[:, :, None] * hy[:, None, :]
    h = h - rho[:, None, None] * (outer_s_hy + outer_s_hy.transpose(0, 2, 1))
    with np.errstate(over="ignore", invalid="ignore"):
        h += (rho * rho * yhy + rho)[:, None, None] * (s[:, :, None] * s[:, None, :])
    broken = ~np.isfinite(h).all(axis=(1, 2))
    h[broken] = np.eye(p)  # a degenerate curvature pair: restart that start from steepest descent
    fresh[rows[broken]] = True
    inv_h[rows] = h


class Held:
    """An objective over the free coordinates only: the `fixed` ones (index -> value) are held."""

    def __init__(self, objective, fixed: dict[int, float], size: int):
        self.objective = objective
        self.fixed = fixed
        self.free = np.array([i for i in range(size) if i not in fixed], dtype=int)
        self.size = size

    def full(self, x: np.ndarray) -> np.ndarray:
        x = np.atleast_2d(x)
        out = np.empty((len(x), self.size))
        out[:, self.free] = x
        for i, value in self.fixed.items():
            out[:, i] = value
        return out

    def __call__(self, x: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        f, g = self.objective(self.full(x), rows)
        return f, g[:, self.free]

    def scalar(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        f, g = self(np.asarray(x, dtype=float)[None, :], np.zeros(1, dtype=int))
        return float(f[0]), g[0]
