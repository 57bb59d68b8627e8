"""Benchmark: the cost of keeping runs.parquet / curves.parquet current over a whole sweep, rebuilding both
tables after every settled run (the old compaction) against appending the settled run (the new one).

A synthetic store of `--runs` runs with every documented row column and `--points` curve points per run is
filled one run at a time, as a sweep does, once per strategy in separate directories of the same process
(alternating blocks of runs, so a noisy neighbour slows both alike). Both must end with identical tables.

Usage: python bench/bench_store.py [--runs 500] [--points 25]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import pandas as pd

from scaling_cli.store import CURVES_COLUMNS, RUNS_COLUMNS, Store

BLOCK = 25  # runs per strategy before switching to the other


def synthetic_row(index: int) -> dict:
    row = {column: float(index) for column in RUNS_COLUMNS}
    row.update(run_id=f"{index:012x}", sweep="bench", dataset="markov", tokenizer="bytes", schedule="wsd")
    row.update(status="done", device="cpu", branch_of="", error="", diverged_step=None, entropy_rate_bits=None)
    return row


def write_run(store: Store, index: int, points: int) -> str:
    row = synthetic_row(index)
    curve = [{c: float(step) for c in CURVES_COLUMNS if c != "run_id"} | {"step": step} for step in range(points)]
    store.run_dir(row["run_id"]).mkdir(parents=True, exist_ok=True)
    (store.run_dir(row["run_id"]) / "curve.jsonl").write_text("".join(json.dumps(p) + "\n" for p in curve))
    store.write_row(row["run_id"], row)
    return row["run_id"]


def settle(store: Store, index: int, points: int, appending: bool) -> float:
    """Seconds the compaction after one settled run takes."""
    run_id = write_run(store, index, points)
    began = time.perf_counter()
    store.compact([run_id] if appending else None)
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--points", type=int, default=25, help="curve points per run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        stores = {name: Store(Path(root) / name) for name in ("rebuild", "append")}
        for store in stores.values():
            store.init("", [])
        spent = {name: [] for name in stores}
        for start in range(0, args.runs, BLOCK):
            for name, store in stores.items():
                for index in range(start, min(args.runs, start + BLOCK)):
                    spent[name].append(settle(store, index, args.points, appending=name == "append"))
            print(
                f"{min(args.runs, start + BLOCK):>5} runs: last compaction rebuild {spent['rebuild'][-1] * 1e3:7.1f} ms"
                f"  append {spent['append'][-1] * 1e3:7.1f} ms",
                flush=True,
            )
        for table in ("runs_parquet", "curves_parquet"):
            pd.testing.assert_frame_equal(
                pd.read_parquet(getattr(stores["rebuild"], table)), pd.read_parquet(getattr(stores["append"], table))
            )
    total = {name: sum(times) for name, times in spent.items()}
    print(f"\n{args.runs} runs x {args.points} curve points, one compaction per settled run; identical tables")
    print(f"rebuild every table (old)  total {total['rebuild']:8.2f} s  last {spent['rebuild'][-1] * 1e3:7.1f} ms")
    print(f"append the settled run     total {total['append']:8.2f} s  last {spent['append'][-1] * 1e3:7.1f} ms")
    print(f"ratio old / new            {total['rebuild'] / total['append']:8.1f}x")


if __name__ == "__main__":
    main()
