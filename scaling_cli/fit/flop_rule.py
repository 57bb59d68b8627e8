"""FLOPs per parameter-token k(N) of a `scale` sweep's own models, along the sweep's shape rule.

For a results directory, k(N) = C / (N D) is not fitted: it is the model's own Appendix F count evaluated
on the shapes the sweep would build at each size (its depth rule or fixed depth, its head width, context
and vocabulary), tabulated from the smallest run up to 1e14 parameters and interpolated in ln N. The
table is checked against every run's recorded C / (N D) before it is used.

The model package imports torch, so it is imported only here and only for results directories;
a plain table never needs it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

MAX_PARAMS = 1e14  # the table reaches this size; beyond it k(N) is the last entry (within 1e-4 of its limit)
TABLE_STEPS = 240  # widths on a geometric grid from the smallest run's width to MAX_PARAMS
MATCH_TOLERANCE = 1e-6  # the rule must reproduce each run's C / (N D) this closely


def model_formula_table(results_dir: Path, runs: pd.DataFrame, n_column: str) -> dict | None:
    """{"N": [...], "k": [...], "rule": text} for the sweep's shapes, or None when the rule cannot be
    recovered (explicit shapes, a plug-in model, a missing config) or does not reproduce the runs."""
    template = _template_config(results_dir)
    if template is None or template.get("architecture", "gpt2") not in ("gpt2", "llama"):
        return None
    try:
        from scaling_cli.config.model import ModelConfig, depth_for_width, heads_for_width
        from scaling_cli.model.counts import count_params, flops_per_token
    except ImportError:
        return None
    rule = _shape_rule(runs, template, depth_for_width)
    if rule is None:
        return None
    head_dim = template["d_model"] // template["n_head"]

    def config_at(width: int):
        width = int(width)
        shape = {**template, "d_model": width, "n_layer": int(rule(width)), "n_head": heads_for_width(width, head_dim)}
        return ModelConfig(**shape)

    def k_of(config) -> tuple[float, float]:
        total, nonembed = count_params(config)
        n = nonembed if n_column == "params_nonembed" else total
        return float(n), flops_per_token(config)["chinchilla"] / n

    if not _reproduces_runs(runs, config_at, k_of):
        return None
    widths = _widths(int(runs["d_model"].min()), head_dim, config_at, k_of)
    table = sorted(k_of(config_at(w)) for w in widths)
    sizes, ratios = zip(*table)
    depth = "fixed depth" if len(set(runs["n_layer"])) == 1 else "depth = max(2, round(sqrt(d_model / 8)))"
    return {
        "N": list(sizes),
        "k": list(ratios),
        "rule": f"{template.get('architecture', 'gpt2')}, {depth}, heads of {head_dim} channels, "
        f"seq_len {template['seq_len']}, vocab {template['vocab_size']}",
    }


def _template_config(results_dir: Path) -> dict | None:
    """The model config of the widest run: the fields every shape shares, and the head width of the rule
    (a run narrower than one head has a single narrower head)."""
    widest = None
    for config_path in Path(results_dir, "runs").glob("*/config.json"):
        try:
            model = json.loads(config_path.read_text()).get("model")
        except (OSError, ValueError):
            return None
        if isinstance(model, dict) and (widest is None or model.get("d_model", 0) > widest.get("d_model", 0)):
            widest = model
    return widest


def _shape_rule(runs: pd.DataFrame, template: dict, depth_for_width):
    """depth(width) that every run follows: fixed depth, or the default depth rule; None for neither."""
    shapes = runs[["d_model", "n_layer"]].drop_duplicates()
    if shapes["n_layer"].nunique() == 1:
        depth = int(shapes["n_layer"].iloc[0])
        return lambda width: depth
    if all(depth_for_width(int(w)) == int(n) for w, n in zip(shapes["d_model"], shapes["n_layer"])):
        return depth_for_width
    return None


def _reproduces_runs(runs: pd.DataFrame, config_at, k_of) -> bool:
    if not {"d_model", "N", "D", "C"} <= set(runs.columns):
        return False
    for width, rows in runs.groupby("d_model"):
        try:
            n, k = k_of(config_at(int(width)))
        except ValueError:
            return False
        recorded = rows["C"].to_numpy(dtype=float) / (rows["N"].to_numpy(dtype=float) * rows["D"].to_numpy(dtype=float))
        if not np.allclose(rows["N"].to_numpy(dtype=float), n, rtol=MATCH_TOLERANCE):
            return False
        if not np.allclose(recorded, k, rtol=MATCH_TOLERANCE):
            return False
    return True


def _widths(smallest: int, head_dim: int, config_at, k_of) -> list[int]:
    """Widths (multiples of the head width above it) from the smallest run's to about MAX_PARAMS parameters."""
    largest = smallest
    while k_of(config_at(largest))[0] < MAX_PARAMS:
        largest *= 2
    grid = np.unique(np.round(np.geomspace(smallest, largest, TABLE_STEPS)).astype(int))
    snapped = [int(w) if w <= head_dim else int(round(w / head_dim)) * head_dim for w in grid]
    return sorted({smallest, *snapped})
