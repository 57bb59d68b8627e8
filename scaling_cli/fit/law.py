"""The `Law` protocol and the registry of laws: what every fitted law can do, looked up by name.

A law is one object registered under its name. The pipeline, bootstrap, holdout, backtest and predict
loop over `registered()` and call these methods instead of branching on names; adding a law means
writing one module with a `Law` subclass decorated by `@register` (see docs/internals.md).

Parameters travel as plain dicts of floats (a fitted law's `params`), or of arrays for bootstrap samples;
`loss` and `allocate` broadcast over both, so one call evaluates every sample.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pandas as pd

from scaling_cli.errors import FitError

_REGISTRY: dict[str, Law] = {}
_BUILTINS = ("chinchilla", "kaplan", "envelope", "isoflop", "linear", "constrained")


class Law:
    """One scaling law. Subclasses set the class attributes and override what they support.

    - `predicts_loss`: `loss(params, n, d, c, u)` gives the loss of a run of N parameters on D tokens;
    - `allocates`: `allocate(params, convention, c)` gives (N_opt, D_opt) that spend exactly C;
    - `recommendable`: the backtest may choose it for predictions (a baseline may not);
    - `by_default`: fitted when the user names no law (given the points, see `applies_to`).
    """

    name: ClassVar[str] = ""
    predicts_loss: ClassVar[bool] = False
    allocates: ClassVar[bool] = False
    recommendable: ClassVar[bool] = False
    by_default: ClassVar[bool] = True

    def applies_to(self, points: pd.DataFrame) -> bool:
        """Whether a default fit of these points includes this law."""
        return self.by_default

    def fit(self, points: pd.DataFrame, options, where: str) -> dict:
        """The fitted entry (params, settings, diagnostics) on `points`; FitError when they cannot support it."""
        raise NotImplementedError

    def bootstrap(self, points: pd.DataFrame, fitted: dict, indices: np.ndarray, context: dict) -> dict:
        """{"intervals": ..., "bootstrap": {"samples": [...], ...}} from refits on the resampled rows.

        `context` carries the options, where, at_compute and convention of the fit.
        """
        raise NotImplementedError

    def loss(self, params, n, d, c=None, u=None):
        """Predicted loss; broadcasts over array-valued params (samples) and array-valued n, d, c, u."""
        raise FitError("predict", self.name, "does not predict a run's loss")

    def allocate(self, params, convention: dict, c):
        """(N_opt, D_opt) with C = k(N_opt) N_opt D_opt exactly under `convention`."""
        raise FitError("predict", self.name, "gives no allocation")

    def inputs(self, fitted: dict, runs: pd.DataFrame) -> tuple:
        """(N, D, C, U or None) of table runs in this law's own conventions (the table's, by default)."""
        unique = runs["U"].to_numpy(dtype=float) if "U" in runs else None
        return (*(runs[key].to_numpy(dtype=float) for key in ("N", "D", "C")), unique)

    def query_note(self, fitted: dict) -> str | None:
        """What a user's query (--params, --tokens, --compute) means to this law, when not the table's N, D, C."""
        return None

    def run_loss(self, params, fitted: dict, runs: pd.DataFrame):
        """The loss this law predicts for each of a table's runs (params: the point estimate or samples)."""
        return self.loss(params, *self.inputs(fitted, runs))

    def params_of(self, fitted: dict):
        """What `loss` and `allocate` take for the point estimate."""
        return fitted["params"]

    def samples_of(self, fitted: dict):
        """The bootstrap samples in the form `loss` and `allocate` take (arrays), or None when there are none."""
        rows = _complete_samples(fitted)
        if not rows:
            return None
        keys = list(fitted["params"])
        matrix = np.asarray(rows, dtype=float)
        if matrix.ndim != 2 or matrix.shape[1] != len(keys):
            return None
        return {key: matrix[:, i] for i, key in enumerate(keys)}

    def at_compute(self, fitted: dict, convention: dict, c: float) -> dict | None:
        """fit.json's `at_compute` entry: the allocation (and its loss, when the law predicts one) at C."""
        if not self.allocates:
            return None
        params = self.params_of(fitted)
        n, d = self.allocate(params, convention, c)
        entry = {"C": c, "N_opt": float(n), "D_opt": float(d), "convention": convention["kind"]}
        if self.predicts_loss:
            entry["loss_opt"] = float(self.loss(params, n, d, c))
        return entry

    def loss_at_compute(self, params, convention: dict, c):
        """The loss the law expects from the best run at compute C (its allocation's loss); None if it has none."""
        if not (self.allocates and self.predicts_loss):
            return None
        n, d = self.allocate(params, convention, c)
        return self.loss(params, n, d, c)


class SizeRuleLaw(Law):
    """A law fitted as N_opt(C) = N0 C^a (Approaches 1 and 2). D_opt follows from the budget,
    C / (k(N_opt) N_opt), so the allocation spends exactly C; a fitted D_opt(C) = D0 C^b is for comparison."""

    allocates = True

    def allocate(self, params, convention: dict, c):
        from scaling_cli.fit.allocation import split_from_size  # allocation imports the law modules' helpers

        return split_from_size(params, convention, c)


def register(law_class: type[Law]) -> type[Law]:
    """Class decorator: make one instance of `law_class` available under its `name`."""
    if not law_class.name:
        raise ValueError(f"{law_class.__name__} has no name")
    _REGISTRY[law_class.name] = law_class()
    return law_class


def registered() -> dict[str, Law]:
    """Every registered law by name: the built-in ones first, then any registered later (plug-ins, tests)."""
    _load_builtins()
    order = [name for name in _BUILTINS if name in _REGISTRY] + [n for n in _REGISTRY if n not in _BUILTINS]
    return {name: _REGISTRY[name] for name in order}


def get(name: str) -> Law:
    """The law registered under `name`; FitError naming the choices otherwise."""
    laws = registered()
    if name not in laws:
        raise FitError("--law", name, f"unknown law; choose from {', '.join(laws)}")
    return laws[name]


def unregister(name: str) -> None:
    """Remove a law registered at run time (a test's toy law); built-in laws stay."""
    if name not in _BUILTINS:
        _REGISTRY.pop(name, None)


def _load_builtins() -> None:
    if all(name in _REGISTRY for name in _BUILTINS):
        return
    # Imported here, not at the top: each law module imports this one to register itself.
    from scaling_cli.fit import chinchilla, constrained, envelope, isoflop, kaplan, linear  # noqa: F401


def _complete_samples(fitted: dict) -> list:
    """The stored bootstrap samples that are complete (a value written as null was an overflow)."""
    samples = (fitted.get("bootstrap") or {}).get("samples") or []
    return [s for s in samples if all(v is not None for v in s)]
