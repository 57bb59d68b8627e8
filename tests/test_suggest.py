"""`scale suggest`: the design's algebra, the simulated loop against naive strategies, the refusal, and the
next spec written for a results directory planned from a real spec (losses from a known law)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from conftest import REPO, scale_in_process

from scaling_cli.fit import chinchilla
from scaling_cli.fit.design import (
    Linearisation,
    additive_cost,
    fit_variance,
    greedy_design,
    identification_problem,
    information,
    linearisations,
    log_loss_jacobian,
    seed_sigma,
    target_variances,
)
from scaling_cli.fit.laws import chinchilla_loss
from scaling_cli.fit.simulate import SimulationOptions, draw_laws, simulate_law, summarize

LAW = {"E": 1.3, "A": 60.0, "B": 400.0, "alpha": 0.34, "beta": 0.36}
VECTOR = np.array([np.log(1.3), np.log(60.0), np.log(400.0), 0.34, 0.36])


def test_jacobian_is_the_derivative_of_log_loss():
    n, d = np.array([1e5, 3e6, 2e7]), np.array([1e6, 4e7, 5e8])
    analytic = log_loss_jacobian(VECTOR, n, d)
    for i in range(5):
        step = np.zeros(5)
        step[i] = 1e-6
        plus = np.log(chinchilla_loss(chinchilla.to_params(VECTOR + step), n, d))
        minus = np.log(chinchilla_loss(chinchilla.to_params(VECTOR - step), n, d))
        assert np.allclose(analytic[:, i], (plus - minus) / 2e-6, rtol=1e-5, atol=1e-9)


def random_linearisation(rng, candidates: int = 12) -> Linearisation:
    measured = rng.normal(size=(8, 5))
    return Linearisation(
        precision=measured.T @ measured / 0.01**2 + np.eye(5),
        jacobian=rng.normal(size=(candidates, 5)),
        gradients=rng.normal(size=(2, 5)),
    )


def test_greedy_design_stays_in_budget_and_reports_the_variance_of_what_it_chose():
    rng = np.random.default_rng(3)
    lin = random_linearisation(rng)
    costs = rng.uniform(1.0, 5.0, size=12)
    design = greedy_design([lin], 0.01, 8.0, additive_cost(costs), first_moves=4)
    assert design.rows and design.spent <= 8.0 and design.spent == pytest.approx(costs[design.rows].sum())
    block = lin.jacobian[design.rows]
    expected = target_variances(lin.precision + block.T @ block / fit_variance(0.01), lin.gradients)
    assert np.allclose(design.variances, expected)
    assert design.variances[0] < design.start_variances[0]


def exact_criterion(lins, rows, weights) -> float:
    """The greedy's criterion after `rows`, by inverting each updated precision (no rank-one updates)."""
    variances = [
        target_variances(lin.precision + lin.jacobian[rows].T @ lin.jacobian[rows] / fit_variance(0.01), lin.gradients)
        for lin in lins
    ]
    return float(np.dot(weights, np.log(np.mean(variances, axis=0))))


@pytest.mark.parametrize("weights", [(1.0, 0.0), (1.0, 0.5)])
def test_each_greedy_step_takes_the_best_gain_per_cost_of_the_exact_criterion(weights):
    rng = np.random.default_rng(7)
    lins = [random_linearisation(rng, candidates=30) for _ in range(4)]
    costs = rng.uniform(1.0, 5.0, size=30)
    design = greedy_design(lins, 0.01, 25.0, additive_cost(costs), weights=weights, first_moves=0)
    assert len(design.rows) >= 4
    for step, row in enumerate(design.rows):
        chosen = design.rows[:step]
        now = exact_criterion(lins, chosen, weights)
        open_rows = [r for r in range(30) if r not in chosen and costs[chosen].sum() + costs[r] <= 25.0]
        gains = [(now - exact_criterion(lins, [*chosen, r], weights)) / costs[r] for r in open_rows]
        assert open_rows[int(np.argmax(gains))] == row, step
    pairs = greedy_design(  # moves of two rows at once: the block path, priced and scored as a set
        lins, 0.01, 25.0, additive_cost(costs), lambda chosen: [(r, r + 1) for r in range(0, 30, 2) if r not in chosen]
    )
    assert pairs.rows and all(b == a + 1 for a, b in zip(pairs.rows[::2], pairs.rows[1::2]))
    assert pairs.spent == pytest.approx(costs[pairs.rows].sum()) and pairs.spent <= 25.0
    block = lins[0].jacobian[pairs.rows]
    after = target_variances(lins[0].precision + block.T @ block / fit_variance(0.01), lins[0].gradients)
    assert np.allclose(pairs.variances, after)


def test_reweighted_linearisations_start_at_the_fit_and_average_to_its_information():
    n0, d0 = (a.ravel() for a in np.meshgrid([1e6, 2e6, 4e6], [1e8, 2e8, 4e8], indexing="ij"))
    n, d = np.array([8e6, 1e6]), np.array([1e8, 8e8])
    lins = linearisations([VECTOR, VECTOR], n0, d0, n, d, 0.01, 1e18, reweightings=300, seed=1)
    assert len(lins) == 1 + 2 * 300
    assert np.allclose(lins[0].precision, information(VECTOR, n0, d0, 0.01))
    assert np.allclose(lins[0].jacobian, log_loss_jacobian(VECTOR, n, d))
    mean = np.mean([lin.precision for lin in lins[1:]], axis=0)
    assert np.allclose(mean, lins[0].precision, rtol=0.1, atol=1e-3)
    mean_rows = np.mean([lin.jacobian**2 for lin in lins[1:]], axis=0)  # Poisson(1) counts: E[count] = 1
    assert np.allclose(mean_rows, lins[0].jacobian ** 2, rtol=0.15)


def test_seed_spread_is_pooled_within_cells():
    keys = [(1, 1), (1, 1), (2, 2), (2, 2), (3, 3)]
    losses = np.exp([0.0, 0.02, 1.0, 1.04, 5.0])
    assert seed_sigma(keys, losses) == pytest.approx(np.sqrt((2 * 0.01**2 + 2 * 0.02**2) / 2))
    assert seed_sigma([(1, 1), (2, 2)], [1.0, 2.0]) is None


def test_a_fit_with_two_budgets_is_refused_with_what_to_add():
    n, d = np.repeat([1e6, 2e6, 4e6], 2), np.tile([1e8, 2e8], 3)
    assert "add a third token budget first" in identification_problem(VECTOR, n, d)
    assert "alpha is -0.1" in identification_problem(np.r_[VECTOR[:3], -0.1, 0.3], np.r_[n, 8e6], np.r_[d, 4e8])


NAIVE_COMPARED = ("extend_budget", "grid_extension")


def simulated_laws(below: float, strategies: tuple[str, ...]) -> list[dict]:
    """Per law, a short version of `scale suggest --simulate --laws 20 [--below 2]` (the full measurement): 5
    laws, a coarse start grid, 30 resamples, a lighter design (6 refits x 8 reweightings), the two naive
    strategies that come closest (one compute-optimal run is far wider)."""
    grid = {name: values[::2] for name, values in chinchilla.CHINCHILLA_GRID.items()}
    options = SimulationOptions(
        laws=5, resamples=30, scenarios=6, reweightings=8, grid=grid, below=below, strategies=strategies
    )
    with np.errstate(all="ignore"):  # as simulate() does it, less its summary (which needs a naive strategy)
        return [simulate_law(law, i, options) for i, law in enumerate(draw_laws(options.laws, options.seed))]


@pytest.fixture(scope="module")
def simulated() -> dict[float, dict]:
    """The simulation's summary for each `below` of the test below. The naive strategies never look below the
    data (their runs and scores do not depend on `below`), so they are simulated once and their per-law scores
    join the design's at below 2: the same laws, the same first sweep, the same score before (checked)."""
    within = simulated_laws(1.0, ("design", *NAIVE_COMPARED))
    lower = simulated_laws(2.0, ("design",))
    for same, law in zip(within, lower, strict=True):
        assert [law.get(key) for key in ("law", "before", "skipped")] == [
            same.get(key) for key in ("law", "before", "skipped")
        ]
        if "skipped" not in law:
            law["strategies"].update({name: same["strategies"][name] for name in NAIVE_COMPARED})
    return {1.0: summarize(within), 2.0: summarize(lower)}


@pytest.mark.parametrize(
    "below, factor",
    [(1.0, 1.2), (2.0, 1.5)],  # within the first sweep's range (the default); and 2x below it (the 1.5x)
)
def test_suggested_runs_narrow_n_opt_more_than_each_naive_way_to_spend_the_same_compute(simulated, below, factor):
    summary = simulated[below]
    widths = summary["mean_width"]
    assert summary["laws_used"] == 5 and set(widths) == {"design", *NAIVE_COMPARED}
    assert summary["mean_compute"]["design"] <= summary["mean_budget"] * (1 + 1e-9)
    for name in NAIVE_COMPARED:
        assert widths["design"] * factor < widths[name], summary
    assert widths["design"] < summary["mean_width_before"]


def write_results(directory, spec="demo.toml", noise=0.01):
    """A results directory: a real spec planned by the real planner, losses from LAW times exp(noise)."""
    from scaling_cli.plan import load_sweep

    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "sweeps" / spec, directory / "spec.toml")
    rng = np.random.default_rng(0)
    rows = []
    for run in load_sweep(directory / "spec.toml").runs():
        loss = float(chinchilla_loss(LAW, run.params, run.tokens)) * np.exp(rng.normal(0, noise))
        step = run.train.batch_size * run.model.seq_len
        trained = run.tokens // step * step  # the trainer records whole optimiser steps: 73,728 of 75,000
        rows.append({**run.describe(), "tokens": trained, "val_loss": loss, "train_loss": loss, "status": "done"})
    pd.DataFrame(rows).to_parquet(directory / "runs.parquet")
    return directory, rows


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """write_results of the demo spec, once for the module: read-only (a test that changes it takes a copy)."""
    return write_results(tmp_path_factory.mktemp("suggest") / "demo")


def test_suggest_writes_a_spec_of_new_runs_on_the_sweep_s_own_settings(tmp_path, demo):
    from scaling_cli.plan import load_sweep
    from scaling_cli.spec import load_spec

    results, rows = demo
    out = tmp_path / "next.toml"
    args = ("suggest", results, "--budget", "50%", "--scenarios", "8", "--out", out, "--json")
    result = scale_in_process(*args)
    assert result.returncode == 0, result.stderr
    proposal = json.loads(result.stdout)
    assert proposal["refused"] is None and proposal["steps"]
    assert proposal["predicted"]["n_opt_factor"]["after"] < proposal["predicted"]["n_opt_factor"]["before"]
    assert proposal["spent"] <= proposal["budget"] * (1 + 1e-9)
    source, following = load_spec(results / "spec.toml"), load_spec(out)
    for field in ("name", "datasets", "tokenizer", "vocab_size", "seeds", "lrs", "batch_sizes", "train_fields"):
        assert getattr(following, field) == getattr(source, field), field
    done = {row["run_id"] for row in rows}
    proposed = {(run["N"], run["tokens"]) for step in proposal["steps"] for run in step["runs"]}
    new = [run for run in load_sweep(out).runs() if run.run_id not in done]
    assert {(float(run.params), run.tokens) for run in new} == proposed
    assert proposal["spec"]["remaining_flops"] <= proposal["budget"] * 1.01
    trained = {row["tokens"] for row in rows} - set(source.budgets)
    assert not {tokens for _, tokens in proposed} & trained  # a finished run is never proposed again


def test_what_suggest_counts_for_a_set_of_cells_is_what_the_sweep_plans_for_it(tmp_path, demo):
    from scaling_cli.nextsweep import candidate_grid, next_spec_text
    from scaling_cli.plan import load_sweep
    from scaling_cli.sweep_plan import plan_sweep

    results, _ = demo
    grid = candidate_grid(results)
    per = len(grid.budgets)
    assert grid.branch_flops.sum() < grid.cell_flops.sum()  # the demo is WSD: branches share their trunk
    for cells in ([0, 1, 2], [per + 1, per + 3, 2 * per], list(range(3 * per))):
        path = tmp_path / "cells.toml"
        path.write_text(next_spec_text(grid, cells, []))
        planned = plan_sweep(load_sweep(path), tmp_path / "nothing-yet").shared_flops
        assert grid.cost_of(cells) == pytest.approx(planned, rel=1e-12), cells


def test_runs_that_would_repeat_the_training_data_are_pointed_out(tmp_path, demo):
    results = shutil.copytree(demo[0], tmp_path / "demo")
    runs = pd.read_parquet(results / "runs.parquet")
    runs["unique_tokens"] = 1_000_000  # a small corpus: the demo's longer budgets pass over it twice
    runs.to_parquet(results / "runs.parquet")
    result = scale_in_process("suggest", results, "--budget", "50%", "--scenarios", "8", "--json")
    proposed = [run for step in json.loads(result.stdout)["steps"] for run in step["runs"]]
    repeating = [run for run in proposed if run["tokens"] > 1_000_000]
    assert repeating and all(run["epochs"] == run["tokens"] / 1e6 for run in proposed)
    printed = scale_in_process("suggest", results, "--budget", "50%", "--scenarios", "8").stdout
    assert f"note: {len(repeating)} proposed runs pass over the training data more than once" in printed, printed


@pytest.mark.slow  # trains markov-tiny with a third budget, then the runs proposed for it
def test_the_proposed_spec_sweeps_into_the_same_results_directory(tmp_path):
    """The loop on real training: sweep, suggest, sweep the proposal into the same directory, refit."""
    tiny = (REPO / "sweeps" / "markov-tiny.toml").read_text()
    spec = tmp_path / "three.toml"
    spec.write_text(tiny.replace("tokens = [12_288, 24_576]", "tokens = [6_144, 12_288, 24_576]"))
    results, following = tmp_path / "results", tmp_path / "next.toml"
    assert scale_in_process("sweep", spec, "--out", results).returncode == 0
    first = pd.read_parquet(results / "runs.parquet")
    result = scale_in_process("suggest", results, "--budget", "25%", "--scenarios", "5", "--out", following, "--json")
    assert result.returncode == 0, result.stderr
    proposal = json.loads(result.stdout)
    assert proposal["refused"] is None and proposal["spec"]["runs"] > 0, proposal
    unique = first["unique_tokens"].min()  # each proposed run says how often it would pass over the data
    for run in (run for step in proposal["steps"] for run in step["runs"]):
        assert run["epochs"] == pytest.approx(run["tokens"] / unique)
    swept = scale_in_process("sweep", following, "--out", results)
    assert swept.returncode == 0, swept.stderr
    merged = pd.read_parquet(results / "runs.parquet")
    assert set(first["run_id"]) < set(merged["run_id"]) and (merged["status"] == "done").all()
    proposed = {(run["size"].split(",")[0], run["tokens"]) for step in proposal["steps"] for run in step["runs"]}
    trained = {(f"d_model {w}", t) for w, t in merged[["d_model", "tokens"]].itertuples(index=False)}
    assert proposed <= trained and len(merged) == len(first) + proposal["spec"]["runs"]
    assert scale_in_process("fit", results, "--law", "chinchilla", "--bootstrap", "0").returncode == 0


def shapes_spec(tmp_path, shapes: str, name="shapes.toml"):
    """markov-tiny with its [model] sizes replaced by explicit `shapes`."""
    text = (REPO / "sweeps" / "markov-tiny.toml").read_text()
    text = text.replace("d_model = [16, 32, 48]\nn_layer = 2\nhead_dim = 16", f"shapes = {shapes}")
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_shape_with_its_own_tokens_plans_those_runs_with_the_grid_s_run_ids(tmp_path):
    """What suggest's next spec relies on: any set of (size, budget) cells in one spec, ids as in the grid."""
    from scaling_cli.plan import load_sweep

    grid = {(r.model.d_model, r.tokens): r.run_id for r in load_sweep(REPO / "sweeps" / "markov-tiny.toml").runs()}
    own = shapes_spec(
        tmp_path,
        "[{d_model = 16, n_layer = 2, n_head = 1, tokens = [24_576]}, {d_model = 48, n_layer = 2, n_head = 3}]",
    )
    runs = {(r.model.d_model, r.tokens): r.run_id for r in load_sweep(own).runs()}
    assert runs == {key: grid[key] for key in ((16, 24_576), (48, 12_288), (48, 24_576))}


@pytest.mark.parametrize(
    "tokens, problem",
    [('"many"', "model.shapes[0].tokens"), ("[100]", "model.shapes[0].tokens: budget 100 is less than one step")],
)
def test_a_bad_shape_budget_is_a_one_line_error(tmp_path, tokens, problem):
    path = shapes_spec(tmp_path, f"[{{d_model = 16, n_layer = 2, n_head = 1, tokens = {tokens}}}]")
    result = scale_in_process("sweep", path, "--out", tmp_path / "out", "--dry-run")
    assert result.returncode == 2 and result.stderr.startswith(f"error: {path}: {problem}"), result.stderr
    assert result.stderr.count("\n") == 1 and not (tmp_path / "out").exists()


def test_a_table_with_two_budgets_gets_a_refusal_and_exit_0(tmp_path):
    table = tmp_path / "two.csv"
    n, d = np.repeat([1e6, 2e6, 4e6, 8e6], 2), np.tile([1e8, 2e8], 4)
    pd.DataFrame({"N": n, "D": d, "loss": chinchilla_loss(LAW, n, d)}).to_csv(table, index=False)
    result = scale_in_process(
        "suggest", table, "--n-col", "N", "--d-col", "D", "--loss-col", "loss", "--budget", "1e18"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("no runs proposed:") and "third" in result.stdout, result.stdout


def grid_table(path, bump_smallest_size: float = 1.0):
    """A 4 x 5 table from LAW with 1% noise; the smallest size's losses times `bump_smallest_size`."""
    n, d = np.repeat([1e6, 2e6, 4e6, 8e6], 5), np.tile([2e7, 4e7, 8e7, 1.6e8, 3.2e8], 4)
    loss = chinchilla_loss(LAW, n, d) * np.exp(np.random.default_rng(1).normal(0, 0.01, len(n)))
    loss[n == n.min()] *= bump_smallest_size
    pd.DataFrame({"N": n, "D": d, "loss": loss}).to_csv(path, index=False)
    return path, n.min(), d.min()


def proposed_runs(table, *extra):
    args = ("--n-col", "N", "--d-col", "D", "--loss-col", "loss", "--budget", "50%", "--scenarios", "8", "--json")
    result = scale_in_process("suggest", table, *args, *extra)
    assert result.returncode == 0, result.stderr
    proposal = json.loads(result.stdout)
    return proposal, [(run["N"], run["D"]) for step in proposal["steps"] for run in step["runs"]]


def test_cheap_runs_below_the_data_are_proposed_only_where_the_law_fits_its_low_edge(tmp_path):
    table, n_min, d_min = grid_table(tmp_path / "on-law.csv")
    proposal, runs = proposed_runs(table, "--below", "2")
    assert proposal["below"] == {"asked": 2.0, "used": 2.0, "why_not": None}
    assert any(n < n_min * 0.99 or d < d_min * 0.99 for n, d in runs), runs
    assert all(n >= n_min / 2 * 0.99 and d >= d_min / 2 * 0.99 for n, d in runs), runs

    proposal, kept_in = proposed_runs(table)  # the default: within the data's range
    assert (
        proposal["below"]["used"] == 1.0
        and kept_in
        and all(n >= n_min * 0.99 and d >= d_min * 0.99 for n, d in kept_in)
    ), kept_in

    bent, n_min, d_min = grid_table(tmp_path / "bent.csv", bump_smallest_size=1.06)
    proposal, runs = proposed_runs(bent, "--below", "2")
    assert proposal["below"]["used"] == 1.0 and "smallest size" in proposal["below"]["why_not"], proposal["below"]
    assert runs and all(n >= n_min * 0.99 and d >= d_min * 0.99 for n, d in runs), runs


def test_a_sweep_s_smaller_candidates_keep_its_shape_rule_and_stay_longer_than_warmup(tmp_path):
    from scaling_cli import nextsweep

    text = (REPO / "sweeps" / "markov-tiny.toml").read_text()
    spec = text.replace(
        "d_model = [16, 32, 48]\nn_layer = 2\nhead_dim = 16", "d_model = [32, 48, 64]\nn_layer = 2\nhead_dim = 8"
    )
    results = tmp_path / "results"
    results.mkdir()
    (results / "spec.toml").write_text(spec)
    within = nextsweep.candidate_grid(results, below=1.0)
    grid = nextsweep.candidate_grid(results, below=2.0)
    assert [s["d_model"] for s in within.shapes][:3] == [32, 48, 64]
    smaller = [s for s in grid.shapes if s["d_model"] < 32]
    assert smaller and all(s["n_head"] == s["d_model"] // 8 and s["n_layer"] == 2 for s in smaller), grid.shapes
    assert min(grid.n) >= min(within.n) / 2
    low = grid.budgets[grid.budgets < within.budgets.min()]
    assert len(low) and low.min() > 2_048 and all(b % 512 == 0 for b in low)  # warmup 2,048; 512-token steps
    assert grid.known.sum() == within.known.sum()


def test_bad_options_are_one_line_errors(demo):
    results, _ = demo
    for args, fragment in (
        (("--below", "0.5"), "--below"),
        (("--budget", "lots"), "--budget"),
        (("--objective", "speed"), "--objective"),
        (("--target", "-1"), "--target"),
    ):
        result = scale_in_process("suggest", results, *args)
        assert result.returncode == 2 and result.stderr.startswith("error: ") and fragment in result.stderr
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
