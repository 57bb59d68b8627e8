"""fit.table: the one column resolver and the honest grouping of runs (average seeds only)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scaling_cli.errors import FitError
from scaling_cli.fit import FitOptions, fit_all, load_table
from scaling_cli.fit.table import TableOptions, resolve_columns


def test_column_resolver_takes_defaults_explicit_names_and_derives_missing_d_or_c():
    results = ["run_id", "params", "params_nonembed", "tokens", "flops", "flops_6nd", "val_loss"]
    defaults = {"n": "params", "d": "tokens", "c": "flops", "loss": "val_loss", "u": None}
    assert resolve_columns(results, None, "t") == defaults
    assert resolve_columns([*results, "unique_tokens"], None, "t")["u"] == "unique_tokens"
    assert resolve_columns(results, TableOptions(params="params_nonembed", flops="flops_6nd"), "t") == {
        "n": "params_nonembed",
        "d": "tokens",
        "c": "flops_6nd",
        "loss": "val_loss",
        "u": None,
    }
    chinchilla = ["Model Size", "Training FLOP", "loss"]
    options = TableOptions(n_col="Model Size", c_col="Training FLOP", loss_col="loss")
    assert resolve_columns(chinchilla, options, "t") == {
        "n": "Model Size",
        "d": None,
        "c": "Training FLOP",
        "loss": "loss",
        "u": None,
    }
    with pytest.raises(FitError, match="missing column for D or C"):
        resolve_columns(["params", "loss"], None, "t")
    with pytest.raises(FitError, match="Model Size: missing column"):
        resolve_columns(["params", "tokens", "loss"], TableOptions(n_col="Model Size"), "t")


def batch_size_sweep(directory):
    """Runs at two batch sizes (the larger is worse by 0.05), two lrs (3e-3 better) and two seeds."""
    rows = []
    for n in (1e5, 2e5, 4e5):
        for d in (1e7, 2e7, 4e7):
            for batch_size, penalty in ((16, 0.0), (64, 0.05)):
                for lr, lr_penalty in ((1e-3, 0.02), (3e-3, 0.0)):
                    for seed, jitter in ((0, -0.001), (1, 0.001)):
                        rows.append(
                            {
                                "run_id": f"n{n:g}-d{d:g}-b{batch_size}-lr{lr:g}-s{seed}",
                                "params": n,
                                "tokens": d,
                                "flops": 6 * n * d,
                                "batch_size": batch_size,
                                "lr": lr,
                                "seed": seed,
                                "val_loss": 3.0 - 0.1 * np.log10(n * d) + penalty + lr_penalty + jitter,
                                "status": "done",
                            }
                        )
    directory.mkdir()
    pd.DataFrame(rows).to_parquet(directory / "runs.parquet")
    return directory


def test_runs_differing_in_batch_size_are_groups_not_averaged(tmp_path):
    points, info = load_table(batch_size_sweep(tmp_path / "bs"))
    assert info["grouping"] == {
        "groups": ["batch_size"],
        "selected": ["lr"],
        "varying_with_size": [],
        "averaged": ["seed"],
    }
    assert sorted(points["group"].unique()) == ["batch_size=16", "batch_size=64"]
    assert len(points) == 18 and (points["n_runs"] == 2).all()  # two seeds per point, nothing else averaged
    by_group = points.set_index(["group", "N", "D"])["loss"]
    gaps = by_group.loc["batch_size=64"] - by_group.loc["batch_size=16"]
    assert np.allclose(gaps, 0.05)  # each group keeps its own loss: batch sizes were never mixed
    assert {c["lr"] for c in info["lr_choices"]} == {3e-3} and len(info["lr_choices"]) == 18


def test_fit_json_lists_the_grouping(tmp_path):
    document = fit_all(batch_size_sweep(tmp_path / "bs"), options=FitOptions(laws=("linear",), bootstrap=0))
    assert set(document["groups"]) == {"batch_size=16", "batch_size=64"}
    assert document["grouping"]["groups"] == ["batch_size"] and document["grouping"]["averaged"] == ["seed"]


def test_data_variants_that_only_cap_unique_data_share_a_group_and_quality_variants_do_not(tmp_path):
    rows = []
    variants = {"markov": 1e6, "markov?max_train_bytes=768": 768.0, "markov?noise_fraction=0.2": 1e6}
    for dataset, unique in variants.items():
        for n in (1e4, 3e4):
            for d in (1e4, 3e4):
                loss = 2.0 + (0.3 if "noise" in dataset else 0.0) + (0.1 if unique < d else 0.0)
                rows.append(
                    {"run_id": f"{dataset}-{n:g}-{d:g}", "dataset": dataset, "params": n, "tokens": d,
                     "flops": 6 * n * d, "unique_tokens": unique, "val_loss": loss, "status": "done"}
                )  # fmt: skip
    (tmp_path / "r").mkdir()
    pd.DataFrame(rows).to_parquet(tmp_path / "r" / "runs.parquet")
    points, info = load_table(tmp_path / "r")
    assert sorted(points["group"].unique()) == ["dataset=markov", "dataset=markov?noise_fraction=0.2"]
    capped = points[points["group"] == "dataset=markov"]
    assert sorted(capped["U"].unique()) == [768.0, 1e6] and (capped["n_runs"] == 1).all()  # U keeps them apart
    assert "max_train_bytes" in info["grouping"]["unique_data"]
