"""Benchmark of the Approach 3 fit: batched BFGS over the whole start grid vs a plain scipy loop.

Side by side from one run, on the 240 Chinchilla points of ../shared/data (skipped with a message when
absent): the full 4,500-start grid fitted by `fit_chinchilla` against a loop of
scipy.optimize.minimize(method="L-BFGS-B") from every start with finite-difference gradients. Then the
time of 1,000 bootstrap refits, each started from the full-data optimum and its 4 nearest grid points
(on a synthetic 240-point table from the published law when the shared data is absent). Last, the whole
`fit_all` pipeline (holdout and backtest included) on that table with BLAS limited to one thread, as `scale fit`
runs it, against the BLAS pools' default size, alternating, CPU seconds of this process.

Usage: .venv/bin/python bench/bench_fit.py [--baseline-starts K] [--resamples B]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import huber, logsumexp

from scaling_cli.fit.bootstrap import bootstrap_chinchilla, resample_indices
from scaling_cli.fit.chinchilla import (
    CHINCHILLA_GRID,
    fit_chinchilla,
    grid_starts,
    to_params,
)
from scaling_cli.fit.laws import chinchilla_loss
from scaling_cli.fit.pipeline import FitOptions, TableOptions, fit_all

CSV = Path(__file__).resolve().parents[2] / "shared" / "data" / "chinchilla_svg_extracted_data.csv"
PUBLISHED = {"E": 1.817, "A": 477.8, "B": 2143.9, "alpha": 0.347, "beta": 0.367}


def chinchilla_points():
    table = pd.read_csv(CSV).sort_values("loss").iloc[:-5]
    n = table["Model Size"].to_numpy()
    return n, table["Training FLOP"].to_numpy() / (6 * n), table["loss"].to_numpy()


def synthetic_points(count: int = 240, seed: int = 0):
    rng = np.random.default_rng(seed)
    n = np.exp(rng.uniform(np.log(7e7), np.log(1.6e10), count))
    d = np.exp(rng.uniform(np.log(5e9), np.log(5e11), count))
    return n, d, chinchilla_loss(PUBLISHED, n, d) * np.exp(rng.normal(0, 0.01, count))


def scipy_loop(n, d, loss, starts):
    """The straightforward way: L-BFGS-B from every start, gradients by finite differences."""
    log_n, log_d, log_loss = np.log(n), np.log(d), np.log(loss)

    def objective(x):
        e, a, b, alpha, beta = x
        predicted = logsumexp([a - alpha * log_n, b - beta * log_d, np.full_like(log_n, e)], axis=0)
        return huber(1e-3, predicted - log_loss).sum()

    best = None
    for start in starts:
        result = minimize(objective, start, method="L-BFGS-B")
        if best is None or result.fun < best.fun:
            best = result
    return best


def show(label, seconds, params, objective):
    text = ", ".join(f"{k}={v:.4g}" for k, v in params.items())
    print(f"  {label:<34} {seconds:8.2f} s   objective {objective:.10f}   {text}")


def bench_grid(baseline_starts: int):
    n, d, loss = chinchilla_points()
    starts = grid_starts()
    print(f"Approach 3 on {len(loss)} Chinchilla points, Huber delta 1e-3, {len(starts)}-start grid")
    began = time.perf_counter()
    fast = fit_chinchilla(n, d, loss)
    fast_s = time.perf_counter() - began
    # A seeded random sample: evenly spaced starts would share values on the grid's last axes.
    picked = np.random.default_rng(0).choice(len(starts), baseline_starts, replace=False)
    subset = starts[np.sort(picked)] if baseline_starts < len(starts) else starts
    began = time.perf_counter()
    slow = scipy_loop(n, d, loss, subset)
    slow_s = (time.perf_counter() - began) * len(starts) / len(subset)
    scaled = "" if len(subset) == len(starts) else f" (timed on {len(subset)} starts, scaled to {len(starts)})"
    show("scipy L-BFGS-B loop, finite diff" + ("*" if scaled else ""), slow_s, to_params(slow.x), slow.fun)
    show("batched BFGS + polish (scale fit)", fast_s, fast["params"], fast["diagnostics"]["objective"])
    print(
        f"  {'published (Besiroglu et al. 2024)':<34} {'':>37}   "
        + ", ".join(f"{k}={v:.4g}" for k, v in PUBLISHED.items())
    )
    if scaled:
        print(f"  *{scaled}")
    worst = max(abs(fast["params"][k] / v - 1) for k, v in to_params(slow.x).items())
    print(
        f"  speed-up {slow_s / fast_s:.1f}x; largest relative parameter difference {worst:.2e}; "
        f"{fast['diagnostics']['starts_at_optimum']} of {len(starts)} starts reached the optimum"
    )
    return n, d, loss, fast


def bench_bootstrap(n, d, loss, fitted, resamples: int):
    points = pd.DataFrame({"N": n, "D": d, "loss": loss})
    indices = resample_indices(len(points), resamples, seed=0)
    began = time.perf_counter()
    result = bootstrap_chinchilla(points, fitted, indices, delta=1e-3, grid=CHINCHILLA_GRID, at_compute=5.76e23)
    seconds = time.perf_counter() - began
    failed = result["bootstrap"]["failed"]
    intervals = ", ".join(
        f"{k} [{v[0]:.4g}, {v[1]:.4g}]" for k, v in result["intervals"].items() if k in ("E", "alpha", "beta", "a")
    )
    print(
        f"{resamples} bootstrap refits (each from the full-data optimum + 4 nearest grid starts, all in one batch): "
        f"{seconds:.2f} s, {failed} failed; 95% intervals {intervals}"
    )


def bench_blas_threads(n, d, loss, rounds: int = 2) -> None:
    with tempfile.TemporaryDirectory() as folder:
        table = Path(folder) / "points.csv"
        pd.DataFrame({"params": n, "tokens": d, "flops": 6 * n * d, "val_loss": loss}).to_csv(table, index=False)
        options = FitOptions(laws=("chinchilla",), holdout="3", backtest=True, bootstrap=100)
        contenders = {"one BLAS thread (scale fit)": fit_all, "default BLAS pools": fit_all.__wrapped__}
        seconds = {label: [] for label in contenders}
        for _ in range(rounds):
            for label, fit in contenders.items():
                began = time.process_time()
                fit(table, TableOptions(), options)
                seconds[label].append(time.process_time() - began)
    best = {label: min(times) for label, times in seconds.items()}
    print(f"fit_all, holdout 3 + backtest + 100 resamples, {len(os.sched_getaffinity(0))} cores, best of {rounds}:")
    for label, value in best.items():
        print(f"  {label}: {value:.2f} CPU-s")
    print(f"  default pools / one thread: {best['default BLAS pools'] / best['one BLAS thread (scale fit)']:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--baseline-starts", type=int, default=4500, help="starts the scipy loop runs (time scaled to 4,500)"
    )
    parser.add_argument("--resamples", type=int, default=1000)
    args = parser.parse_args()
    if CSV.is_file():
        n, d, loss, fitted = bench_grid(args.baseline_starts)
    else:
        print(f"skipping the grid comparison: {CSV} is absent; bootstrap timed on a synthetic 240-point table")
        n, d, loss = synthetic_points()
        fitted = fit_chinchilla(n, d, loss)
    bench_bootstrap(n, d, loss, fitted, args.resamples)
    bench_blas_threads(n, d, loss)


if __name__ == "__main__":
    main()
