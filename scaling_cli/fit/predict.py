"""Predictions from a fit.json: the compute-optimal split of a budget, or the loss of a given run.

Every law is asked through the `Law` registry, so a new law answers here without a change to this file.
Each answer says how far it lies beyond the fitted runs and carries a 95% prediction interval from the
law's error model (calibration.py: bootstrap, the noise of one run and an extrapolation term that grows
with distance); a law fitted without that model (no bootstrap) gives percentile intervals of its samples
and says so. The recommended answer (the backtest's choice, else the first identified law) comes first
with its expected error and the count of runs that estimate rests on, and `verdict` says it in one line.
Warnings name identified approaches that disagree beyond their intervals, and a D_opt that repeats the
training data. A law that was not identified gives its reasons instead of numbers, and no law answers
with a negative or non-finite loss: the linear baseline is omitted outside the range it was fitted on.
"""

from __future__ import annotations

import numpy as np

from scaling_cli.errors import FitError
from scaling_cli.fit import calibration
from scaling_cli.fit import law as registry
from scaling_cli.fit.allocation import compute_of, ratio_of
from scaling_cli.fit.bootstrap import interval
from scaling_cli.fit.fitdoc import load_fit  # noqa: F401  (the reader of fit.json; re-exported for callers)
from scaling_cli.fit.results import FitResult, GroupFit, LawFit

WARN_COMPUTE_RATIO = 10.0


def predict(
    fit: FitResult | dict,
    *,
    compute: float | None = None,
    params: float | None = None,
    tokens: float | None = None,
    group: str | None = None,
    unique_tokens: float | None = None,
) -> dict:
    """{"groups": {name: {"compute": {law: ...}, "run": {law: ...}, "recommended": {...}, "verdict": str,
    "warnings": [...]}}} per group. `fit` is what `load_fit` read, or `fit_all`'s document (checked here)."""
    _check_query(compute, params, tokens, unique_tokens)
    fit = FitResult.of(fit)
    wants_run = params is not None
    names = [fit.group(group) and group] if group is not None else sorted(fit.groups)
    convention = fit.compute_convention
    result = {"compute": compute, "params": params, "tokens": tokens, "convention": convention["kind"], "groups": {}}
    # Extreme bootstrap samples over- or underflow; interval() keeps only the finite values they give.
    with np.errstate(over="ignore", divide="ignore", invalid="ignore", under="ignore"):
        for name in names:
            entry = {}
            fitted_group = fit.groups[name]
            span = fitted_group.range or _range_of(fitted_group)
            if compute is not None:
                entry["compute"] = allocation(fit, name, compute, span)
            if wants_run:
                entry["run"] = run_loss(fitted_group.laws, params, tokens, convention, span, unique_tokens)
            entry["recommended"] = recommended(fit, name, compute, params, tokens, span, unique_tokens)
            entry["warnings"] = warnings(fitted_group, entry, unique_tokens)
            entry["verdict"] = verdict(name, entry, compute, params, tokens)
            result["groups"][name] = entry
    return result


def _check_query(compute, params, tokens, unique_tokens) -> None:
    wants_run = params is not None or tokens is not None
    if compute is None and not wants_run:
        raise FitError("predict", "--compute", "give --compute C, or --params N with --tokens D")
    if wants_run and (params is None or tokens is None):
        raise FitError(
            "predict", "--params" if params is None else "--tokens", "a run needs both --params and --tokens"
        )
    checked = (("--compute", compute), ("--params", params), ("--tokens", tokens), ("--unique-tokens", unique_tokens))
    for option, value in checked:
        if value is not None and not (np.isfinite(value) and value > 0):
            raise FitError("predict", option, f"must be a positive number, got {value:g}")


def _range_of(group: GroupFit) -> dict:
    """The fitted range from a group's points (fit.json files written before `range` existed)."""
    points = group.points
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


def _reach(span: dict, c: float) -> float:
    """e-folds of compute past the largest fitted run (0 inside the data)."""
    return max(0.0, float(np.log(c / span["C"][1])))


def _not_identified(fitted: LawFit) -> dict | None:
    if fitted.identified:
        return None
    return {"status": fitted.status, "problems": list(fitted.problems), "note": "not identified: no prediction"}


def allocation(fit: FitResult, group: str, compute: float, span: dict | None = None) -> dict:
    """Per law: N_opt, D_opt, tokens per parameter and the loss to expect at `compute`, with intervals."""
    entry = fit.group(group)
    span = span or entry.range or _range_of(entry)
    out = {}
    for name, fitted in entry.laws.items():
        law = _known(name)
        if law is None or not (law.allocates or type(law).loss_at_compute is not registry.Law.loss_at_compute):
            continue
        out[name] = _not_identified(fitted) or compute_answer(law, fitted, fit.compute_convention, compute, span)
    return out


def _known(name: str):
    return registry.registered().get(name)


def compute_answer(law, fitted: LawFit, convention: dict, compute: float, span: dict) -> dict:
    """One law's answer at `compute`: the allocation when it gives one, the loss when it predicts one."""
    params, samples = law.params_of(fitted), law.samples_of(fitted)
    cal = fitted.calibration
    reach = _reach(span, compute)
    row = {"status": "ok"}
    n_s = d_s = None
    if law.allocates:
        n, d = (float(v) for v in law.allocate(params, convention, compute))
        n_s, d_s = law.allocate(samples, convention, compute) if samples else (np.array([]), np.array([]))
        row.update(_allocation_cells(n, d, np.asarray(n_s, dtype=float), cal, convention, compute, reach))
    loss = law.loss_at_compute(params, convention, compute)
    if loss is not None:
        loss_s = law.loss_at_compute(samples, convention, compute) if samples else []
        row["loss"] = _finite(loss)
        row.update(_loss_interval(cal, row["loss"], loss_s, reach))
    if not law.allocates:
        row["note"] = "L(C) on the compute-efficient frontier; no allocation"
    if law.query_note(fitted):
        row["note"] = "; ".join(filter(None, (row.get("note"), law.query_note(fitted))))
    row["extrapolation"] = extrapolation(span, compute, row.get("N_opt"), row.get("D_opt"))
    return row


def _allocation_cells(
    n: float, d: float, n_samples, cal: dict | None, convention: dict, c: float, reach: float
) -> dict:
    """N_opt, D_opt (spending exactly C), their 95% intervals and the FLOPs per parameter-token they imply."""
    n_interval = calibration.size_interval(cal, n, n_samples, reach)
    kind = "prediction" if n_interval is not None else "bootstrap percentile (no error model: fit with --bootstrap)"
    if n_interval is None:
        n_interval = interval(n_samples)
    cells = {
        "N_opt": n,
        "N_opt_interval": n_interval,
        "D_opt": d,
        "D_opt_interval": _tokens_interval(n_interval, convention, c),
        "tokens_per_param": d / n,
        "flops_per_param_token": float(c / (n * d)),
        "model_flops_per_param_token": float(ratio_of(convention, n)),
        "interval_kind": kind,
    }
    low, high = cells["D_opt_interval"] or (None, None)
    cells["tokens_per_param_interval"] = [low / n_interval[1], high / n_interval[0]] if low else None
    return cells


def _tokens_interval(n_interval, convention: dict, c: float) -> list[float] | None:
    """D_opt's interval follows from N_opt's: the budget fixes D once N is chosen (larger N, fewer tokens)."""
    if not n_interval:
        return None
    low_n, high_n = n_interval
    return [float(c / (ratio_of(convention, high_n) * high_n)), float(c / (ratio_of(convention, low_n) * low_n))]


def _loss_interval(cal: dict | None, loss: float | None, loss_samples, reach: float) -> dict:
    if loss is None:
        return {"loss_interval": None}
    predicted = calibration.loss_interval(cal, loss, np.ravel(np.asarray(loss_samples, dtype=float)), reach)
    if predicted is not None:
        return {"loss_interval": predicted, "interval_kind": "prediction"}
    return {
        "loss_interval": interval(loss_samples),
        "interval_kind": "bootstrap percentile (no error model: fit with --bootstrap)",
    }


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
    for name, fitted in laws.items():
        law = _known(name)
        if law is None or not law.predicts_loss:
            continue
        if _not_identified(fitted) and law.recommendable:
            out[name] = _not_identified(fitted)
            continue
        if not law.recommendable:
            out[name] = _baseline_run(law, fitted, params, tokens, compute, span)
            continue
        out[name] = _law_run(law, fitted, params, tokens, compute, span, unique_tokens)
    for row in out.values():
        if span and row.get("status", "ok") == "ok":
            row["extrapolation"] = extrapolation(span, compute, params, tokens)
    return out


def _law_run(law, fitted: LawFit, params, tokens, compute, span, unique_tokens) -> dict:
    samples = law.samples_of(fitted)
    unique = tokens if unique_tokens is None else unique_tokens
    loss = _finite(law.loss(law.params_of(fitted), params, tokens, compute, unique))
    loss_s = law.loss(samples, params, tokens, compute, unique) if samples else []
    reach = _reach(span, compute) if span else 0.0
    row = {"status": "ok", "loss": loss, **_loss_interval(fitted.calibration, loss, loss_s, reach)}
    notes = (law.run_note(tokens, unique_tokens), law.query_note(fitted))
    if any(notes):
        row["note"] = "; ".join(filter(None, notes))
    return row


def _baseline_run(law, fitted: LawFit, params, tokens, compute, span: dict | None) -> dict:
    """A baseline's loss, only inside the fitted range of N, D and C, and only when positive."""
    query = {"N": params, "D": tokens, "C": compute}
    outside = [key for key, value in query.items() if span and not span[key][0] <= value <= span[key][1]]
    if outside:
        return {
            "loss": None,
            "loss_interval": None,
            "note": f"omitted: {', '.join(outside)} outside the fitted range; the linear baseline does not extrapolate",
        }
    samples = law.samples_of(fitted)
    loss = _finite(law.loss(law.params_of(fitted), params, tokens, compute))
    return {
        "loss": loss,
        "loss_interval": interval(law.loss(samples, params, tokens, compute)) if samples else None,
        "note": "baseline; valid only inside the fitted range" if loss is not None else "omitted: not a positive loss",
    }


def recommended(fit: FitResult, group: str, compute, params, tokens, span: dict, unique_tokens=None) -> dict | None:
    """The recommended law's answer: the backtest's choice (refitted on its filter) or the first identified law."""
    entry = fit.group(group)
    choice = entry.backtest.recommended if entry.backtest else None
    convention = fit.compute_convention
    if choice and choice.fit and choice.fit.identified:
        laws = {choice.law: choice.fit}
        answer = {
            "law": choice.law,
            "filter": choice.filter,
            "expected_error": choice.expected_error,
            "scored": choice.scored,
            "weak": choice.weak,
            "source": "backtest",
        }
    else:
        name = next((n for n in registry.preferred(compute is not None) if entry.identified(n)), None)
        if name is None:
            return None
        laws = {name: entry.laws[name]}
        source = "backtest's choice not identified" if choice else "no backtest (scale fit --backtest)"
        answer = {"law": name, "filter": "all", "expected_error": None, "scored": 0, "weak": True, "source": source}
    name = answer["law"]
    law = _known(name)
    if law is None:
        return None
    fitted = laws[name]
    answer["calibration"] = _calibration_summary(fitted.calibration)
    if compute is not None and (law.allocates or law.predicts_loss):
        answer["compute"] = compute_answer(law, fitted, convention, compute, span)
    if params is not None and tokens is not None:
        answer["run"] = run_loss(laws, params, tokens, convention, span, unique_tokens).get(name)
    return answer


def _calibration_summary(cal: dict | None) -> dict | None:
    if not cal:
        return None
    keep = ("model", "s", "s_N", "sigma_run", "scored", "backtest_coverage", "weak")
    return {key: cal.get(key) for key in keep if key in cal}


def warnings(group: GroupFit, entry: dict, unique_tokens: float | None) -> list[str]:
    """Identified approaches that disagree beyond their intervals, and an allocation that repeats the data."""
    found = []
    rows = {name: row for name, row in (entry.get("compute") or {}).items() if row.get("N_opt_interval")}
    names = sorted(rows)
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            a, b = rows[first], rows[second]
            if a["N_opt_interval"][1] < b["N_opt_interval"][0] or b["N_opt_interval"][1] < a["N_opt_interval"][0]:
                found.append(
                    f"approaches disagree: {first} N_opt {a['N_opt']:.3g} {_fmt(a['N_opt_interval'])} "
                    f"({a['tokens_per_param']:.3g} tokens/param), {second} {b['N_opt']:.3g} "
                    f"{_fmt(b['N_opt_interval'])} ({b['tokens_per_param']:.3g}): their intervals do not overlap"
                )
    found += _repetition_warnings(group, entry, unique_tokens)
    return found


def _repetition_warnings(group: GroupFit, entry: dict, unique_tokens: float | None) -> list[str]:
    unique = unique_tokens or group.unique_tokens
    choice = (entry.get("recommended") or {}).get("compute") or {}
    d_opt = choice.get("D_opt")
    if not unique or not d_opt or d_opt <= unique:
        return []
    return [
        f"D_opt {d_opt:.3g} tokens is {d_opt / unique:.3g} epochs of the {unique:.3g} unique training tokens: "
        "repeated tokens are worth less than fresh ones (more data, or fit the constrained law)"
    ]


def verdict(group: str, entry: dict, compute, params, tokens) -> str:
    """One line: what to train (or the loss of the run asked about), the loss to expect, their intervals,
    how far past the data, and how much to trust it."""
    choice = entry.get("recommended")
    if not choice:
        return f"group {group}: no identified law: no prediction (see `scale fit` for what to add)"
    row = choice.get("compute") if compute is not None else choice.get("run")
    if not row or row.get("status", "ok") != "ok":
        return f"group {group}: {choice['law']} gives no answer to this query"
    what = (
        f"train N = {row['N_opt']:.3g} {_fmt(row.get('N_opt_interval'))} on D = {row['D_opt']:.3g} "
        f"{_fmt(row.get('D_opt_interval'))} tokens ({row['tokens_per_param']:.3g} tokens/param) at C = {compute:.3g}"
        if compute is not None and "N_opt" in row
        else f"N = {params:.3g} on D = {tokens:.3g} tokens"
        if compute is None
        else f"at C = {compute:.3g}"
    )
    loss = (
        f"expect loss {row['loss']:.4g} {_fmt(row.get('loss_interval'))} (95%)"
        if row.get("loss")
        else f"no loss prediction ({choice['law']} gives allocations only)"
    )
    ratio = (row.get("extrapolation") or {}).get("C_ratio")
    reach = f"{ratio:,.3g}x the largest fitted compute" if ratio else ""
    return f"group {group}: {what}; {loss}; {reach}; trust: {_trust(choice, ratio, entry)} [{choice['law']}]"


def _trust(choice: dict, ratio: float | None, entry: dict) -> str:
    """low / moderate / high with the reason, from the backtest's evidence, the reach and agreement."""
    reasons = []
    if choice.get("expected_error") is None:
        reasons.append(_no_backtest_reason(choice))
    else:
        reasons.append(f"backtest error {choice['expected_error']:.2g}% on {choice.get('scored', 0)} runs")
        if choice.get("weak"):
            reasons.append("weak: fewer than 5 scored runs")
    if ratio and ratio > 100:
        reasons.append("more than 100x past the data")
    if any(w.startswith("approaches disagree") for w in entry.get("warnings", [])):
        reasons.append("approaches disagree")
    if choice.get("calibration") is None:
        reasons.append("no error model")
    level = "low" if len(reasons) > 1 or choice.get("expected_error") is None else "moderate"
    if level == "moderate" and ratio is not None and ratio <= 10 and (choice.get("expected_error") or 99) < 2:
        level = "high"
    return f"{level} ({'; '.join(reasons)})"


def _no_backtest_reason(choice: dict) -> str:
    if choice["source"] == "backtest":
        return "too few runs for a rolling backtest"
    if choice["source"] == "backtest's choice not identified":
        return f"the backtest's choice was withheld; {choice['law']} has no backtest error of its own"
    return "no backtest (scale fit --backtest)"


def _fmt(bounds) -> str:
    return f"[{bounds[0]:.3g}, {bounds[1]:.3g}]" if bounds else "[no interval]"
