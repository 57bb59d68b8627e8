"""`scale suggest`: which runs to train next, with a FLOP budget, so that the prediction at a target compute
is pinned down. Fits Approach 3 (with bootstrap refits), builds the candidates (the sweep's own shape family
for a results directory, a log grid of N and D for a table), runs the greedy design of fit/design.py and
returns the proposal as plain data; the spec text when the candidates come from a sweep.

A fit that cannot say where the optimum is (too few distinct sizes or budgets, an exponent <= 0) is answered
with a refusal and what to add, not an error: `refused` holds the reason and no runs are proposed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from scaling_cli.errors import FitError
from scaling_cli.fit import FitOptions, TableOptions, fit_all
from scaling_cli.fit.allocation import chinchilla_allocation, compute_of
from scaling_cli.fit.blas import one_blas_thread
from scaling_cli.fit.design import (
    MIN_EXPONENT,
    Design,
    additive_cost,
    greedy_design,
    identification_problem,
    interval_factor,
    linearisations,
    low_edge_misfit,
    residual_sigma,
    seed_sigma,
)
from scaling_cli.fit.results import FitResult, GroupFit, LawFit
from scaling_cli.fit.table import load_rows

LAW = "chinchilla"  # the information matrix is over Approach 3's five parameters: no other law fits it
OBJECTIVES = {"n_opt": (1.0, 0.0), "loss": (0.0, 1.0), "both": (1.0, 1.0)}
REWEIGHTINGS = 16  # bootstrap reweightings of the runs per linearisation (see fit/design.py)
# Candidates below the smallest size and budget are cheap and, where the law holds, pin the exponents (2x in
# simulation); on the real demo they made the interval wider (short warmup-dominated runs leave the law), so
# they are an option (--below, checked by design.low_edge_misfit), not the default.
DEFAULT_BELOW = 1.0
TARGET_FACTOR = 100.0  # default target compute: this many times the largest run's


def check_below(below: float) -> None:
    """FitError unless --below is a factor from 1 (nothing below the data) to 16."""
    if not 1.0 <= below <= 16.0:
        raise FitError("--below", str(below), "must be at least 1 and at most 16")


def parse_budget(text: str, where: str = "--budget") -> tuple[float | None, float | None]:
    """(FLOPs, fraction of the sweep's compute) from '1e15' or '50%'; exactly one is set."""
    value = str(text).strip()
    try:
        if value.endswith("%"):
            fraction = float(value[:-1]) / 100.0
            if fraction > 0 and np.isfinite(fraction):
                return None, fraction
        else:
            flops = float(value)
            if flops > 0 and np.isfinite(flops):
                return flops, None
    except ValueError:
        pass
    raise FitError(where, value, "expected a positive FLOP count (1e15) or a share of the sweep's compute (50%)")


@one_blas_thread
def suggest(
    source,
    *,
    budget: str,
    target: float | None = None,
    objective: str = "n_opt",
    group: str | None = None,
    scenarios: int = 30,
    seed: int = 0,
    extension: float = 4.0,
    below: float = DEFAULT_BELOW,
    table: TableOptions | None = None,
    out: Path | None = None,
    command: str = "scale suggest",
) -> dict:
    """The proposal for `source` (a results directory or a table) as a JSON-able dict; with `out` (results
    directories only) also the spec that trains it, written there (see write_next_spec)."""
    if objective not in OBJECTIVES:
        raise FitError("--objective", objective, f"choose from {', '.join(OBJECTIVES)}")
    if target is not None and not target > 0:
        raise FitError("--target", str(target), "must be positive")
    if not 1.0 < extension <= 16.0:
        raise FitError("--extension", str(extension), "must be above 1 and at most 16")
    check_below(below)
    flops, fraction = parse_budget(budget)
    table = table or TableOptions()
    sweep_dir = _sweep_dir(source)
    try:
        # the proposal reads the fit and its bootstrap samples, never the error model: not calibrated here
        options = FitOptions(laws=(LAW,), bootstrap=scenarios, seed=seed, calibrate=False)
        fit = FitResult.of(fit_all(source, table, options))
    except FitError as exc:
        if exc.field != "chinchilla":
            raise
        return {"source": str(source), "refused": f"Approach 3 cannot be fitted: {exc.problem}"}
    name, entry = _group(fit, group)
    law = entry.laws.get(LAW)
    if law is None:
        reason = entry.skipped.get(LAW, "not fitted")
        return {"source": str(source), "group": name, "refused": f"Approach 3 cannot be fitted: {reason}"}
    n0, d0, c0, loss0 = (np.array([p[k] for p in entry.points], dtype=float) for k in ("N", "D", "C", "loss"))
    x = np.array(law.vector, dtype=float)
    result = {"source": str(source), "group": name, "fit": {"params": dict(law.params), "status": law.status}}
    problem = identification_problem(x, n0, d0)
    if problem:
        return {**result, "refused": problem}
    convention = fit.compute_convention
    target = float(target or TARGET_FACTOR * c0.max())
    sigma, sigma_source = _noise(source, table, x, n0, d0, loss0)
    below_note = low_edge_misfit(n0, d0, loss0, sigma) if below > 1.0 else None
    reach_below = 1.0 if below_note else below
    vectors = [x, *_sample_vectors(law)]

    def allocation(params, c):
        return chinchilla_allocation(params, convention, c)

    if sweep_dir is not None:
        from scaling_cli import nextsweep

        grid = nextsweep.candidate_grid(sweep_dir, fit.columns["n"] or "params", extension, reach_below)
        spend = flops if flops is not None else fraction * grid.spent
        n, d = grid.cells
        fresh = np.flatnonzero(~grid.known.ravel())
        cost_of = grid.cost_of
        row_scale = np.sqrt(grid.seeds)
    else:
        grid = None
        spend = flops if flops is not None else fraction * float(c0.sum())
        n, d = _table_candidates(n0, d0, extension, reach_below)
        fresh = np.arange(len(n))
        costs = compute_of(convention, n, d)
        cost_of = additive_cost(costs)
        row_scale = 1.0

    def moves(chosen):  # any one candidate run (a cell: its lrs, seeds, ...) not chosen or done yet
        return [(int(c),) for c in fresh if c not in chosen]

    scored = linearisations(
        vectors, n0, d0, n, d, sigma, target, allocation, reweightings=REWEIGHTINGS, seed=seed, row_scale=row_scale
    )
    design = greedy_design(scored, sigma, spend, cost_of, moves, weights=OBJECTIVES[objective])
    result.update(
        target=target,
        budget=spend,
        budget_note=budget,
        objective=objective,
        sigma=sigma,
        sigma_source=sigma_source,
        scenarios=len(vectors),
        reweightings=REWEIGHTINGS,
        convention=convention.get("kind"),
        at_target=_at_target(law.params, allocation, target),
        identified_note="; ".join(law.problems) or None,
        below={"asked": below, "used": reach_below, "why_not": below_note},
        refused=None,
    )
    result.update(_describe(design, n, d, grid))
    if grid is not None and design.rows:
        result["grid"] = {
            "sizes": sorted({grid.labels[c // len(grid.budgets)] for c in design.rows}),
            "budgets": sorted({int(grid.budgets[c % len(grid.budgets)]) for c in design.rows}),
        }
        if out is not None:
            result["spec"] = write_next_spec(grid, design.rows, sweep_dir, Path(out), command)
    return result


def _sweep_dir(source) -> Path | None:
    path = Path(source)
    return path if path.is_dir() and (path / "spec.toml").is_file() else None


def _group(fit: FitResult, group: str | None) -> tuple[str, GroupFit]:
    groups = fit.groups
    if group is not None:
        return group, fit.group(group)
    if len(groups) > 1:
        raise FitError("--group", "", f"the fit has {len(groups)} groups; choose one of: {', '.join(sorted(groups))}")
    name = next(iter(groups))
    return name, groups[name]


def _noise(source, table: TableOptions, x, n0, d0, loss0) -> tuple[float, str]:
    """Log-loss noise of one run: the fit's residual RMS, or the spread between seeds when that is larger."""
    residual = residual_sigma(x, n0, d0, loss0)
    _, runs, _ = load_rows(source, table)
    seeds = seed_sigma(list(zip(runs["group"], runs["N"], runs["D"])), runs["loss"])
    if seeds is not None and seeds > residual:
        return seeds, "the spread between seeds"
    return residual, "the fit's residuals"


def _sample_vectors(law: LawFit) -> list[np.ndarray]:
    """The bootstrap refits as fitter vectors (ln E, ln A, ln B, alpha, beta), those with an allocation."""
    out = []
    for e, a, b, alpha, beta in law.samples:
        if min(e, a, b) > 0 and alpha > MIN_EXPONENT and beta > MIN_EXPONENT:
            out.append(np.array([np.log(e), np.log(a), np.log(b), alpha, beta]))
    return out


def _table_candidates(n0, d0, extension: float, below: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(N, D) on sqrt(2)-spaced log grids from the table's smallest / `below` to `extension` x its largest, not
    yet run."""
    sizes, budgets = (_log_range(v.min() / below, v.min(), extension * v.max()) for v in (n0, d0))
    n, d = (a.ravel() for a in np.meshgrid(sizes, budgets, indexing="ij"))
    measured = {(round(np.log(a), 3), round(np.log(b), 3)) for a, b in zip(n0, d0)}
    fresh = np.array([(round(np.log(a), 3), round(np.log(b), 3)) not in measured for a, b in zip(n, d)])
    return n[fresh], d[fresh]


def _log_range(low: float, anchor: float, high: float) -> np.ndarray:
    """sqrt(2) steps through `anchor` (a measured value), from `low` to `high`."""
    step = np.sqrt(2.0)
    first = -int(np.floor(np.log(anchor / low) / np.log(step) + 1e-9))
    last = int(np.floor(np.log(high / anchor) / np.log(step) + 1e-9))
    return anchor * step ** np.arange(first, last + 1)


def _at_target(params: dict, allocation, target: float) -> dict:
    n_opt, d_opt = allocation(params, target)
    from scaling_cli.fit.laws import chinchilla_loss

    loss = float(chinchilla_loss(params, n_opt, d_opt))
    return {"C": target, "N_opt": float(n_opt), "D_opt": float(d_opt), "loss": loss}


def _describe(design: Design, n, d, grid) -> dict:
    """The steps as rows: what each adds, its cost, and the predicted interval widths after it."""
    before = [interval_factor(v) for v in design.start_variances]
    steps, previous = [], before
    for step in design.steps:
        after = [interval_factor(v) for v in step.variances]
        steps.append(
            {
                "runs": [_cell(c, n, d, grid) for c in step.rows],
                "cost": step.cost,
                "n_opt_factor": after[0],
                "loss_factor": after[1],
                "n_opt_narrower_pct": 100.0 * (1.0 - np.log(after[0]) / np.log(previous[0])),
            }
        )
        previous = after
    return {
        "steps": steps,
        "spent": design.spent,
        "predicted": {
            "n_opt_factor": {"before": before[0], "after": interval_factor(design.variances[0])},
            "loss_factor": {"before": before[1], "after": interval_factor(design.variances[1])},
        },
    }


def _cell(cell: int, n, d, grid) -> dict:
    row = {"N": float(n[cell]), "D": float(d[cell])}
    if grid is not None:
        row["size"] = grid.labels[cell // len(grid.budgets)]
        row["tokens"] = int(grid.budgets[cell % len(grid.budgets)])
        row["epochs"] = grid.epochs(row["tokens"])
    return row


def write_next_spec(grid, cells, sweep_dir: Path, out: Path, command: str) -> dict:
    """Write the chosen cells as a spec to `out` and return {path, runs, remaining_flops} from the sweep's own
    plan of it against `sweep_dir` (finished runs skipped, WSD trunks shared)."""
    from scaling_cli import atomic, nextsweep
    from scaling_cli.plan import load_sweep
    from scaling_cli.sweep import plan_sweep

    header = [
        f"Next runs for sweep '{grid.raw['name']}', proposed by: {command}",
        f"Sweep into the same results directory (finished runs are skipped): scale sweep {out} --out {sweep_dir}",
    ]
    try:
        atomic.write_text(out, nextsweep.next_spec_text(grid, cells, header))
    except OSError as exc:
        raise FitError(str(out), "--out", f"cannot write the spec ({exc.strerror})") from None
    plan = plan_sweep(load_sweep(out), sweep_dir)
    pending = [p for p in plan.runs if p.state not in ("done", "diverged")]
    return {"path": str(out), "runs": len(pending), "remaining_flops": plan.remaining_flops}
