"""Coverage of `scale predict`'s 95% loss intervals on held-out runs of a published study, before and after
the error model: rolling-origin cuts of the Chinchilla runs (Epoch AI's extraction of Hoffmann et al. 2022
Figure 4, read from ../shared/data). For each cut the runs below it are fitted as `scale fit` would, and
every run above it is predicted. "before" is the bootstrap percentile interval alone (what predict gave
before the error model); "after" is the prediction interval (bootstrap + run noise + extrapolation term).

Usage: python bench/bench_calibration.py [--shares 0.1,0.2,0.3] [--bootstrap 40]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from scaling_cli.fit import FitOptions, TableOptions, fit_all, predict
from scaling_cli.fit.bootstrap import interval
from scaling_cli.fit.law import get
from scaling_cli.fit.results import LawFit

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "chinchilla_svg_extracted_data.csv"
COLUMNS = TableOptions(n_col="N", c_col="C", loss_col="loss")


def chinchilla_runs() -> pd.DataFrame:
    raw = pd.read_csv(DATA).sort_values("loss").iloc[:-5]  # Epoch's 240 runs: the five highest losses out
    return pd.DataFrame({"N": raw["Model Size"], "C": raw["Training FLOP"], "loss": raw["loss"]}).reset_index(drop=True)


def scored_runs(runs: pd.DataFrame, shares, bootstrap: int, folder: Path) -> pd.DataFrame:
    rows, law = [], get("chinchilla")
    c = np.sort(runs["C"].to_numpy())[::-1]
    for share in shares:
        cut = float(c[int(share * len(c))])
        below, above = runs[runs["C"] < cut], runs[runs["C"] >= cut]
        table = folder / f"below_{share}.csv"
        below.to_csv(table, index=False)
        started = time.time()
        document = fit_all(table, COLUMNS, FitOptions(laws=("chinchilla",), bootstrap=bootstrap))
        fitted = document["groups"]["all"]["laws"]["chinchilla"]
        model = fitted["calibration"]
        print(
            f"cut {cut:.3g} ({share:.0%} held out): fit {time.time() - started:.0f} s; s {model['s']:.4f}, "
            f"sigma_run {model['sigma_run']:.4f}, inner backtest runs {model['scored']}",
            flush=True,
        )
        samples = law.samples_of(LawFit.of(fitted))
        for n, compute, loss in above[["N", "C", "loss"]].itertuples(index=False):
            d = compute / (6 * n)
            answer = predict(document, params=n, tokens=d)["groups"]["all"]["run"]["chinchilla"]
            before = interval(law.loss(samples, n, d))
            rows.append({"C_ratio": compute / below["C"].max(), "loss": loss, "pred": answer["loss"],
                         "after": answer["loss_interval"], "before": before})  # fmt: skip
    return pd.DataFrame(rows)


def report(scored: pd.DataFrame) -> None:
    for kind in ("before", "after"):
        low = scored[kind].map(lambda b: b[0])
        high = scored[kind].map(lambda b: b[1])
        inside = (low <= scored["loss"]) & (scored["loss"] <= high)
        width = ((high - low) / scored["pred"]).median()
        print(f"{kind}: coverage {inside.mean():.1%} ({inside.sum()} of {len(scored)}), median width {width:.2%}")
    error = (scored["pred"] / scored["loss"] - 1).abs()
    print(f"median |error| {error.median():.2%}; held-out runs up to {scored['C_ratio'].max():.1f}x the fitted compute")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shares", default="0.1,0.2,0.3")
    parser.add_argument("--bootstrap", type=int, default=40)
    args = parser.parse_args()
    if not DATA.is_file():
        raise SystemExit(f"{DATA}: reference data is absent")
    print(f"CPU: {torch.backends.cpu.get_cpu_capability()}")
    with tempfile.TemporaryDirectory() as folder:
        shares = [float(s) for s in args.shares.split(",")]
        report(scored_runs(chinchilla_runs(), shares, args.bootstrap, Path(folder)))


if __name__ == "__main__":
    main()
