"""Predictions from a fit.json: the compute-optimal split of a budget, or the loss of a given run.

Every answer says how far it lies beyond the fitted runs (x C, x N, x D) and warns past 10x the largest
compute. The recommended law (the backtest's choice when `scale fit --backtest` ran, else the first
identified law) is reported with its expected extrapolation error. A law that was not identified gives
its reasons instead of numbers, and no law ever answers with a negative or non-finite loss: the linear
baseline is omitted outside the range it was fitted on. Intervals come from the bootstrap samples stored
with each law, so any compute or run gets its own percentile interval without refitting.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from scaling_cli.errors import FitError
from scaling_cli.fit.allocation import chinchilla_allocation, compute_of, optimal_allocation
from scaling_cli.fit.bootstrap import interval
from scaling_cli.fit.constrained import constrained_loss
from scaling_cli.fit.laws import chinchilla_loss, kaplan_loss, kaplan_term, linear_loss, power_law

CHINCHILLA_KEYS = ("E", "A", "B", "alpha", "beta")
CONSTRAINED_KEYS = ("E", "A", "B", "alpha", "beta", "R_star")
ALLOCATION_KEYS = ("a", "N0", "b", "D0")
WARN_COMPUTE_RATIO = 10.0
COMPUTE_PREFERENCE = ("chinchilla", "isoflop", "envelope")  # the default law without a backtest
RUN_PREFERENCE = ("chinchilla", "kaplan")


def predict(
    fit_json: dict,
    *,
    compute: float | None = None,
    params: float | None = None,
    tokens: float | None = None,
    group: str | None = None,
    unique_tokens: float | None = None,
) -> dict:
    """{"groups": {name: {"compute": {law: ...}, "run": {law: ...}, "recommended": {...}}}} per group.

    Each law's row carries `extrapolation` {C_ratio, N_ratio, D_ratio, warning}; `recommended` has the
    recommended law's row for the compute query (`compute`) and the run (`run`) with its expected error.
    """
    wants_run = params is not None or tokens is not None
    if compute is None and not wants_run:
        raise FitError("predict", "--compute", "give --compute C, or --params N with --tokens D")
    if wants_run and (params is None or tokens is None):
        raise FitError(
            "predict", "--params" if params is None else "--tokens", "a run needs both --params and --tokens"
        )
    checked = (("--compute", compute), ("--params", params), ("--tokens", tokens), ("--unique-tokens", unique_tokens))
    for option, value in checked:
        if value is not None and not value > 0:
            raise FitError("predict", option, f"must be positive, got {value:g}")
    groups = fit_json.get("groups", {})
    names = [group] if group is not None else sorted(groups)
    if group is not None and group not in groups:
        raise FitError("--group", group, f"no such group; have: {', '.join(sorted(groups))}")
    convention = fit_json.get("compute_convention") or {"kind": "6ND"}
    result = {"compute": compute, "params": params, "tokens": tokens, "convention": convention["kind"], "groups": {}}
    # Extreme bootstrap samples over- or underflow; interval() keeps only the finite values they give.
    with np.errstate(over="ignore", divide="ignore", invalid="ignore", under="ignore"):
        for name in names:
            entry = {}
            span = groups[name].get("range") or _range_of(groups[name])
            if compute is not None:
                entry["compute"] = allocation(fit_json, name, compute, span)
            if wants_run:
                entry["run"] = run_loss(groups[name].get("laws", {}), params, tokens, convention, span, unique_tokens)
            entry["recommended"] = recommended(fit_json, name, compute, params, tokens, span, unique_tokens)
            result["groups"][name] = entry
    return result


def _range_of(group: dict) -> dict:
    """The fitted range from a group's points (fit.json files written before `range` existed)."""
    points = group.get("points") or []
    columns = {key: np.array([p[key] for p in points], dtype=float) for key in ("N", "D", "C")}
    columns["tokens_per_param"] = columns["D"] / columns["N"] if points else np.array([])
    return {k: [float(v.min()), float(v.max())] if v.size else [np.nan, np.nan] for k, v in columns.items()}


def extrapolation(span: dict, c: float, n: float | None = None, d: float | None = None) -> dict:
    """How far a query lies beyond the largest fitted run, and a warning past 10x compute."""
    ratios = {
        "C_ratio": float(c / span["C"][1]),
        "N_ratio": None if n is None else float(n / span["N"][1]),
        "D_ratio": None if d is None else float(d / span["D"][1]),
    }
    warning = None
    if ratios["C_ratio"] > WARN_COMPUTE_RATIO:
        parts = [f"x{ratios['C_ratio']:,.3g} compute"]
        parts += [f"x{ratios[k]:,.3g} {v}" for k, v in (("N_ratio", "N"), ("D_ratio", "D")) if ratios[k] is not None]
        warning = f"{', '.join(parts)} beyond the largest fitted run: an extrapolation far past the data"
    return {**ratios, "warning": warning}


def _samples(law: dict) -> list:
    """The law's bootstrap samples that are complete (a value written as null is an overflow)."""
    samples = (law.get("bootstrap") or {}).get("samples") or []
    return [s for s in samples if all(v is not None for v in s)]


def _not_identified(law: dict) -> dict | None:
    if law.get("status", "ok") == "ok":
        return None
    return {"status": law["status"], "problems": law.get("problems", []), "note": "not identified: no prediction"}


def allocation(fit_json: dict, group: str, compute: float, span: dict | None = None) -> dict:
    """N_opt, D_opt, tokens per parameter (and loss for Approach 3) at `compute`, per law."""
    laws = fit_json["groups"][group].get("laws", {})
    span = span or fit_json["groups"][group].get("range") or _range_of(fit_json["groups"][group])
    convention = fit_json.get("compute_convention") or {"kind": "6ND"}
    out = {}
    if "chinchilla" in laws:
        fitted = laws["chinchilla"]
        out["chinchilla"] = _not_identified(fitted) or _chinchilla_split(fitted, fit_json, group, compute, convention)
    if "kaplan" in laws:
        out["kaplan"] = _not_identified(laws["kaplan"]) or _kaplan_compute(laws["kaplan"], compute)
    for name in ("envelope", "isoflop"):
        if name in laws:
            out[name] = _not_identified(laws[name]) or _power_split(laws[name], fit_json, group, name, compute)
    for row in out.values():
        if row.get("status", "ok") == "ok":
            row["extrapolation"] = extrapolation(span, compute, row.get("N_opt"), row.get("D_opt"))
    return out


def _chinchilla_split(fitted: dict, fit_json: dict, group: str, compute: float, convention: dict) -> dict:
    n, d = optimal_allocation(fit_json, group, "chinchilla", compute)
    stacked = _stacked(fitted)
    n_s, d_s = chinchilla_allocation(stacked, convention, compute) if stacked else ([], [])
    loss_s = chinchilla_loss(stacked, n_s, d_s) if stacked else []
    return _allocation_entry(n, d, n_s, d_s, loss=float(chinchilla_loss(fitted["params"], n, d)), loss_samples=loss_s)


def _stacked(fitted: dict) -> dict | None:
    samples = np.asarray(_samples(fitted), dtype=float).reshape(-1, 5)
    return {key: samples[:, i] for i, key in enumerate(CHINCHILLA_KEYS)} if len(samples) else None


def _kaplan_compute(fitted: dict, compute: float) -> dict:
    c_law = fitted["L_C"]["params"]
    samples = np.asarray(_samples(fitted), dtype=float).reshape(-1, 9)
    return {
        "loss": _finite(kaplan_term(compute, c_law["C_c"], c_law["alpha_C"], c_law["E"])),
        "loss_interval": interval(kaplan_term(compute, *samples[:, -3:].T)),
        "note": "L(C) on the compute-efficient frontier; no allocation",
    }


def _power_split(fitted: dict, fit_json: dict, group: str, name: str, compute: float) -> dict:
    n, d = optimal_allocation(fit_json, group, name, compute)
    samples = np.asarray(_samples(fitted), dtype=float).reshape(-1, 4)
    a, n0, b, d0 = samples.T
    return _allocation_entry(n, d, power_law(compute, n0, a), power_law(compute, d0, b))


def _allocation_entry(n, d, n_samples, d_samples, loss=None, loss_samples=()) -> dict:
    n_samples, d_samples = np.asarray(n_samples, dtype=float), np.asarray(d_samples, dtype=float)
    entry = {
        "status": "ok",
        "N_opt": float(n),
        "N_opt_interval": interval(n_samples),
        "D_opt": float(d),
        "D_opt_interval": interval(d_samples),
        "tokens_per_param": float(d / n),
        "tokens_per_param_interval": interval(d_samples / n_samples) if n_samples.size else None,
    }
    if loss is not None:
        entry.update(loss=_finite(loss), loss_interval=interval(loss_samples))
    return entry


def _finite(value) -> float | None:
    """A loss worth printing: finite and positive, else None."""
    value = float(value)
    return value if np.isfinite(value) and value > 0 else None


def run_loss(
    laws: dict,
    params: float,
    tokens: float,
    convention: dict | None = None,
    span: dict | None = None,
    unique_tokens: float | None = None,
) -> dict:
    """The loss each loss-predicting law gives a run of `params` parameters trained on `tokens` tokens
    (`unique_tokens` of them unique: only the data-constrained law uses it; default all fresh)."""
    convention = convention or {"kind": "6ND"}
    compute = float(compute_of(convention, params, tokens))
    out = {}
    if "chinchilla" in laws:
        fitted = laws["chinchilla"]
        stacked = _stacked(fitted)
        out["chinchilla"] = _not_identified(fitted) or {
            "loss": _finite(chinchilla_loss(fitted["params"], params, tokens)),
            "loss_interval": interval(chinchilla_loss(stacked, params, tokens)) if stacked else None,
        }
    if "kaplan" in laws:
        fitted = laws["kaplan"]
        samples = [_kaplan_from_vector(fitted, s) for s in _samples(fitted)]
        out["kaplan"] = _not_identified(fitted) or {
            "loss": _finite(kaplan_loss(fitted, params, tokens)),
            "loss_interval": interval([float(kaplan_loss(s, params, tokens)) for s in samples]),
        }
    if "constrained" in laws:
        out["constrained"] = _not_identified(laws["constrained"]) or _constrained_run(
            laws["constrained"], params, tokens, unique_tokens
        )
    if "linear" in laws:
        out["linear"] = _linear_run(laws["linear"], params, tokens, compute, span)
    for row in out.values():
        if span and row.get("status", "ok") == "ok":
            row["extrapolation"] = extrapolation(span, compute, params, tokens)
    return out


def _constrained_run(fitted: dict, params: float, tokens: float, unique_tokens: float | None) -> dict:
    unique = tokens if unique_tokens is None else unique_tokens
    samples = np.asarray(_samples(fitted), dtype=float).reshape(-1, 6)
    stacked = {key: samples[:, i] for i, key in enumerate(CONSTRAINED_KEYS)}
    return {
        "loss": _finite(constrained_loss(fitted["params"], params, tokens, unique)),
        "loss_interval": interval(constrained_loss(stacked, params, tokens, unique)) if len(samples) else None,
        "note": f"U = {unique:.3g} unique tokens, {tokens / unique:.3g} epochs"
        + (" (fresh data; give --unique-tokens)" if unique_tokens is None else ""),
    }


def _linear_run(fitted: dict, params: float, tokens: float, compute: float, span: dict | None) -> dict:
    """The baseline's loss, only inside the fitted range of N, D and C, and only when positive."""
    query = {"N": params, "D": tokens, "C": compute}
    outside = [key for key, value in query.items() if span and not span[key][0] <= value <= span[key][1]]
    if outside:
        return {
            "loss": None,
            "loss_interval": None,
            "note": f"omitted: {', '.join(outside)} outside the fitted range; the linear baseline does not extrapolate",
        }
    samples = [dict(zip(("w0", "wN", "wD", "wC"), s)) for s in _samples(fitted)]
    loss = _finite(linear_loss(fitted["params"], params, tokens, compute))
    return {
        "loss": loss,
        "loss_interval": interval([float(linear_loss(s, params, tokens, compute)) for s in samples]),
        "note": "baseline; valid only inside the fitted range" if loss is not None else "omitted: not a positive loss",
    }


def recommended(fit_json: dict, group: str, compute, params, tokens, span: dict, unique_tokens=None) -> dict | None:
    """The recommended law's answer: the backtest's choice (refitted on its filter) or the first identified law."""
    entry = fit_json["groups"][group]
    choice = (entry.get("backtest") or {}).get("recommended")
    convention = fit_json.get("compute_convention") or {"kind": "6ND"}
    if choice and choice.get("fit") and choice["fit"].get("status") == "ok":
        laws = {choice["law"]: choice["fit"]}
        answer = {
            "law": choice["law"],
            "filter": choice["filter"],
            "expected_error": choice["expected_error"],
            "source": "backtest",
        }
    else:
        laws = entry.get("laws", {})
        preference = COMPUTE_PREFERENCE if compute is not None else RUN_PREFERENCE
        name = next((n for n in preference if n in laws and laws[n].get("status", "ok") == "ok"), None)
        if name is None:
            return None
        laws = {name: laws[name]}
        source = "backtest's choice not identified" if choice else "no backtest (scale fit --backtest)"
        answer = {"law": name, "filter": "all", "expected_error": None, "source": source}
    name = answer["law"]
    if compute is not None:
        answer["compute"] = _recommended_split(laws, name, compute, convention, span)
    if params is not None and tokens is not None:
        answer["run"] = run_loss(laws, params, tokens, convention, span, unique_tokens).get(name)
    return answer


def _recommended_split(laws: dict, name: str, compute: float, convention: dict, span: dict) -> dict | None:
    fitted = laws[name]
    if name == "chinchilla":
        n, d = chinchilla_allocation(fitted["params"], convention, compute)
        row = {"N_opt": float(n), "D_opt": float(d), "loss": _finite(chinchilla_loss(fitted["params"], n, d))}
    elif name in ("envelope", "isoflop"):
        p = fitted["params"]
        row = {"N_opt": float(power_law(compute, p["N0"], p["a"])), "D_opt": float(power_law(compute, p["D0"], p["b"]))}
    elif name == "kaplan":
        return {**_kaplan_compute(fitted, compute), "extrapolation": extrapolation(span, compute)}
    else:
        return None
    row["tokens_per_param"] = row["D_opt"] / row["N_opt"]
    row["extrapolation"] = extrapolation(span, compute, row["N_opt"], row["D_opt"])
    return row


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
