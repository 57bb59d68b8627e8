"""Predictions from a fit.json: the compute-optimal split of a budget, or the loss of a given run.

Intervals come from the bootstrap samples stored with each law, so any compute or run gets its own
percentile interval without refitting.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from scaling_cli.errors import FitError
from scaling_cli.fit.bootstrap import interval
from scaling_cli.fit.laws import (
    chinchilla_loss,
    chinchilla_optimum,
    kaplan_loss,
    kaplan_term,
    linear_loss,
    power_law,
)

CHINCHILLA_KEYS = ("E", "A", "B", "alpha", "beta")
ALLOCATION_KEYS = ("a", "N0", "b", "D0")


def predict(
    fit_json: dict,
    *,
    compute: float | None = None,
    params: float | None = None,
    tokens: float | None = None,
    group: str | None = None,
) -> dict:
    """{"groups": {name: {"compute": {law: ...}, "run": {law: ...}}}} for every group (or just `group`)."""
    wants_run = params is not None or tokens is not None
    if compute is None and not wants_run:
        raise FitError("predict", "--compute", "give --compute C, or --params N with --tokens D")
    if wants_run and (params is None or tokens is None):
        raise FitError(
            "predict", "--params" if params is None else "--tokens", "a run needs both --params and --tokens"
        )
    for option, value in (("--compute", compute), ("--params", params), ("--tokens", tokens)):
        if value is not None and not value > 0:
            raise FitError("predict", option, f"must be positive, got {value:g}")
    groups = fit_json.get("groups", {})
    names = [group] if group is not None else sorted(groups)
    if group is not None and group not in groups:
        raise FitError("--group", group, f"no such group; have: {', '.join(sorted(groups))}")
    result = {"compute": compute, "params": params, "tokens": tokens, "groups": {}}
    # Extreme bootstrap samples over- or underflow; interval() keeps only the finite values they give.
    with np.errstate(over="ignore", divide="ignore", invalid="ignore", under="ignore"):
        for name in names:
            laws = groups[name].get("laws", {})
            entry = {}
            if compute is not None:
                entry["compute"] = allocation(laws, compute)
            if wants_run:
                entry["run"] = run_loss(laws, params, tokens)
            result["groups"][name] = entry
    return result


def _samples(law: dict) -> list:
    """The law's bootstrap samples that are complete (a value written as null is an overflow)."""
    samples = (law.get("bootstrap") or {}).get("samples") or []
    return [s for s in samples if all(v is not None for v in s)]


def allocation(laws: dict, compute: float) -> dict:
    """N_opt, D_opt, tokens per parameter (and loss for Approach 3) at `compute`, per law."""
    out = {}
    if "chinchilla" in laws:
        fitted = laws["chinchilla"]
        n, d = chinchilla_optimum(fitted["params"], compute)
        samples = [dict(zip(CHINCHILLA_KEYS, s)) for s in _samples(fitted)]
        optima = [chinchilla_optimum(s, compute) for s in samples]
        out["chinchilla"] = _allocation_entry(
            n,
            d,
            [o[0] for o in optima],
            [o[1] for o in optima],
            loss=float(chinchilla_loss(fitted["params"], n, d)),
            loss_samples=[float(chinchilla_loss(s, *o)) for s, o in zip(samples, optima)],
        )
    if "kaplan" in laws:
        c_law = laws["kaplan"]["L_C"]["params"]
        samples = np.asarray(_samples(laws["kaplan"]), dtype=float).reshape(-1, 9)
        out["kaplan"] = {
            "loss": float(kaplan_term(compute, c_law["C_c"], c_law["alpha_C"], c_law["E"])),
            "loss_interval": interval(kaplan_term(compute, *samples[:, -3:].T)),
            "note": "L(C) on the compute-efficient frontier; no allocation",
        }
    for name in ("envelope", "isoflop"):
        if name in laws:
            p = laws[name]["params"]
            samples = [dict(zip(ALLOCATION_KEYS, s)) for s in _samples(laws[name])]
            out[name] = _allocation_entry(
                power_law(compute, p["N0"], p["a"]),
                power_law(compute, p["D0"], p["b"]),
                [power_law(compute, s["N0"], s["a"]) for s in samples],
                [power_law(compute, s["D0"], s["b"]) for s in samples],
            )
    return out


def _allocation_entry(n, d, n_samples, d_samples, loss=None, loss_samples=()) -> dict:
    ratios = [dd / nn for nn, dd in zip(n_samples, d_samples)]
    entry = {
        "N_opt": float(n),
        "N_opt_interval": interval(n_samples),
        "D_opt": float(d),
        "D_opt_interval": interval(d_samples),
        "tokens_per_param": float(d / n),
        "tokens_per_param_interval": interval(ratios),
    }
    if loss is not None:
        entry.update(loss=loss, loss_interval=interval(loss_samples))
    return entry


def run_loss(laws: dict, params: float, tokens: float) -> dict:
    """The loss each loss-predicting law gives a run of `params` parameters trained on `tokens` tokens."""
    out = {}
    if "chinchilla" in laws:
        samples = [dict(zip(CHINCHILLA_KEYS, s)) for s in _samples(laws["chinchilla"])]
        out["chinchilla"] = {
            "loss": float(chinchilla_loss(laws["chinchilla"]["params"], params, tokens)),
            "loss_interval": interval([float(chinchilla_loss(s, params, tokens)) for s in samples]),
        }
    if "kaplan" in laws:
        fitted = laws["kaplan"]
        samples = [_kaplan_from_vector(fitted, s) for s in _samples(fitted)]
        out["kaplan"] = {
            "loss": float(kaplan_loss(fitted, params, tokens)),
            "loss_interval": interval([float(kaplan_loss(s, params, tokens)) for s in samples]),
        }
    if "linear" in laws:
        compute = 6.0 * params * tokens
        samples = [dict(zip(("w0", "wN", "wD", "wC"), s)) for s in _samples(laws["linear"])]
        out["linear"] = {
            "loss": float(linear_loss(laws["linear"]["params"], params, tokens, compute)),
            "loss_interval": interval([float(linear_loss(s, params, tokens, compute)) for s in samples]),
            "note": "C = 6 N D",
        }
    return out


def _kaplan_from_vector(fitted: dict, vector) -> dict:
    """A bootstrap sample (L_N, L_D, L_C parameters in stored order) as a kaplan law dict."""
    law, position = {}, 0
    for name in ("L_N", "L_D", "L_C"):
        keys = list(fitted[name]["params"])
        law[name] = {"params": dict(zip(keys, np.asarray(vector[position : position + len(keys)], dtype=float)))}
        position += len(keys)
    return law


def load_fit(path) -> dict:
    """Read a fit.json (or the fit.json of a results directory); FitError when missing or unreadable."""
    path = Path(path)
    if path.is_dir():
        path = path / "fit.json"
    if not path.is_file():
        raise FitError(str(path), "", "no such fit file; run `scale fit` first")
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise FitError(str(path), "", f"cannot read fit file: {exc}") from None
    if not isinstance(document, dict) or "groups" not in document:
        raise FitError(str(path), "groups", "not a fit.json written by `scale fit`")
    return document
