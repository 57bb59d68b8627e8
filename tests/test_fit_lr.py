"""The learning rate `scale fit` chooses per model size, and its warning when that lr is at the edge of the
grid tried: on hand-made tables, and on a real tiny sweep with an lr axis trained and fitted through `scale`."""

from __future__ import annotations

import json
import math
import re

import pandas as pd
import pytest
from conftest import REPO, scale_in_process

from scaling_cli.fit import FitOptions, fit_all

LRS = (1e-3, 3e-3, 1e-2)
BEST_LR = {1e5: 1e-2, 2e5: 3e-3, 4e5: 1e-3}  # the largest, an inner and the smallest lr of LRS
BUDGETS = (1e6, 4e6, 1.6e7)


def _loss(size: float, tokens: float, lr: float) -> float:
    """A Chinchilla-like loss plus a penalty growing with the distance (in log lr) from the size's best lr."""
    return 2.0 + 100.0 / size**0.3 + 1000.0 / tokens**0.3 + 0.05 * abs(math.log(lr / BEST_LR[size]))


def _row(size, tokens, lr, loss, status="done", seed=0):
    run_id = f"n{size:g}-d{tokens:g}-lr{lr:g}-s{seed}"
    return {
        "run_id": run_id,
        "params": size,
        "tokens": tokens,
        "lr": lr,
        "seed": seed,
        "val_loss": loss,
        "status": status,
    }


def _grid_rows():
    return [_row(n, d, lr, _loss(n, d, lr)) for n in BEST_LR for d in BUDGETS for lr in LRS]


def _lr_summary(rows, tmp_path, group="all"):
    path = tmp_path / "runs.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return fit_all(path, None, FitOptions(bootstrap=0))["groups"][group]["lr"]


def _by_size(summary) -> dict[float, dict]:
    return {size["N"]: size for size in summary["sizes"]}


def test_best_lr_per_size_with_edges_flagged(tmp_path):
    sizes = _by_size(_lr_summary(_grid_rows(), tmp_path))
    assert {n: size["lr"] for n, size in sizes.items()} == BEST_LR
    assert {n: size["edge"] for n, size in sizes.items()} == {1e5: "high", 2e5: None, 4e5: "low"}
    for size in sizes.values():
        assert size["tried"] == list(LRS)
        assert size["D"] == max(BUDGETS)  # every budget ran the whole grid: the largest decides
        assert size["losses"] == pytest.approx([_loss(size["N"], size["D"], lr) for lr in LRS])


def test_edge_warnings_name_the_size_and_the_direction(tmp_path):
    warnings = _lr_summary(_grid_rows(), tmp_path)["warnings"]
    assert warnings == [
        "N=1e+05: best lr 0.01 is the largest tried (0.001, 0.003, 0.01); extend the lr grid upward",
        "N=4e+05: best lr 0.001 is the smallest tried (0.001, 0.003, 0.01); extend the lr grid downward",
    ]


def test_seed_means_decide(tmp_path):
    """One lucky seed of a worse lr does not beat the better lr's seed mean."""
    rows = _grid_rows() + [_row(2e5, 1.6e7, lr, _loss(2e5, 1.6e7, lr), seed=1) for lr in LRS]
    lucky = _row(2e5, 1.6e7, 1e-2, _loss(2e5, 1.6e7, 3e-3) - 0.01, seed=2)
    unlucky = _row(2e5, 1.6e7, 1e-2, _loss(2e5, 1.6e7, 1e-2) + 0.2, seed=3)
    size = _by_size(_lr_summary([*rows, lucky, unlucky], tmp_path))[2e5]
    assert size["lr"] == 3e-3 and size["edge"] is None


def test_the_budget_with_the_fullest_grid_decides(tmp_path):
    """A size that ran its lr grid only at the smallest budget is judged there, not by a lone lr at a larger one."""
    rows = [_row(n, 1e6, lr, _loss(n, 1e6, lr)) for n in BEST_LR for lr in LRS]
    rows += [_row(n, d, 3e-3, _loss(n, d, 3e-3)) for n in BEST_LR for d in BUDGETS[1:]]
    sizes = _by_size(_lr_summary(rows, tmp_path))
    assert {n: (size["D"], size["lr"], size["edge"]) for n, size in sizes.items()} == {
        1e5: (1e6, 1e-2, "high"),
        2e5: (1e6, 3e-3, None),
        4e5: (1e6, 1e-3, "low"),
    }


def test_a_diverged_larger_lr_closes_the_grid(tmp_path):
    """The best lr below one that diverged is not at an open edge: the diverged lr counts as tried."""
    diverged = [_row(1e5, d, 3e-2, float("nan"), status="diverged") for d in BUDGETS]
    size = _by_size(_lr_summary(_grid_rows() + diverged, tmp_path))[1e5]
    assert size["tried"] == [*LRS, 3e-2] and size["losses"][-1] is None
    assert size["lr"] == 1e-2 and size["edge"] is None


def test_one_lr_for_the_whole_table_has_no_summary(tmp_path):
    rows = [_row(n, d, 3e-3, _loss(n, d, 3e-3)) for n in BEST_LR for d in BUDGETS]
    assert _lr_summary(rows, tmp_path) is None
    result = scale_in_process("fit", tmp_path / "runs.csv", "--bootstrap", "0")
    assert result.returncode == 0, result.stderr
    assert "lr per size" not in result.stdout and "extend the lr grid" not in result.stdout


def test_scale_fit_prints_the_lr_table_and_warnings(tmp_path):
    pd.DataFrame(_grid_rows()).to_csv(tmp_path / "runs.csv", index=False)
    result = scale_in_process("fit", tmp_path / "runs.csv", "--bootstrap", "0")
    assert result.returncode == 0, result.stderr
    rows = _table_rows(result.stdout)
    assert rows == {"1e+05": ("0.01", "high"), "2e+05": ("0.003", "-"), "4e+05": ("0.001", "low")}
    assert "warning: N=1e+05: best lr 0.01 is the largest tried (0.001, 0.003, 0.01); extend the lr grid upward" in (
        result.stdout
    )
    assert "extend the lr grid downward" in result.stdout


def _table_rows(stdout: str) -> dict[str, tuple[str, str]]:
    """{N: (best lr, edge)} from the printed 'lr per size' table."""
    after = stdout.split("lr per size", 1)[1]
    cells = [re.split(r"\s*│\s*", line.strip("│ ")) for line in after.splitlines() if line.startswith("│")]
    return {row[0]: (row[2], row[4]) for row in cells}


# A real sweep: 2 widths x 3 lrs at one budget of sweeps/markov-tiny.toml. 1e-4 barely moves in 24 steps and
# 3.0 blows up (or diverges), so 1e-2 wins at both widths by a wide margin: the inner lr of the grid.
TINY_LRS = (1e-4, 1e-2, 3.0)


@pytest.fixture(scope="module")
def lr_sweep(tmp_path_factory):
    spec = (REPO / "sweeps" / "markov-tiny.toml").read_text()
    for key, value in (
        ("name", '"lr-tiny"'),
        ("d_model", "[16, 32]"),
        ("tokens", "[12_288]"),
        ("lr", "[1e-4, 1e-2, 3.0]"),
    ):
        spec, count = re.subn(rf"(?m)^{key} = .*$", f"{key} = {value}", spec)
        assert count == 1, key
    folder = tmp_path_factory.mktemp("lr-sweep")
    (folder / "lr.toml").write_text(spec)
    result = scale_in_process("sweep", folder / "lr.toml", "--out", folder / "out")
    assert result.returncode == 0, result.stderr
    return folder / "out"


def test_real_sweep_chooses_the_inner_lr_without_a_warning(lr_sweep):
    result = scale_in_process("fit", lr_sweep, "--bootstrap", "0")
    assert result.returncode == 0, result.stderr
    summary = json.loads((lr_sweep / "fit.json").read_text())["groups"]["all"]["lr"]
    runs = pd.read_parquet(lr_sweep / "runs.parquet")
    assert sorted(runs["d_model"].unique()) == [16, 32] and len(summary["sizes"]) == 2
    for size in summary["sizes"]:
        assert size["tried"] == list(TINY_LRS)
        assert size["lr"] == 1e-2 and size["edge"] is None
        mine = runs[(runs["params"] == size["N"]) & (runs["status"] == "done")]
        assert mine.loc[mine["val_loss"].idxmin(), "lr"] == 1e-2
    assert summary["warnings"] == [] and "extend the lr grid" not in result.stdout
    assert "lr per size" in result.stdout


@pytest.mark.parametrize(("query", "edge", "extend"), [("lr < 1", "high", "upward"), ("lr > 1e-3", "low", "downward")])
def test_real_sweep_without_one_side_of_the_grid_warns(lr_sweep, tmp_path, query, edge, extend):
    result = scale_in_process("fit", lr_sweep, "--bootstrap", "0", "--query", query, "--out", tmp_path)
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "fit.json").read_text())["groups"]["all"]["lr"]
    assert [(size["lr"], size["edge"]) for size in summary["sizes"]] == [(1e-2, edge)] * 2
    assert len(summary["warnings"]) == 2 and all(
        w.endswith(f"extend the lr grid {extend}") for w in summary["warnings"]
    )
    assert result.stdout.count(f"extend the lr grid {extend}") == 2
