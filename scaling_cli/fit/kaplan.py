"""Kaplan et al. 2020 single-variable laws: L(N), L(D) and L(C), each E + (X_c / X)^alpha_X, in Kaplan's conventions.

Kaplan counts N without embeddings and C = 6 N D, whatever the other laws use: N is the table's
params_nonembed where it has one (else N as given, said in fit.json) and C is recomputed as 6 N D.
L(N) is fitted on each size's converged run (its loss no longer falls with more data; Kaplan's early-stopped
runs); only when fewer than 4 sizes converged on each size's largest-budget run, which for the largest models
is the least trained, and fit.json says so. L(D) uses the largest model at each token budget,
L(C) the frontier in Kaplan's C. Fits minimise squared log-loss residuals; with the irreducible term E
(default, in each law with 4+ distinct points) E is bounded to [0, 0.99 min loss), without it the law is a
straight line in log-log space. Runs are predicted by the "Kaplan-form" of eq. 1.5 (laws.kaplan_loss):
eq. 1.5 plus an E that the paper's equation does not have.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from scaling_cli.errors import FitError
from scaling_cli.fit.laws import kaplan_loss
from scaling_cli.fit.powerlaw import add_more, r2
from scaling_cli.fit.law import Law, register
from scaling_cli.fit.kaplan_terms import fit_terms
from scaling_cli.fit.laws import kaplan_term

VARIABLES = {"L_N": ("N", "N_c", "alpha_N"), "L_D": ("D", "D_c", "alpha_D"), "L_C": ("C", "C_c", "alpha_C")}
KINDS = {"L_N": "model size", "L_D": "token budget", "L_C": "frontier run"}  # what to add when a law has too few
CONVERGED_DROP = 0.01  # a size's loss has converged when doubling its tokens lowered it by less than 1%


def largest_budget_per_size(points: pd.DataFrame) -> pd.DataFrame:
    """The run with the most tokens at each model size."""
    return points.sort_values("D").groupby("N", sort=True).tail(1).sort_values("N")


def kaplan_points(points: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """The points in Kaplan's conventions (non-embedding N where known, C = 6 N D) and a note of each."""
    frame = points.copy()
    nonembed = frame["N_nonembed"].to_numpy(dtype=float) if "N_nonembed" in frame else np.array([np.nan])
    if np.all(np.isfinite(nonembed) & (nonembed > 0)):
        frame["N"] = nonembed
        n_note = "non-embedding parameters (params_nonembed), as Kaplan et al. 2020 count N"
    else:
        n_note = "N as the table gives it: it has no params_nonembed column, so N may include embeddings"
    frame["C"] = 6.0 * frame["N"] * frame["D"]
    return frame, {"N": n_note, "C": "C = 6 N D (Kaplan et al. 2020), whatever the other laws use"}


def converged_per_size(points: pd.DataFrame, drop: float = CONVERGED_DROP) -> pd.DataFrame:
    """Each size's largest-budget run where its last doubling of tokens lowered the loss by less than `drop`
    (relative): the loss has stopped falling with data, as in Kaplan's early-stopped L(N) runs."""
    rows = []
    for _, runs in points.drop_duplicates(["N", "D"]).sort_values("D").groupby("N", sort=True):
        if len(runs) < 2:
            continue
        last, before = runs.iloc[-1], runs.iloc[-2]
        per_doubling = (before["loss"] - last["loss"]) / last["loss"] / np.log2(last["D"] / before["D"])
        if per_doubling < drop:
            rows.append(last)
    return pd.DataFrame(rows, columns=points.columns)


def size_law_points(points: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """L(N)'s points and which they are: converged sizes when 4+ sizes converged, else each size's
    largest-budget run, said to be biased. Frontier runs are not used: they are D-limited by construction,
    and eq. 1.5 built on them predicted an isoFLOP grid worse than its mean (r2 -0.94, test_fit_pipeline)."""
    converged = converged_per_size(points)
    if converged["N"].nunique() >= 4:
        rule = f"converged runs: the last doubling of D lowered the loss < {CONVERGED_DROP:.0%}"
        return converged.sort_values("N"), rule
    return largest_budget_per_size(points), (
        "largest-budget run of each size: fewer than 4 sizes converged in D, so the least-trained (largest) "
        "models bias alpha_N low; add longer runs of each size"
    )


def largest_model_per_budget(points: pd.DataFrame) -> pd.DataFrame:
    """For L(D): the largest model at each token budget."""
    return points.sort_values("N").groupby("D", sort=True).tail(1).sort_values("D")


def fit_term(
    x, loss, *, irreducible: bool, where: str, what: str, starts=(), held: dict | None = None
) -> tuple[float, float, float]:
    """(k, alpha, E) of loss = E + exp(k - alpha ln x), by least squares on log loss (kaplan_terms.fit_terms).

    `starts`, when given, are tried besides the default starting points (k, alpha, E); `held` keeps any of
    alpha, E and ln X_c ("log_scale") at a given value (--fix).
    """
    needed = 4 if irreducible else 3
    log_x = np.log(np.asarray(x, dtype=float))
    loss = np.asarray(loss, dtype=float)
    distinct = len(np.unique(np.round(log_x, 12)))
    if distinct < needed:
        fix = add_more(KINDS.get(what, "point"), distinct, needed)
        raise FitError(where, f"kaplan {what}", f"needs at least {needed} distinct points, got {distinct}: {fix}")
    mask = np.ones((1, len(loss)), dtype=bool)
    theta, cost = fit_terms(log_x, loss, mask, irreducible=irreducible, starts=starts, held=held)
    if not np.isfinite(cost[0]):
        raise FitError(where, f"kaplan {what}", "did not converge from any start")
    k, alpha, e = theta[0]
    return float(k), float(alpha), float(e)


def term_params(k: float, alpha: float, e: float, variable: str) -> dict[str, float]:
    """The fitted (k, alpha, E) as Kaplan's X_c, alpha_X and E."""
    _, critical, exponent = VARIABLES[variable]
    with np.errstate(over="ignore"):
        scale = float(np.exp(k / alpha)) if alpha > 0 else float("inf")
    return {critical: scale, exponent: alpha, "E": e}


def fit_kaplan(
    points: pd.DataFrame,
    frontier: pd.DataFrame | None = None,
    *,
    irreducible: bool | dict,
    where: str,
    starts=None,
    kaplan_conventions: bool = True,
    fixed: dict | None = None,
) -> dict:
    """All three laws; `starts` maps each law to a (k, alpha, E) vector tried besides the default starts.

    With `kaplan_conventions` (default) the points are put in Kaplan's N and C first and the frontier is
    found again in them (a given `frontier` is then not used); without, `frontier` (or the points' own) is used.
    irreducible=True fits E in every law that has at least 4 distinct points and leaves it out (E = 0)
    in a law with only 3, recording the choice per law; a dict {law: bool} fixes the choice per law.
    `fixed` holds parameters by their --fix names (alpha_N, N_c, L_N.E, ...; see FIXABLE).
    """
    conventions = {"N": "N as the table gives it", "C": "the table's C"}
    if kaplan_conventions:
        points, conventions = kaplan_points(points)
        frontier = None
    if frontier is None:
        from scaling_cli.fit.envelope import final_point_frontier

        frontier = final_point_frontier(points)
    size_rule = size_law_points(points)[1]
    subsets = {**law_subsets(points), "L_C": frontier}
    result = {name: _fit_law(name, subset, irreducible, where, starts, fixed) for name, subset in subsets.items()}
    result["fixed"] = dict(fixed or {})
    result["r2"] = r2(np.log(points["loss"]), np.log(kaplan_loss(result, points["N"], points["D"])))
    result["settings"] = {
        "irreducible": irreducible if isinstance(irreducible, bool) else "per law",
        "loss": "squared residuals of log loss",
        "conventions": conventions,
        "L_N": size_rule,
        "L_N_sizes": [float(v) for v in subsets["L_N"]["N"]],
        "L_D": "largest model at each token budget",
        "L_C": "compute-efficient frontier, in Kaplan's C",
        "run_prediction": "Kaplan-form: eq. 1.5 from L_N and L_D plus an E, the mean of their E "
        "(Kaplan's eq. 1.5 has no E)",
    }
    return result


def law_subsets(points: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The rows each law is fitted on: L(N) the size rule's, L(D) the largest model per budget, L(C) the frontier."""
    from scaling_cli.fit.envelope import final_point_frontier

    return {
        "L_N": size_law_points(points)[0],
        "L_D": largest_model_per_budget(points),
        "L_C": final_point_frontier(points),
    }


def subset_masks(points: pd.DataFrame, indices) -> dict[str, np.ndarray]:
    """Per resample (a row of `indices`), which of `points`' rows each law is fitted on: (B, n) masks."""
    masks = {name: np.zeros((len(indices), len(points)), dtype=bool) for name in VARIABLES}
    for b, rows in enumerate(indices):
        for name, subset in law_subsets(points.iloc[rows]).items():
            masks[name][b, points.index.get_indexer(subset.index)] = True
    return masks


FIXABLE = tuple(  # --fix names: each law's exponent and scale, and its E as L_N.E, L_D.E, L_C.E
    name for part, (_, critical, exponent) in VARIABLES.items() for name in (exponent, critical, f"{part}.E")
)


def part_held(name: str, fixed: dict | None) -> dict:
    """The --fix values of one law (L_N, L_D or L_C) as fit_terms holds them: alpha, E, ln X_c."""
    _, critical, exponent = VARIABLES[name]
    fixed = fixed or {}
    held = {"alpha": fixed.get(exponent), "E": fixed.get(f"{name}.E")}
    if critical in fixed:
        held["log_scale"] = float(np.log(fixed[critical])) if fixed[critical] > 0 else float("nan")
    return {key: float(value) for key, value in held.items() if value is not None}


def _fit_law(name: str, subset: pd.DataFrame, irreducible, where: str, starts, fixed=None) -> dict:
    variable = VARIABLES[name][0]
    held = part_held(name, fixed)
    if not all(np.isfinite(v) for v in held.values()) or held.get("E", 0.0) < 0 or held.get("alpha", 0.0) < 0:
        raise FitError(where, f"--fix {name}", f"held values must be finite, E and alpha >= 0, X_c > 0: {held}")
    with_e = _with_irreducible(irreducible, name, subset[variable]) or "E" in held
    extra = [starts[name]] if starts else []
    k, alpha, e = fit_term(
        subset[variable], subset["loss"], irreducible=with_e, where=where, what=name, starts=extra, held=held
    )
    predicted = e + np.exp(k - alpha * np.log(subset[variable].to_numpy(dtype=float)))
    return {
        "params": term_params(k, alpha, e, name),
        "vector": [k, alpha, e],
        "irreducible": with_e,
        "r2": r2(np.log(subset["loss"]), np.log(predicted)),
        "points": len(subset),
    }


def _with_irreducible(irreducible: bool | dict, name: str, x) -> bool:
    if isinstance(irreducible, dict):
        return bool(irreducible[name])
    return bool(irreducible) and len(np.unique(np.round(np.log(np.asarray(x, dtype=float)), 12))) >= 4


@register
class KaplanLaw(Law):
    """Kaplan et al. 2020: L(N), L(D) and L(C) on the frontier; a run's loss from eq. 1.5, no allocation."""

    name = "kaplan"
    title = "Kaplan power laws L(N), L(D), L(C)"
    label = "Kaplan"
    predicts_loss = recommendable = True
    run_rank = 1

    def problems(self, fitted: dict, points) -> list[str]:
        from scaling_cli.fit.identify import kaplan_problems

        return kaplan_problems(fitted)

    def fixable(self) -> tuple[str, ...]:
        return FIXABLE

    def fit(self, points, options, where: str) -> dict:
        from scaling_cli.fit.envelope import final_point_frontier

        return fit_kaplan(
            points,
            final_point_frontier(points),
            irreducible=options.irreducible,
            where=where,
            fixed=self.held(options),
        )

    def bootstrap(self, points, fitted: dict, indices, context: dict) -> dict:
        from scaling_cli.fit.bootstrap import bootstrap_kaplan

        extra = bootstrap_kaplan(points, fitted, indices, at_compute=context["at_compute"], where=context["where"])
        intervals = extra.pop("intervals")
        for law in VARIABLES:
            fitted[law]["intervals"] = intervals.pop(law)
        fitted["intervals"] = intervals
        return extra

    def params_of(self, fitted):
        """{L_N: {params}, L_D: ..., L_C: ...}: the three fitted parts."""
        return {name: {"params": fitted.parts[name].params} for name in VARIABLES}

    def samples_of(self, fitted):
        """The samples as one Kaplan law whose parameters are arrays (L_N, L_D, L_C in stored order)."""
        rows = np.asarray(fitted.samples, dtype=float)
        if rows.ndim != 2 or not len(rows):
            return None
        law, position = {}, 0
        for name in VARIABLES:
            keys = list(fitted.parts[name].params)
            law[name] = {"params": {key: rows[:, position + i] for i, key in enumerate(keys)}}
            position += len(keys)
        return law if position == rows.shape[1] else None

    def inputs(self, fitted, runs):
        """Kaplan's N (non-embedding, where the fit used it) and C = 6 N D for a table's runs."""
        nonembed = str(fitted.conventions.get("N", "")).startswith("non-embedding") and "N_nonembed" in runs
        n = runs["N_nonembed" if nonembed else "N"].to_numpy(dtype=float)
        d = runs["D"].to_numpy(dtype=float)
        return n, d, 6.0 * n * d, None

    def query_note(self, fitted) -> str | None:
        if str(fitted.conventions.get("N", "")).startswith("non-embedding"):
            return "Kaplan's conventions: N read as non-embedding parameters, C as 6 N D"
        return None

    def rows(self, fitted) -> list:
        """Each part's parameters under its own label (kaplan L_N, L_D, L_C), then the loss at C."""
        rows = [
            (f"kaplan {name}", key, value, fitted.parts[name].intervals.get(key))
            for name in VARIABLES
            for key, value in fitted.parts[name].params.items()
        ]
        if fitted.at_compute:
            at = fitted.at_compute
            rows.append(("kaplan L_C", f"loss @ C={at['C']:.3g}", at["loss"], fitted.intervals.get("loss_at_C")))
        return rows

    def summary(self, fitted) -> str:
        return "r2(log, eq. 1.5 on all points) " + ("-" if fitted.r2 is None else f"{fitted.r2:.4g}")

    def loss(self, params, n, d, c=None, u=None):
        return kaplan_loss(params, n, d)

    def loss_at_compute(self, params, convention: dict, c):
        law = params["L_C"]["params"]
        return kaplan_term(c, law["C_c"], law["alpha_C"], law["E"])

    def at_compute(self, fitted, convention: dict, c: float) -> dict:
        return {"C": c, "loss": float(self.loss_at_compute(self.params_of(fitted), convention, c))}
