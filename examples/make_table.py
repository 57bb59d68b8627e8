"""Write examples/table.csv: a small table of runs shaped like published scaling data, for `scale fit` and
`scale plot` examples that need no training. Losses follow Chinchilla's Approach 3 fit (Hoffmann et al.
2022: E = 1.69, A = 406.4, B = 410.7, alpha = 0.34, beta = 0.28) at five isoFLOP budgets, with 1% seeded
multiplicative noise, so a fit recovers the law only approximately, as with real runs.

Run: python examples/make_table.py   (deterministic: the same file every time)
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

E, A, B, ALPHA, BETA = 1.69, 406.4, 410.7, 0.34, 0.28
BUDGETS = (6e18, 1e19, 3e19, 6e19, 1e20)  # training FLOPs C
SIZES_PER_BUDGET = 8
NOISE = 0.01


def rows() -> list[dict]:
    rng = np.random.default_rng(0)
    table = []
    for flops in BUDGETS:
        optimum = 0.6 * (flops / 6) ** 0.5  # near the compute-optimal N, so each budget's minimum is inside
        for n in np.geomspace(optimum / 6, optimum * 6, SIZES_PER_BUDGET):
            d = flops / (6 * n)
            loss = (E + A / n**ALPHA + B / d**BETA) * np.exp(rng.normal(0.0, NOISE))
            table.append({"Model Size": int(round(n, -3)), "Training FLOP": f"{flops:.3g}", "loss": round(loss, 4)})
    return table


def main() -> None:
    path = Path(__file__).with_name("table.csv")
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["Model Size", "Training FLOP", "loss"])
        writer.writeheader()
        writer.writerows(rows())
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
