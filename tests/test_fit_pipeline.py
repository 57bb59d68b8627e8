"""fit_all on results directories and tables: row selection, law choice, intervals, holdout, predictions."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from scaling_cli.errors import FitError
from scaling_cli.fit import FitOptions, TableOptions, fit_all, load_table, parse_laws, predict
from scaling_cli.fit.holdout import parse_holdout
from scaling_cli.fit.laws import chinchilla_loss

LAW = {"E": 1.9, "A": 400.0, "B": 2000.0, "alpha": 0.34, "beta": 0.36}
SIZES = (1e6, 2e6, 4e6, 8e6, 16e6, 32e6)
BUDGETS = (1e15, 4e15, 1.6e16, 6.4e16)
LRS = (1e-3, 3e-3)  # 1e-3 is worse by 0.02 everywhere, so 3e-3 must be chosen
SEEDS = (0, 1)


def sweep_rows():
    """An isoFLOP sweep from LAW: sizes x budgets x lrs x seeds, plus one diverged and one failed run."""
    rng = np.random.default_rng(0)
    rows = []
    for budget in BUDGETS:
        for size in SIZES:
            tokens = budget / (6 * size)
            for lr in LRS:
                for seed in SEEDS:
                    loss = (
                        float(chinchilla_loss(LAW, size, tokens)) + (0.02 if lr == 1e-3 else 0.0) + rng.normal(0, 0.002)
                    )
                    rows.append(_run(f"c{budget:g}-n{size:g}-lr{lr:g}-s{seed}", size, tokens, lr, seed, loss, "done"))
    rows.append(_run("diverged", 1e6, 1e9, 1e-1, 0, float("nan"), "diverged"))
    rows.append(_run("failed", 2e6, 1e9, 1e-1, 0, float("nan"), "failed"))
    return rows


def _run(run_id, size, tokens, lr, seed, loss, status):
    return {
        "run_id": run_id,
        "dataset": "markov",
        "params": size,
        "params_nonembed": 0.8 * size,
        "tokens": tokens,
        "flops": 6.3 * size * tokens,
        "flops_6nd": 6.0 * size * tokens,
        "lr": lr,
        "seed": seed,
        "val_loss": loss,
        "status": status,
    }


def curve_rows(runs: pd.DataFrame):
    """Eight evaluation points per finished run, following LAW as tokens grow."""
    rows = []
    for run in runs[runs["status"] == "done"].itertuples():
        for fraction in np.linspace(0.125, 1.0, 8):
            seen = run.tokens * fraction
            loss = (
                run.val_loss
                - float(chinchilla_loss(LAW, run.params, run.tokens))
                + float(chinchilla_loss(LAW, run.params, seen))
            )
            rows.append(
                {
                    "run_id": run.run_id,
                    "step": int(fraction * 8),
                    "tokens": seen,
                    "flops": 6.3 * run.params * seen,
                    "val_loss": loss,
                }
            )
    return rows


def make_sweep(directory, curves: bool = True):
    """A results directory with runs.parquet (and curves.parquet) in the documented columns."""
    directory.mkdir(parents=True, exist_ok=True)
    runs = pd.DataFrame(sweep_rows())
    runs.to_parquet(directory / "runs.parquet")
    if curves:
        pd.DataFrame(curve_rows(runs)).to_parquet(directory / "curves.parquet")
    return directory


@pytest.fixture(scope="module")
def sweep_fit(tmp_path_factory):
    directory = make_sweep(tmp_path_factory.mktemp("sweep"))
    return fit_all(directory, options=FitOptions(bootstrap=30, seed=1, holdout="6"))


def test_results_directory_rows_are_selected_and_counted(sweep_fit):
    assert sweep_fit["columns"] == {"n": "params", "d": "tokens", "c": "flops", "loss": "val_loss"}
    rows = sweep_fit["rows"]
    assert rows["total"] == 98 and rows["used"] == 48
    assert rows["excluded"]["diverged"] == 1 and rows["excluded"]["failed"] == 1
    assert rows["excluded"]["lr_not_best"] == 48
    choices = sweep_fit["selection"]["lr_choices"]
    assert len(choices) == 24 and {c["lr"] for c in choices} == {3e-3}
    assert sweep_fit["selection"]["seeds_averaged"] == 24
    assert sweep_fit["groups"]["all"]["n_points"] == 24


def test_every_law_is_fitted_with_intervals(sweep_fit):
    laws = sweep_fit["groups"]["all"]["laws"]
    assert set(laws) == {"chinchilla", "kaplan", "envelope", "isoflop", "linear"}
    chinchilla = laws["chinchilla"]
    true_a = LAW["beta"] / (LAW["alpha"] + LAW["beta"])
    assert chinchilla["derived"]["a"] == pytest.approx(true_a, abs=0.03)
    for name in ("E", "A", "B", "alpha", "beta", "a", "b", "N_opt", "D_opt", "loss_opt"):
        low, high = chinchilla["intervals"][name]
        assert low <= high
    assert chinchilla["intervals"]["E"][0] <= LAW["E"] * 1.02 and chinchilla["intervals"]["E"][1] >= LAW["E"] * 0.98
    assert len(chinchilla["bootstrap"]["samples"]) == 30 - chinchilla["bootstrap"]["failed"]
    assert "finished runs only" in laws["envelope"]["settings"]["source"]  # never mid-trunk curve points
    assert laws["envelope"]["settings"]["eligible_points"] == 24
    assert all(law["status"] == "ok" for law in laws.values())
    for name in ("envelope", "isoflop"):
        assert laws[name]["intervals"]["a"][0] <= laws[name]["params"]["a"] <= laws[name]["intervals"]["a"][1]
    assert set(laws["kaplan"]["L_N"]["intervals"]) == {"N_c", "alpha_N", "E"}


def test_holdout_scores_the_highest_compute_runs(sweep_fit):
    holdout = sweep_fit["groups"]["all"]["holdout"]
    assert holdout["held_out"] == 6 and holdout["fitted_on"] == 18
    assert all(run["C"] == pytest.approx(1.05 * 6.4e16) for run in holdout["runs"])  # flops = 6.3 N D
    assert set(holdout["mape"]) == {"chinchilla", "kaplan", "linear"}
    assert holdout["mape"]["chinchilla"] < 1.0  # noise is 0.1%: the right law extrapolates well
    assert holdout["mape"]["chinchilla"] < holdout["mape"]["linear"]


def test_predict_splits_a_budget_and_predicts_a_run(sweep_fit):
    result = predict(sweep_fit, compute=1e18, params=1e7, tokens=1e9)["groups"]["all"]
    split = result["compute"]["chinchilla"]
    # a results dir without run configs (no shape rule to take k from): k fitted to its flops, 6.3 N D
    assert sweep_fit["compute_convention"]["kind"] == "ratio_fit"
    assert sweep_fit["compute_convention"]["limit"] == pytest.approx(6.3)
    assert 6.3 * split["N_opt"] * split["D_opt"] == pytest.approx(1e18, rel=1e-6)
    assert split["N_opt_interval"][0] <= split["N_opt"] <= split["N_opt_interval"][1]
    assert split["tokens_per_param"] == pytest.approx(split["D_opt"] / split["N_opt"])
    run = result["run"]["chinchilla"]
    assert run["loss"] == pytest.approx(float(chinchilla_loss(LAW, 1e7, 1e9)), rel=0.01)
    with pytest.raises(FitError, match="needs both"):
        predict(sweep_fit, params=1e7)
    with pytest.raises(FitError, match="no such group"):
        predict(sweep_fit, compute=1e18, group="nope")


def test_conventions_follow_the_params_and_flops_options(tmp_path):
    directory = make_sweep(tmp_path / "sweep", curves=False)
    points, info = load_table(directory, TableOptions(params="params_nonembed", flops="flops_6nd"))
    assert info["columns"]["n"] == "params_nonembed" and info["columns"]["c"] == "flops_6nd"
    assert "without embeddings" in info["conventions"]["n"] and "6 N D" in info["conventions"]["c"]
    assert np.allclose(points["C"], 6 * points["N"] / 0.8 * points["D"])
    with pytest.raises(FitError, match="must be one of"):
        load_table(directory, TableOptions(flops="flops_kaplan"))


def test_table_options_select_rows_and_derive_tokens(tmp_path):
    table = tmp_path / "t.csv"
    n = np.repeat([1e6, 2e6, 4e6, 8e6], 3)
    c = np.tile([1e15, 2e15, 4e15], 4)
    pd.DataFrame({"size": n, "compute": c, "L": np.linspace(4, 3, 12), "kind": ["a", "b"] * 6}).to_csv(
        table, index=False
    )
    options = TableOptions(n_col="size", c_col="compute", loss_col="L", query="kind == 'a'", drop_highest_loss=1)
    points, info = load_table(table, options)
    assert info["rows"]["excluded"]["query"] == 6 and info["rows"]["excluded"]["highest_loss"] == 1
    assert len(points) == 5 and np.allclose(points["D"], points["C"] / (6 * points["N"]))
    assert info["conventions"]["d"].startswith("D = C / (6 N)")
    with pytest.raises(FitError, match="missing column; have: size, compute, L, kind"):
        load_table(table, TableOptions(n_col="params_count", c_col="compute", loss_col="L"))
    with pytest.raises(FitError, match="cannot evaluate"):
        load_table(table, TableOptions(n_col="size", c_col="compute", loss_col="L", query="nope >"))


def grid_table(path, e_by_group):
    """An N x D grid (no shared budgets, so Approach 2 cannot run) per group with its own E."""
    rows = []
    for group, e in e_by_group.items():
        law = {**LAW, "E": e}
        for size in SIZES[:5]:
            for tokens in (3e7, 1e8, 3e8, 1e9, 3e9):
                tokens *= 1 + size / 1e9  # staggered so that no two runs share a compute budget
                rows.append(
                    {
                        "N": size,
                        "D": tokens,
                        "loss": float(chinchilla_loss(law, size, tokens)),
                        "dataset": group,
                    }
                )
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_by_fits_each_group_and_unsupported_laws_are_skipped(tmp_path):
    table = grid_table(tmp_path / "grid.csv", {"markov": 1.5, "prose": 2.5})
    options = FitOptions(laws=parse_laws(["chinchilla,isoflop"]), bootstrap=0)
    plain = TableOptions(n_col="N", d_col="D", loss_col="loss", by="dataset")
    with pytest.raises(FitError, match="isoflop: needs at least 3 budgets"):
        fit_all(table, plain, options)
    document = fit_all(table, plain, FitOptions(laws=("chinchilla", "linear"), bootstrap=0))
    assert document["by"] == "dataset" and set(document["groups"]) == {"markov", "prose"}
    for group, e in (("markov", 1.5), ("prose", 2.5)):
        assert document["groups"][group]["laws"]["chinchilla"]["params"]["E"] == pytest.approx(e, rel=0.01)
    # Without --by the data sets are still never averaged together: each becomes a group of its own.
    default = fit_all(table, TableOptions(n_col="N", d_col="D", loss_col="loss"), FitOptions(bootstrap=0))
    assert set(default["groups"]) == {"dataset=markov", "dataset=prose"}
    assert default["grouping"]["groups"] == ["dataset"]
    assert "isoflop" in default["groups"]["dataset=markov"]["skipped"]


def test_bootstrap_is_reproducible_from_its_seed(tmp_path):
    table = grid_table(tmp_path / "grid.csv", {"markov": 1.5})
    columns = TableOptions(n_col="N", d_col="D", loss_col="loss")
    runs = [fit_all(table, columns, FitOptions(laws=("linear",), bootstrap=25, seed=s)) for s in (3, 3, 4)]
    intervals = [r["groups"]["all"]["laws"]["linear"]["intervals"] for r in runs]
    assert intervals[0] == intervals[1] and intervals[0] != intervals[2]


def test_option_values_are_checked():
    assert parse_holdout("5") == ("count", 5.0)
    assert parse_holdout("1e15") == ("flops", 1e15)
    with pytest.raises(FitError, match="--holdout"):
        parse_holdout("many")
    with pytest.raises(FitError, match="unknown law"):
        parse_laws(["chinchilla,hoffmann"])


def test_tables_without_a_law_in_them_give_errors_or_valid_json(tmp_path):
    # Random losses make starts and resamples overflow; the result must still be strict JSON (or a FitError).
    rng = np.random.default_rng(5)
    table = tmp_path / "noise.csv"
    n = rng.choice([1e4, 3e4, 1e5], 9)
    pd.DataFrame({"N": n, "D": rng.choice([1e4, 3e4, 1e5], 9) * 7, "loss": rng.uniform(0.5, 4, 9)}).to_csv(
        table, index=False
    )
    try:
        document = fit_all(
            table, TableOptions(n_col="N", d_col="D", loss_col="loss"), FitOptions(bootstrap=10, holdout="2")
        )
    except FitError as exc:
        assert exc.problem
    else:
        json.dumps(document, allow_nan=False)
