"""The numbers the README's prose quotes, each computed from a committed results snapshot under docs/figures/.

The README marks every such number with `<!-- docs:NAME -->...<!-- /docs -->`. `make docs` (docs/make_docs.py)
fills each marker with `facts()[NAME]`, and tests/test_docs_drift.py fails when a marker's text differs from what
the current snapshot gives, or when a marker has no fact: a number in the prose cannot outlive the run it quotes.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pandas as pd

FIGURES = Path(__file__).resolve().parent / "figures"
# snapshot folder -> the results folder `make docs` copies it from, and the fit files it keeps
SNAPSHOTS = {
    "demo": ("results/demo", ("runs.parquet", "curves.parquet", "fit.json")),
    "known-answer": ("results/known-answer", ("runs.parquet", "curves.parquet", "fit.json")),
    "data-quality": ("results/data-quality", ("runs.parquet", "curves.parquet", "fit.json")),
    "repeat": ("results/repeat", ("runs.parquet", "curves.parquet", "fit.json", "constrained.fit.json")),
    "lr-transfer": ("results/lr-transfer", ("runs.parquet",)),
}
GREEK = {"alpha": "α", "beta": "β"}
MARKER = re.compile(r"<!-- docs:([a-z0-9-]+) -->(.*?)<!-- /docs -->", re.S)


def shown(readme: str) -> dict[str, str]:
    """Each marker's name and the text the README shows inside it."""
    return {match.group(1): match.group(2) for match in MARKER.finditer(readme)}


def fill(readme: str, values: dict[str, str]) -> str:
    """The README with every marker's text replaced by its fact (KeyError names a marker without one)."""
    return MARKER.sub(lambda match: f"<!-- docs:{match.group(1)} -->{values[match.group(1)]}<!-- /docs -->", readme)


def facts(root: Path = FIGURES) -> dict[str, str]:
    """Every fact the README may quote, from the snapshots under `root`."""
    values = {}
    for prefix in ("demo", "known-answer"):
        values.update(_law_facts(prefix, root / prefix))
    values.update(_quality_facts(root / "data-quality"))
    values.update(_repeat_facts(root / "repeat"))
    values.update(_lr_facts(root / "lr-transfer"))
    return values


def _load(folder: Path, name: str = "fit.json") -> dict:
    return json.loads((folder / name).read_text())


def _runs(folder: Path) -> pd.DataFrame:
    runs = pd.read_parquet(folder / "runs.parquet")
    return runs[runs["status"] == "done"]


def _law_facts(prefix: str, folder: Path) -> dict[str, str]:
    """The sweep's Chinchilla law, E, the holdout and backtest errors and the allocation exponents."""
    group = _load(folder)["groups"]["all"]
    runs = _runs(folder)
    law = group["laws"]["chinchilla"]
    identified = law["status"] == "ok"
    p = law["params"]
    E_low, E_high = law["intervals"]["E"]
    largest = runs[runs["tokens"] == runs["tokens"].max()].sort_values("params")
    small, large = largest.iloc[0], largest.iloc[-1]
    values = {
        f"{prefix}-identifies": "identifies" if identified else "does not identify",
        f"{prefix}-law": f"L = {p['E']:.3g} + {p['A']:.3g}/N^{p['alpha']:.3g} + {p['B']:.3g}/D^{p['beta']:.3g}"
        f" (R² {law['r2']:.3f})",
        f"{prefix}-e": f"{p['E']:.4g} [{E_low:.3g}, {E_high:.3g}]",
        f"{prefix}-largest-budget": f"at {_count(large['tokens'])} tokens {small['val_loss']:.3f} nats at "
        f"{_count(small['params'])} parameters, {large['val_loss']:.3f} at {_count(large['params'])}",
        f"{prefix}-holdout": _holdout(group["holdout"]),
        f"{prefix}-backtest": _backtest(group["backtest"]["recommended"], group["laws"]),
        f"{prefix}-exponents": _exponents(group),
        f"{prefix}-isoflop": group.get("skipped", {}).get("isoflop", "fitted"),
    }
    entropy = runs["entropy_rate_bits"].dropna() if "entropy_rate_bits" in runs else pd.Series(dtype=float)
    if len(entropy):
        nats = float(entropy.iloc[0]) * math.log(2)
        values[f"{prefix}-entropy"] = f"{nats:.3f}"
        values[f"{prefix}-e-off"] = f"{abs(p['E'] - nats) / nats:.1%}"
    return values


def _holdout(holdout: dict) -> str:
    names = {"chinchilla": "Chinchilla's law", "kaplan": "Kaplan", "linear": "linear"}
    errors = ", ".join(f"{names.get(law, law)} {error:.1f}%" for law, error in holdout["mape"].items())
    return f"the {holdout['held_out']} largest-compute runs, fitted on the other {holdout['fitted_on']}: {errors}"


def _backtest(chosen: dict, laws: dict) -> str:
    filter_text = "all runs" if chosen["min_tokens_per_param"] is None else f"runs with {chosen['filter']}"
    text = (
        f"{chosen['law']} on {filter_text}, expected extrapolation error {chosen['expected_error']:.1f}% "
        f"over {chosen['scored']} held-out predictions"
    )
    if laws.get(chosen["law"], {}).get("status") != "ok":
        return text + ", withheld from predict (the law is not identified on all runs)"
    return text


def _exponents(group: dict) -> str:
    """N_opt ∝ C^a by Approach 1 (envelope) and Approach 3 (chinchilla), with 95% bootstrap intervals."""
    parts = []
    for law, label in (("envelope", "Approach 1 (the compute-efficient envelope)"), ("chinchilla", "Approach 3")):
        fitted = group["laws"].get(law)
        if not fitted:
            parts.append(f"{label} not fitted")
            continue
        low, high = fitted["intervals"]["a"]
        a = (fitted.get("allocation_exponents") or {}).get("a")
        if fitted["status"] != "ok" or a is None:
            parts.append(f"{label} not identified (its a's interval {low:.2g}–{high:.2g})")
        else:
            parts.append(f"{label} {a:.2f} ({low:.2g}–{high:.2g})")
    return ", ".join(parts)


def _count(value: float) -> str:
    """4136 -> 4.1k, 168384 -> 168k, 2097152 -> 2.1M: as the prose writes sizes and budgets."""
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= scale:
            scaled = value / scale
            return f"{scaled:.2g}{suffix}" if scaled < 100 else f"{scaled:.0f}{suffix}"
    return f"{value:.0f}"


def _quality_facts(folder: Path) -> dict[str, str]:
    """The per-level law table and the loss at the largest budget by quality level."""
    fit = _load(folder)
    runs = _runs(folder)
    rows = ["| level | E | B | β | α | identified |", "|---|---|---|---|---|---|"]
    for name, group in fit["groups"].items():
        law = group["laws"].get("chinchilla")
        if not law or "params" not in law:
            rows.append(f"| {_level(name)} | not fitted | | | | |")
            continue
        cells = [_with_interval(law, key) for key in ("E", "B", "beta", "alpha")]
        rows.append(f"| {_level(name)} | {' | '.join(cells)} | {'yes' if law['status'] == 'ok' else 'no'} |")
    top = runs["tokens"].max()
    means = runs[runs["tokens"] == top].groupby("dataset")["val_loss"].mean()
    clean = means[[name for name in means.index if "?" not in name][0]]
    moves = "; ".join(
        f"{_level(name)} {loss:.3f}" + ("" if "?" not in name else f" ({loss - clean:+.3f})")
        for name, loss in means.items()
    )
    return {
        "quality-table": "\n\n" + "\n".join(rows) + "\n\n",
        "quality-runs": str(len(runs)),
        "quality-largest-budget": f"at {_count(top)} tokens the mean over the widths is {moves}",
    }


def _repeat_facts(folder: Path) -> dict[str, str]:
    """Loss at the largest budget per cap on unique data, and the constrained law's R*."""
    runs = _runs(folder)
    top = runs[runs["tokens"] == runs["tokens"].max()]
    per_cap = top.groupby("dataset").agg(loss=("val_loss", "mean"), epochs=("epochs", "mean"))
    per_cap = per_cap.sort_values("epochs")
    levels = ", ".join(f"{_level(name)} {row.loss:.3f} ({row.epochs:.2g} epochs)" for name, row in per_cap.iterrows())
    law = _load(folder, "constrained.fit.json")["groups"]["all"]["laws"]["constrained"]
    p, intervals = law["params"], law["intervals"]
    low, high = intervals["R_D_star"]
    return {
        "repeat-largest-budget": f"at {_count(top['tokens'].iloc[0])} tokens the mean loss is {levels}",
        "repeat-rstar": f"{p['R_D_star']:.3g} [{low:.3g}, {high:.3g}]",
        "repeat-law": ", ".join(_with_interval(law, key, label=True) for key in ("E", "B", "beta", "alpha")),
        "repeat-identified": "identified" if law["status"] == "ok" else "not identified: " + "; ".join(law["problems"]),
    }


def _lr_facts(folder: Path) -> dict[str, str]:
    """The val loss at each lr of the base width's grid, and the best lr, as powers of 2."""
    runs = _runs(folder).sort_values("lr")
    power = {lr: f"2^{round(math.log2(lr))}" for lr in runs["lr"]}
    best = runs.loc[runs["val_loss"].idxmin(), "lr"]
    return {
        "lr-transfer-losses": ", ".join(f"{loss:.3f}" for loss in runs["val_loss"]),
        "lr-transfer-best": power[best],
    }


def _with_interval(law: dict, key: str, label: bool = False) -> str:
    low, high = law["intervals"].get(key, (math.nan, math.nan))
    text = f"{law['params'][key]:.3g} [{low:.2g}, {high:.2g}]"
    return f"{GREEK.get(key, key)} {text}" if label else text


def _level(dataset: str) -> str:
    """pystdlib?noise_fraction=0.25 -> 25% noise; pystdlib?max_train_bytes=8192 -> U = 8.2k bytes; pystdlib -> clean."""
    if "noise_fraction=" in dataset:
        return f"{float(dataset.split('noise_fraction=')[1].split('&')[0]):.0%} noise"
    if "max_train_bytes=" in dataset:
        return f"U = {_count(float(dataset.split('max_train_bytes=')[1].split('&')[0]))} bytes"
    return "clean" if "?" not in dataset else dataset
