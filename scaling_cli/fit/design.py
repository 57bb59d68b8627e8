"""Choose the next runs of a sweep: a greedy c-optimal experimental design for the Approach 3 law.

The law's log loss is f(theta; N, D) = LSE(e, a - alpha ln N, b - beta ln D) with theta = (e, a, b, alpha,
beta), the fitter's own vector (E = exp e, A = exp a, B = exp b). Linearised around the current fit, a run
at (N, D) with log-loss noise sigma adds j j^T / s^2 to the information matrix, j = df/dtheta, so after
adding a set S of runs the parameters' covariance is (Sigma0^-1 + J_S^T J_S / s^2)^-1, where s^2 is sigma^2
times the Huber fit's variance factor (pi/2 at the default delta with percent-level residuals). A prediction g
the user bets on (ln N_opt and ln L_opt at a target compute C) then has variance grad_g^T Cov grad_g.

Two things make one linearisation a poor guide, and the design is scored over many instead:
- one fit of a small sweep can be far from the truth (E running off to 0 is common), so the law is
  linearised at the fit and at each of its bootstrap refits;
- the interval the user reads is a bootstrap over runs, and a resample that leaves out the one run a
  direction rests on is wide; so each linearisation is also taken under bootstrap reweightings of the runs
  (Poisson(1) counts for measured and candidate runs alike), and a design that leans on a single run pays.
The criterion is, per target, the log of the mean variance over all of them (weighted over targets). The
design is greedy: starting from no new run, add the run that lowers the criterion most per FLOP, until no
affordable run is left; the greedy is also restarted from the best single first moves. c-optimal designs
need few distinct points; the greedy finds them without a solver, and every step can be printed as "this
run, this cost, this much narrower".
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy import stats

from scaling_cli.errors import FitError
from scaling_cli.fit import bootstrap, chinchilla
from scaling_cli.fit.chinchilla import to_params
from scaling_cli.fit.laws import chinchilla_loss, chinchilla_optimum

Z95 = 1.959963984540054
MIN_SIGMA = 1e-3  # a fit that passes through every point still has noise; below 0.1% of the loss nothing is measured
# A weak prior (standard deviations in the fitter's units) keeps the information matrix invertible when the
# data leave a direction free (E -> 0 sends e to -inf); it is far wider than any identified direction.
WEAK_PRIOR_SD = np.array([10.0, 10.0, 10.0, 1.0, 1.0])
MIN_EXPONENT = 0.02  # alpha or beta below this: no finite compute-optimal allocation to pin down
FD_STEP = 1e-5
HUBER_DELTA = 1e-3  # the fit's Huber delta on log loss (FitOptions.delta), which sets its efficiency
EDGE_CONFIDENCE = 0.99  # a left-out low edge predicted worse than this quantile of chance allows: the law bends there


# ---- the law, its Jacobian and the targets ----


def log_loss_jacobian(x: np.ndarray, n, d) -> np.ndarray:
    """(m, 5) derivatives of ln L(N, D) with respect to (e, a, b, alpha, beta) at each point."""
    e, a, b, alpha, beta = (float(v) for v in x)
    log_n = np.log(np.asarray(n, dtype=float))
    log_d = np.log(np.asarray(d, dtype=float))
    terms = np.column_stack([np.full_like(log_n, e), a - alpha * log_n, b - beta * log_d])
    share = np.exp(terms - terms.max(axis=1, keepdims=True))
    share /= share.sum(axis=1, keepdims=True)
    return np.column_stack([share[:, 0], share[:, 1], share[:, 2], -share[:, 1] * log_n, -share[:, 2] * log_d])


def default_allocation(params: dict, c) -> tuple[np.ndarray, np.ndarray]:
    """N_opt, D_opt at compute c with the law's own convention (C = 6 N D)."""
    return chinchilla_optimum(params, c)


def target_values(x: np.ndarray, compute: float, allocation: Callable = default_allocation) -> np.ndarray:
    """[ln N_opt(C), ln L(N_opt, D_opt)] of the law with vector x."""
    params = to_params(x)
    n_opt, d_opt = allocation(params, compute)
    return np.array([np.log(float(n_opt)), np.log(float(chinchilla_loss(params, n_opt, d_opt)))])


def target_gradients(x: np.ndarray, compute: float, allocation: Callable = default_allocation) -> np.ndarray:
    """(2, 5) gradients of the targets by central differences (any allocation rule works unchanged)."""
    x = np.asarray(x, dtype=float)
    columns = []
    for i in range(len(x)):
        step = np.zeros_like(x)
        step[i] = FD_STEP
        columns.append(target_values(x + step, compute, allocation) - target_values(x - step, compute, allocation))
    return np.column_stack(columns) / (2 * FD_STEP)


# ---- what is known today ----


def residual_sigma(x: np.ndarray, n, d, loss) -> float:
    """Root mean square of the log-loss residuals with the five fitted parameters' degrees of freedom removed."""
    residual = np.log(np.asarray(loss, dtype=float)) - np.log(chinchilla_loss(to_params(x), n, d))
    dof = max(len(residual) - len(x), 1)
    return max(float(np.sqrt(np.sum(residual**2) / dof)), MIN_SIGMA)


def seed_sigma(keys: Sequence, loss) -> float | None:
    """Pooled standard deviation of ln loss between runs sharing a key (seeds of one (N, D)); None without repeats."""
    log_loss = np.log(np.asarray(loss, dtype=float))
    groups: dict = {}
    for key, value in zip(keys, log_loss):
        groups.setdefault(key, []).append(value)
    squares, dof = 0.0, 0
    for values in groups.values():
        if len(values) > 1:
            squares += float(np.sum((np.array(values) - np.mean(values)) ** 2))
            dof += len(values) - 1
    return float(np.sqrt(squares / dof)) if dof else None


def huber_variance_factor(sigma: float, delta: float = HUBER_DELTA) -> float:
    """Variance of the Huber fit over that of least squares under Gaussian noise of sd `sigma`:
    E[psi^2] / E[psi']^2 / sigma^2 with k = delta / sigma (Huber 1964); pi/2 when k -> 0 (the fit is then
    effectively L1, as with delta = 1e-3 and 1-5% residuals), 1 when k -> infinity (least squares)."""
    k = delta / sigma
    inside = 2.0 * stats.norm.cdf(k) - 1.0
    if inside < 1e-6:
        return float(np.pi / 2.0)
    psi_squared = inside - 2.0 * k * stats.norm.pdf(k) + k * k * (1.0 - inside)
    return float(psi_squared / inside**2)


def fit_variance(sigma: float) -> float:
    """The per-run variance the Huber fit's parameters see: sigma^2 times its efficiency loss."""
    return sigma**2 * huber_variance_factor(sigma)


def information(x: np.ndarray, n, d, sigma: float, huber: bool = True) -> np.ndarray:
    """Gauss-Newton information matrix of the measured points under the Huber fit (least squares with
    huber=False), plus the weak prior."""
    jac = log_loss_jacobian(x, n, d)
    return jac.T @ jac / (fit_variance(sigma) if huber else sigma**2) + np.diag(1.0 / WEAK_PRIOR_SD**2)


def bootstrap_vectors(n, d, loss, x: np.ndarray, count: int, seed: int, grid: dict, delta: float = 1e-3) -> np.ndarray:
    """(k, 5) refits of resampled points that still have a compute-optimal allocation (both exponents positive)."""
    indices = bootstrap.resample_indices(len(loss), count, seed)
    starts = np.vstack([x, bootstrap.nearest_grid_starts(x, grid)])
    weights = bootstrap.multiplicities(indices, len(loss))
    vectors = chinchilla.refit_resamples(n, d, loss, weights, starts, delta)
    keep = np.all(np.isfinite(vectors), axis=1) & (vectors[:, 3] > MIN_EXPONENT) & (vectors[:, 4] > MIN_EXPONENT)
    return vectors[keep]


def identification_problem(x: np.ndarray, n, d) -> str | None:
    """Why the current fit cannot say where the optimum is (and what to add), or None when it can."""
    for name, values, budget in (("N", n, "model size"), ("D", d, "token budget")):
        distinct = len(np.unique(np.round(np.log(np.asarray(values, dtype=float)), 9)))
        if distinct < 3:
            return f"the data have {distinct} distinct {name}; add a {_ordinal(distinct + 1)} {budget} first"
    alpha, beta = float(x[3]), float(x[4])
    for name, value, what in (("alpha", alpha, "model size"), ("beta", beta, "token budget")):
        if not value > MIN_EXPONENT:
            return (
                f"the fitted {name} is {value:.3g}: the loss does not fall with {what} over the data, so there is no "
                f"compute-optimal allocation to pin down; widen the range of {what}s first"
            )
    return None


def low_edge_misfit(n, d, loss, sigma: float, grid: dict | None = None) -> str | None:
    """Why runs below the data's smallest size or budget should not be proposed, or None when they may be.

    Candidates below the range are cheap and, where the law holds, pin the exponents; but they rest on the
    law holding further down than anything measured. The check is the same extrapolation one step down
    inside the data: the law refitted without the smallest size (then without the smallest budget) must
    predict those runs within what noise and the refit's linearised uncertainty allow (a chi-square test of
    the standardised log errors at EDGE_CONFIDENCE).
    """
    n, d, loss = (np.asarray(v, dtype=float) for v in (n, d, loss))
    for name, values in (("size", n), ("token budget", d)):
        edge = np.isclose(np.log(values), np.log(values.min()), atol=1e-9)
        if len(np.unique(np.round(np.log(values[~edge]), 9))) < 3:
            return f"checking the law below the data needs 4 distinct {name}s, the smallest left out"
        try:
            fitted = chinchilla.fit_chinchilla(n[~edge], d[~edge], loss[~edge], grid=grid or chinchilla.CHINCHILLA_GRID)
        except FitError as exc:
            return f"the law refitted without the smallest {name} fails: {exc.problem}"
        x = np.array(fitted["vector"], dtype=float)
        error = np.log(loss[edge]) - np.log(chinchilla_loss(fitted["params"], n[edge], d[edge]))
        jac = log_loss_jacobian(x, n[edge], d[edge])
        # least-squares spread: the chi-square threshold was set on it; with the Huber factor a 6% bend of the
        # smallest size passes the check (tests/test_suggest.py)
        covariance = np.linalg.inv(information(x, n[~edge], d[~edge], sigma, huber=False))
        spread = sigma**2 + np.einsum("ki,ij,kj->k", jac, covariance, jac)
        if np.mean(error**2 / spread) > stats.chi2.ppf(EDGE_CONFIDENCE, edge.sum()) / edge.sum():
            rms = float(np.sqrt(np.mean(error**2)))
            return (
                f"fitted without the smallest {name}, the law misses those runs by {100 * rms:.2g}% (RMS), more than "
                f"noise ({100 * sigma:.2g}% a run) and the refit's own uncertainty explain, so it is not trusted "
                "below the data"
            )
    return None


def _ordinal(k: int) -> str:
    return {1: "first", 2: "second", 3: "third", 4: "fourth"}.get(k, f"{k}th")


# ---- the greedy design ----


@dataclass(frozen=True)
class Linearisation:
    """The law linearised at one parameter vector: today's information, candidate rows and target gradients.

    A design is scored over several of them (the fit and its bootstrap refits) so that a run chosen for
    what it would teach does not depend on the current fit being exactly right.
    """

    precision: np.ndarray  # (5, 5) information of the measured points (with the weak prior)
    jacobian: np.ndarray  # (m, 5) one row per candidate run
    gradients: np.ndarray  # (t, 5) one row per target


def linearise(x: np.ndarray, n0, d0, n, d, sigma: float, compute: float, allocation=default_allocation):
    """The Linearisation at vector x for measured points (n0, d0) and candidates (n, d)."""
    return Linearisation(
        precision=information(x, n0, d0, sigma),
        jacobian=log_loss_jacobian(x, n, d),
        gradients=target_gradients(x, compute, allocation),
    )


def linearisations(
    vectors: Sequence[np.ndarray],
    n0,
    d0,
    n,
    d,
    sigma: float,
    compute: float,
    allocation: Callable = default_allocation,
    reweightings: int = 16,
    seed: int = 0,
    row_scale=1.0,
) -> list[Linearisation]:
    """What the design is scored over: the plain linearisation at vectors[0] (the fit: what is reported), then
    at every vector `reweightings` bootstrap reweightings of the measured and candidate runs (Poisson(1)
    counts, as the bootstrap's multinomial counts are for many runs). `row_scale` multiplies candidate rows
    (sqrt(seeds) when a cell trains several seeds)."""
    rng = np.random.default_rng(seed)
    plain = linearise(vectors[0], n0, d0, n, d, sigma, compute, allocation)
    out = [replace(plain, jacobian=plain.jacobian * row_scale)]
    prior = np.diag(1.0 / WEAK_PRIOR_SD**2)
    for x in vectors:
        measured, candidates = log_loss_jacobian(x, n0, d0), log_loss_jacobian(x, n, d) * row_scale
        gradients = target_gradients(x, compute, allocation)
        for _ in range(reweightings):
            counts = rng.poisson(1.0, len(measured))
            precision = (measured * counts[:, None]).T @ measured / fit_variance(sigma) + prior
            jacobian = candidates * np.sqrt(rng.poisson(1.0, len(candidates)))[:, None]
            out.append(Linearisation(precision=precision, jacobian=jacobian, gradients=gradients))
    return out


@dataclass(frozen=True)
class Step:
    """One greedy step: the candidate rows it adds, what they cost, and the target variances after it
    (at the current fit, the first linearisation)."""

    rows: tuple[int, ...]
    cost: float
    variances: tuple[float, ...]


@dataclass(frozen=True)
class Design:
    start_variances: tuple[float, ...]
    steps: tuple[Step, ...]
    budget: float

    @property
    def rows(self) -> list[int]:
        return [row for step in self.steps for row in step.rows]

    @property
    def spent(self) -> float:
        return float(sum(step.cost for step in self.steps))

    @property
    def variances(self) -> tuple[float, ...]:
        return self.steps[-1].variances if self.steps else self.start_variances


def interval_factor(variance: float) -> float:
    """Width of a 95% interval of a log quantity, as a ratio hi / lo: exp(2 * 1.96 * sd)."""
    return float(np.exp(2 * Z95 * np.sqrt(max(variance, 0.0))))


def target_variances(precision: np.ndarray, gradients: np.ndarray) -> np.ndarray:
    return _quadratic(np.linalg.inv(precision), gradients)


def single_runs(chosen: frozenset, count: int) -> list[tuple[int, ...]]:
    """Moves for a free design: every candidate not chosen yet, one at a time."""
    return [(i,) for i in range(count) if i not in chosen]


def greedy_design(
    linearisations: Sequence[Linearisation],
    sigma: float,
    budget: float,
    cost_of: Callable[[frozenset], float],
    moves: Callable[[frozenset], list[tuple[int, ...]]] | None = None,
    weights: Sequence[float] | None = None,
    first_moves: int = 24,
) -> Design:
    """Grow a set of candidate rows greedily by criterion gained per FLOP until nothing affordable helps.

    The criterion is sum_t weights[t] * ln(mean over linearisations of Var(target t)): the log of the
    expected squared width, so halving one interval counts the same wherever it starts, and linearisations
    where a direction is lost (a reweighting without the run it rests on) weigh in. `cost_of(rows)`
    is the compute of a set of rows (not always a sum: WSD branches share their trunk; an AdditiveCost is
    priced without a call per candidate); `moves(chosen)` lists the sets that may be added next (default:
    any single candidate).

    Gain per FLOP favours cheap runs, and the first move decides much (on a grid it fixes a size and a
    budget), so the greedy also starts from each of the `first_moves` affordable first moves with the largest
    gains (gain alone, not per FLOP) and keeps the design that ends with the lowest criterion.
    """
    precision = np.stack([lin.precision for lin in linearisations])
    jacobian = np.stack([lin.jacobian for lin in linearisations])
    gradients = np.stack([lin.gradients for lin in linearisations])
    weights = np.ones(gradients.shape[1]) if weights is None else np.asarray(weights, dtype=float)
    moves = moves or (lambda chosen: single_runs(chosen, jacobian.shape[1]))
    state = _State(budget, cost_of, moves)
    start = _Posterior(precision, jacobian, gradients, fit_variance(sigma), weights)
    best = state.grow(start)
    for rows in state.largest_first_moves(start, first_moves):
        design = state.grow(start, forced=rows)
        if design[0] < best[0]:
            best = design
    return Design(
        start_variances=tuple(float(v) for v in start.variances[0]), steps=tuple(best[1]), budget=float(budget)
    )


class _Posterior:
    """The linearisations after a set of rows: precisions, covariances and, per open candidate row, what adding
    it would change (j^T Cov j, and g^T Cov j for each weighted target). Adding a row updates these by rank one
    (Sherman-Morrison) in O(K m 5), in place (K x m temporaries cost more in page faults than in arithmetic),
    rather than recomputing them in O(K m 25); the precision is inverted afresh, so reported variances are exact.
    """

    def __init__(self, precision, jacobian, gradients, noise, weights):
        self.jacobian, self.gradients, self.noise = jacobian, gradients, noise
        self.scored = np.flatnonzero(weights)  # a target of weight 0 adds exactly 0 to the criterion
        self.weights = weights[self.scored]
        self.columns = np.ascontiguousarray(jacobian.transpose(0, 2, 1))  # (K, 5, m)
        self.precision, self.covariance = precision, np.linalg.inv(precision)  # (K, 5, 5) each
        self.variances = _quadratic(self.covariance, gradients)  # (K, t)
        self.scratch = np.empty(jacobian.shape[0] * jacobian.shape[1])
        # only the rows that can still be chosen are followed: `tracked` lists them, `where` finds their column
        self.tracked, self.where = np.arange(jacobian.shape[1]), np.arange(jacobian.shape[1])
        self.row_variance, self.target_row = self._exact(self.tracked)  # (K, m), (K, t, m)

    def _exact(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """j^T Cov j (K, r) and g^T Cov j (K, t, r) of `rows` from the covariance."""
        block = self.jacobian[:, rows]
        cov_rows = block @ self.covariance.transpose(0, 2, 1)  # (K, r, 5)
        targets = self.gradients[:, self.scored] @ cov_rows.transpose(0, 2, 1)
        return np.einsum("kmi,kmi->km", cov_rows, block), np.ascontiguousarray(targets)

    def copy(self) -> _Posterior:
        twin = object.__new__(_Posterior)
        twin.__dict__.update(self.__dict__)
        twin.row_variance, twin.target_row = self.row_variance.copy(), self.target_row.copy()
        twin.where, twin.scratch = self.where.copy(), np.empty_like(self.scratch)
        return twin

    def track(self, rows: np.ndarray) -> None:
        """Follow exactly `rows` from now on (the moves still open), computing any not followed so far."""
        if np.array_equal(rows, self.tracked):
            return
        found = self.where[rows]
        new = found < 0  # not followed since an earlier step: computed from the covariance
        row_variance = np.take(self.row_variance, np.where(new, 0, found), axis=1)
        target_row = np.take(self.target_row, np.where(new, 0, found), axis=2)
        if new.any():
            row_variance[:, new], target_row[:, :, new] = self._exact(rows[new])
        self.row_variance, self.target_row, self.tracked = row_variance, target_row, rows
        self.where[:], self.where[rows] = -1, np.arange(len(rows))

    def criterion(self) -> float:
        return float(self.weights @ np.log(np.maximum(self.variances[:, self.scored].mean(axis=0), 1e-300)))

    def criteria_after_each(self, rows: np.ndarray) -> np.ndarray:
        """The criterion after adding each of the single rows (all followed) on its own."""
        every, found = np.array_equal(rows, self.tracked), self.where[rows]
        denominator = (self.row_variance if every else np.take(self.row_variance, found, axis=1)) + self.noise
        drop = self.scratch[: denominator.size].reshape(denominator.shape)
        means = np.empty((len(self.scored), len(rows)))
        for i, target in enumerate(self.scored):
            np.square(self.target_row[:, i] if every else np.take(self.target_row[:, i], found, axis=1), out=drop)
            drop /= denominator
            np.subtract(self.variances[:, target, None], drop, out=drop)
            means[i] = drop.mean(axis=0)
        return self.weights @ np.log(np.maximum(means, 1e-300))

    def criterion_after_block(self, rows) -> float:
        """The criterion after adding all of `rows` together."""
        block = self.jacobian[:, list(rows)]
        after = target_variances(self.precision + np.einsum("kri,krj->kij", block, block) / self.noise, self.gradients)
        return float(self.weights @ np.log(np.maximum(after[:, self.scored].mean(axis=0), 1e-300)))

    def add(self, rows) -> None:
        """Take `rows` into the design, one rank-one update per row."""
        for row in rows:
            added = self.jacobian[:, row]  # (K, 5)
            spread = (self.covariance @ added[:, :, None])[:, :, 0]  # Cov j
            denominator = self.noise + np.einsum("ki,ki->k", added, spread)
            shared = np.take((spread[:, None, :] @ self.columns)[:, 0], self.tracked, axis=1)  # j_m^T Cov j
            shared /= denominator[:, None]
            by_target = np.einsum("kti,ki->kt", self.gradients[:, self.scored], spread)  # g^T Cov j
            change = self.scratch[: shared.size].reshape(shared.shape)
            self.row_variance -= np.multiply(np.multiply(shared, denominator[:, None], out=change), shared, out=change)
            for i in range(len(self.scored)):
                np.multiply(shared, by_target[:, i, None], out=change)
                self.target_row[:, i] -= change
            self.precision = self.precision + np.einsum("ki,kj->kij", added, added) / self.noise
            self.covariance = np.linalg.inv(self.precision)
        self.variances = _quadratic(self.covariance, self.gradients)


def _quadratic(covariance: np.ndarray, gradients: np.ndarray) -> np.ndarray:
    return np.einsum("...ki,...ij,...kj->...k", gradients, covariance, gradients)


class _State:
    """What every greedy run shares: the budget, costs and moves."""

    def __init__(self, budget, cost_of, moves):
        self.budget, self.cost_of, self.moves = budget, cost_of, moves

    def options(self, chosen: frozenset, spent: float):
        found = self.moves(chosen)
        if isinstance(self.cost_of, AdditiveCost):
            costs = self.cost_of.added(chosen, found)
        else:
            base = self.cost_of(chosen)
            costs = [self.cost_of(chosen | set(rows)) - base for rows in found]
        limit = self.budget * (1 + 1e-9)
        return [(rows, cost) for rows, cost in zip(found, costs) if 0 < cost and spent + cost <= limit]

    @staticmethod
    def scores(posterior: _Posterior, options) -> np.ndarray:
        """The criterion after each option on its own."""
        if all(len(rows) == 1 for rows, _ in options):
            return posterior.criteria_after_each(np.array([rows[0] for rows, _ in options]))
        return np.array([posterior.criterion_after_block(rows) for rows, _ in options])

    def largest_first_moves(self, posterior: _Posterior, count: int) -> list[tuple[int, ...]]:
        """The affordable first moves with the largest criterion gains, regardless of cost."""
        options = self.options(frozenset(), 0.0)
        if count <= 0 or not options:
            return []
        order = np.argsort(self.scores(posterior, options) - posterior.criterion())[:count]
        return [options[i][0] for i in order]

    def grow(self, start: _Posterior, forced=None):
        """(final criterion, steps) of the greedy from `start`; `forced` is taken as the first move."""
        posterior, chosen, spent, steps = start.copy(), frozenset(), 0.0, []
        while True:
            options = self.options(chosen, spent)
            if options and all(len(rows) == 1 for rows, _ in options):  # one that reopens is computed afresh
                posterior.track(np.array([rows[0] for rows, _ in options]))
            if forced is not None:
                options = [(rows, cost) for rows, cost in options if tuple(rows) == tuple(forced)]
                forced = None
            if not options:
                break
            gain = (posterior.criterion() - self.scores(posterior, options)) / np.array([cost for _, cost in options])
            best = int(np.argmax(gain))
            if not gain[best] > 0:
                break
            rows, cost = options[best]
            posterior.add(rows)
            chosen, spent = chosen | set(rows), spent + cost
            steps.append(
                Step(rows=tuple(rows), cost=float(cost), variances=tuple(float(v) for v in posterior.variances[0]))
            )
        return posterior.criterion(), steps


class AdditiveCost:
    """cost_of for runs that each train from scratch: a set costs the sum of its runs."""

    def __init__(self, costs):
        self.costs = np.asarray(costs, dtype=float)

    def __call__(self, rows) -> float:
        return float(self.costs[list(rows)].sum()) if rows else 0.0

    def added(self, chosen: frozenset, moves) -> list[float]:
        """What each move adds to `chosen`: its runs not chosen yet."""
        if all(len(rows) == 1 for rows in moves):
            return [0.0 if rows[0] in chosen else float(self.costs[rows[0]]) for rows in moves]
        return [float(self.costs[[r for r in set(rows) if r not in chosen]].sum()) for rows in moves]


additive_cost = AdditiveCost  # the name the callers know
