"""The one reader of fit.json: parse it and refuse a damaged document with one line naming the field.

A fit.json is what `scale fit` wrote; a hand-edited or truncated one must not reach a prediction as a
traceback or as `nan` answers. Every group needs a `laws` table; every law's parameters must be finite
numbers (Kaplan's under L_N, L_D and L_C); `backtest`, when present, must be a table.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from scaling_cli.errors import FitError

KAPLAN_PARTS = ("L_N", "L_D", "L_C")


def load_fit(path) -> dict:
    """Read and check a fit.json (or the fit.json of a results directory); FitError when missing or damaged."""
    path = Path(path)
    if path.is_dir():
        path = path / "fit.json"
    if not path.is_file():
        raise FitError(str(path), "", "no such fit file; run `scale fit` first")
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise FitError(str(path), "", f"cannot read fit file: {exc}") from None
    check_fit(document, str(path))
    return document


def check_fit(document, where: str) -> None:
    """FitError for the first damaged field of a fit.json document."""
    if not isinstance(document, dict) or not isinstance(document.get("groups"), dict):
        raise FitError(where, "groups", "not a fit.json written by `scale fit` (no groups table)")
    for name, group in document["groups"].items():
        field = f"groups.{name}"
        if not isinstance(group, dict):
            raise FitError(where, field, "must be a table")
        laws = group.get("laws")
        if not isinstance(laws, dict):
            raise FitError(where, f"{field}.laws", f"must be a table of fitted laws, got {_kind(laws)}")
        for law, entry in laws.items():
            _check_law(entry, f"{field}.laws.{law}", where, kaplan=law == "kaplan")
        backtest = group.get("backtest")
        if backtest is not None and not isinstance(backtest, dict):
            raise FitError(where, f"{field}.backtest", f"must be a table, got {_kind(backtest)}")
        chosen = (backtest or {}).get("recommended")
        if chosen is not None:
            if not isinstance(chosen, dict) or not isinstance(chosen.get("law"), str):
                raise FitError(where, f"{field}.backtest.recommended", "must be a table naming its law")
            if chosen.get("fit") is not None:
                _check_law(chosen["fit"], f"{field}.backtest.recommended.fit", where, kaplan=chosen["law"] == "kaplan")


def _check_law(entry, field: str, where: str, kaplan: bool) -> None:
    if not isinstance(entry, dict):
        raise FitError(where, field, f"must be a table, got {_kind(entry)}")
    if entry.get("status", "ok") != "ok":
        return  # a law that was not identified answers with its reasons, not its numbers
    parts = [(f"{field}.{part}.params", (entry.get(part) or {}).get("params")) for part in KAPLAN_PARTS]
    for params_field, params in parts if kaplan else [(f"{field}.params", entry.get("params"))]:
        if not isinstance(params, dict) or not params:
            raise FitError(where, params_field, f"must be a table of parameters, got {_kind(params)}")
        for key, value in params.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise FitError(where, f"{params_field}.{key}", f"must be a finite number, got {_shown(value)}")


def _kind(value) -> str:
    return {dict: "a table", list: "a list", str: "text", type(None): "nothing"}.get(type(value), type(value).__name__)


def _shown(value) -> str:
    return (
        "nothing"
        if value is None
        else f"'{value}'"
        if isinstance(value, str)
        else _kind(value)
        if isinstance(value, (dict, list))
        else str(value)
    )
