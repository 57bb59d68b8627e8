"""Prediction intervals checked on runs nobody here produced: rolling-origin backtests of the Chinchilla runs.

The data are Epoch AI's extraction of Hoffmann et al. 2022's Figure 4 (../shared/data, read in place; the
test skips when it is absent). For each outer cut, `scale fit` sees only the runs below it (its own error
model comes from rolling cuts inside those runs), and `predict` gives each run above it a 95% prediction
interval. The share of held-out runs inside their intervals must be near 95%: not 30% (overconfident),
and not 100% bought with intervals far too wide (the median width is stated and bounded).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scaling_cli.fit import FitOptions, TableOptions, fit_all, predict

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "chinchilla_svg_extracted_data.csv"
HELD_OUT_SHARES = (0.1, 0.2, 0.3)  # outer cuts: the largest-compute runs held out, a larger share each time
BOOTSTRAP = 40
COLUMNS = TableOptions(n_col="N", c_col="C", loss_col="loss")


def chinchilla_runs() -> pd.DataFrame:
    """The 240 runs Epoch's replication fits: the five highest losses left out, D = C / (6 N)."""
    raw = pd.read_csv(DATA).sort_values("loss").iloc[:-5]
    return pd.DataFrame({"N": raw["Model Size"], "C": raw["Training FLOP"], "loss": raw["loss"]}).reset_index(drop=True)


def outer_cuts(runs: pd.DataFrame) -> list[float]:
    c = np.sort(runs["C"].to_numpy())[::-1]
    return [float(c[int(share * len(c))]) for share in HELD_OUT_SHARES]


def coverage_at(runs: pd.DataFrame, cut: float, directory: Path) -> list[dict]:
    """Fit below the cut (as `scale fit` would), then each held-out run's prediction and interval."""
    below, above = runs[runs["C"] < cut], runs[runs["C"] >= cut]
    table = directory / f"below_{cut:.3g}.csv"
    below.to_csv(table, index=False)
    document = fit_all(table, COLUMNS, FitOptions(laws=("chinchilla",), bootstrap=BOOTSTRAP))
    rows = []
    for n, c, loss in above[["N", "C", "loss"]].itertuples(index=False):
        answer = predict(document, params=n, tokens=c / (6 * n))["groups"]["all"]["run"]["chinchilla"]
        low, high = answer["loss_interval"]
        rows.append({"cut": cut, "C_ratio": c / below["C"].max(), "loss": loss, "low": low, "high": high,
                     "pred": answer["loss"]})  # fmt: skip
    return rows


@pytest.mark.skipif(not DATA.is_file(), reason="reference data ../shared/data is absent")
def test_prediction_intervals_cover_held_out_chinchilla_runs_at_their_stated_rate(tmp_path):
    runs = chinchilla_runs()
    scored = pd.DataFrame([row for cut in outer_cuts(runs) for row in coverage_at(runs, cut, tmp_path)])
    inside = (scored["low"] <= scored["loss"]) & (scored["loss"] <= scored["high"])
    coverage = float(inside.mean())
    median_width = float(((scored["high"] - scored["low"]) / scored["pred"]).median())
    # Measured: see the README's "How far to trust a prediction" for the numbers this asserts around.
    print(f"calibration: coverage {coverage:.1%} of {len(scored)} runs, median width {median_width:.2%}")
    assert len(scored) >= 40 and scored["C_ratio"].max() > 10
    assert 0.80 <= coverage <= 0.99, f"coverage {coverage:.2f} over {len(scored)} runs"
    assert median_width < 0.15, f"median interval width {median_width:.1%} of the prediction"
