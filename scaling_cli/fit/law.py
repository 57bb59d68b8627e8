"""The `Law` protocol and the registry of laws: what every fitted law can do, looked up by name.

A law is one object registered under its name. The pipeline, bootstrap, holdout, backtest and predict
loop over `registered()` and call these methods instead of branching on names; adding a law means
writing one module with a `Law` subclass decorated by `@register` (see docs/internals.md).

A fitted law is read as a `results.LawFit` (the hooks `params_of`, `samples_of`, `inputs`, `query_note`,
`at_compute` and `run_loss` take one); `fit` and `bootstrap` build the entry that fit.json stores.
Parameters travel as plain dicts of floats (a fitted law's `params`), or of arrays for bootstrap samples;
`loss` and `allocate` broadcast over both, so one call evaluates every sample.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import ClassVar

import numpy as np
import pandas as pd

from scaling_cli.errors import FitError
from scaling_cli.fit.results import LawFit

_REGISTRY: dict[str, Law] = {}
_ORDERED: dict[str, Law] = {}  # registered() in its order; rebuilt only when a law is added or removed
_BUILTINS = ("chinchilla", "kaplan", "envelope", "isoflop", "linear", "constrained")


class Law:
    """One scaling law. Subclasses set the class attributes and override what they support.

    - `predicts_loss`: `loss(params, n, d, c, u)` gives the loss of a run of N parameters on D tokens;
    - `allocates`: `allocate(params, convention, c)` gives (N_opt, D_opt) that spend exactly C;
    - `recommendable`: the backtest may choose it for predictions (a baseline may not);
    - `by_default`: fitted when the user names no law (given the points, see `applies_to`).
    """

    name: ClassVar[str] = ""
    label: ClassVar[str] = ""  # how figures and notes name it ("Approach 3"); the name when empty
    title: ClassVar[str] = ""  # a heading with its form, for the report; the label when empty
    predicts_loss: ClassVar[bool] = False
    allocates: ClassVar[bool] = False
    recommendable: ClassVar[bool] = False
    by_default: ClassVar[bool] = True
    # Without a backtest, predict answers with the first identified law by these ranks (None: never chosen).
    compute_rank: ClassVar[int | None] = None
    run_rank: ClassVar[int | None] = None
    # Judged again once its bootstrap intervals are known (identify.remark_after_intervals).
    rejudged_with_intervals: ClassVar[bool] = False

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

    def inputs(self, fitted: LawFit, runs: pd.DataFrame) -> tuple:
        """(N, D, C, U or None) of table runs in this law's own conventions (the table's, by default)."""
        unique = runs["U"].to_numpy(dtype=float) if "U" in runs else None
        return (*(runs[key].to_numpy(dtype=float) for key in ("N", "D", "C")), unique)

    def query_note(self, fitted: LawFit) -> str | None:
        """What a user's query (--params, --tokens, --compute) means to this law, when not the table's N, D, C."""
        return None

    def rows(self, fitted: LawFit) -> list[tuple[str, str, float | None, list | None]]:
        """(label, parameter, value, 95% interval) rows for `scale fit`'s table: parameters, derived values,
        and the allocation at the reference compute."""
        rows = [(self.name, key, value, fitted.intervals.get(key)) for key, value in fitted.params.items()]
        rows += [(self.name, key, value, fitted.intervals.get(key)) for key, value in fitted.derived.items()]
        at = fitted.at_compute or {}
        for key in ("N_opt", "D_opt", "loss_opt"):
            if key in at:
                rows.append((self.name, f"{key} @ C={at['C']:.3g}", at[key], fitted.intervals.get(key)))
        return rows

    def summary(self, fitted: LawFit) -> str:
        """One line on how well the fit went (its r2 and diagnostics), for `scale fit`."""
        r2 = "-" if fitted.r2 is None else f"{fitted.r2:.4g}"
        return f"r2 {r2}" + ("" if self.recommendable or self.allocates else " (baseline only)")

    def formula(self, fitted: LawFit | None) -> str | None:
        """The fitted law in one line; None when the law has no one-line form (asked with None: whether it has)."""
        return None

    def problems(self, fitted: dict, points: pd.DataFrame) -> list[str]:
        """Why a fresh fit (its entry) is not identified by its data (identify.py has the checks); empty: it is."""
        return []

    @property
    def baseline(self) -> bool:
        """A comparison only (the linear baseline): it neither allocates nor may be recommended."""
        return not (self.recommendable or self.allocates)

    def fixable(self) -> tuple[str, ...]:
        """The parameter names `--fix NAME=VALUE` may hold in this law (held, reported under `fixed`, no interval)."""
        return ()

    def held(self, options) -> dict[str, float]:
        """The --fix values this law holds: NAME for every law with that parameter, LAW:NAME for this law only."""
        out = {}
        for key, value in (getattr(options, "fixed", None) or {}).items():
            law, qualified, name = key.rpartition(":")
            if (not qualified or law == self.name) and name in self.fixable():
                out[name] = float(value)
        return out

    def run_note(self, tokens: float, unique_tokens: float | None) -> str | None:
        """What a run-loss answer should say about the query (e.g. the repetition the law assumed)."""
        return None

    def run_loss(self, params, fitted: LawFit, runs: pd.DataFrame):
        """The loss this law predicts for each of a table's runs (params: the point estimate or samples)."""
        return self.loss(params, *self.inputs(fitted, runs))

    def params_of(self, fitted: LawFit):
        """What `loss` and `allocate` take for the point estimate."""
        return fitted.params

    def samples_of(self, fitted: LawFit):
        """The bootstrap samples in the form `loss` and `allocate` take (arrays), or None when there are none."""
        rows = fitted.samples
        if not rows:
            return None
        keys = list(fitted.params)
        matrix = np.asarray(rows, dtype=float)
        if matrix.ndim != 2 or matrix.shape[1] != len(keys):
            return None
        return {key: matrix[:, i] for i, key in enumerate(keys)}

    def at_compute(self, fitted: LawFit, convention: dict, c: float) -> dict | None:
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

    def fixable(self) -> tuple[str, ...]:
        from scaling_cli.fit.powerlaw import ALLOCATION_NAMES

        return ALLOCATION_NAMES

    def problems(self, fitted: dict, points) -> list[str]:
        from scaling_cli.fit.identify import allocation_problems

        return allocation_problems(fitted)

    def allocate(self, params, convention: dict, c):
        from scaling_cli.fit.allocation import split_from_size  # allocation imports the law modules' helpers

        return split_from_size(params, convention, c)


def register(law_class: type[Law]) -> type[Law]:
    """Class decorator: make one instance of `law_class` available under its `name`."""
    if not law_class.name:
        raise ValueError(f"{law_class.__name__} has no name")
    law_class.label = law_class.label or law_class.name
    law_class.title = law_class.title or law_class.label
    _REGISTRY[law_class.name] = law_class()
    _ORDERED.clear()
    return law_class


def registered() -> dict[str, Law]:
    """Every registered law by name: the built-in ones first, then any registered later (plug-ins, tests)."""
    if not _ORDERED:
        _load_builtins()
        order = [name for name in _BUILTINS if name in _REGISTRY] + [n for n in _REGISTRY if n not in _BUILTINS]
        _ORDERED.update((name, _REGISTRY[name]) for name in order)
    return MappingProxyType(_ORDERED)


def preferred(for_compute: bool) -> list[str]:
    """Registered law names in the order predict falls back on them, for a compute or a run query."""
    ranks = {name: law.compute_rank if for_compute else law.run_rank for name, law in registered().items()}
    return sorted((name for name, rank in ranks.items() if rank is not None), key=ranks.__getitem__)


def check_fixed(fixed: dict) -> None:
    """FitError naming the parameters that can be held when a --fix name is held by no law (or not by the law
    it names as LAW:NAME)."""
    for key in fixed:
        law, qualified, name = key.rpartition(":")
        laws = [get(law)] if qualified else list(registered().values())
        if not any(name in candidate.fixable() for candidate in laws):
            choices = "; ".join(f"{c.name}: {', '.join(c.fixable())}" for c in laws if c.fixable())
            raise FitError("--fix", key, f"not a parameter that can be held; choose from {choices or 'none'}")


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
        _ORDERED.clear()


def _load_builtins() -> None:
    if all(name in _REGISTRY for name in _BUILTINS):
        return
    # Imported here, not at the top: each law module imports this one to register itself.
    from scaling_cli.fit import chinchilla, constrained, envelope, isoflop, kaplan, linear  # noqa: F401
