"""What the figures draw from a fit (`fit.results.FitResult`): the one plot module that reads it.

Figures never fit anything. Every line, curve, band and optimum they draw comes from here, and here only
from what `scale fit` stored (frontier points, IsoFLOP coefficients, law parameters, bootstrap samples)
evaluated by the fitting package's own functions. A law the fit skipped or could not identify comes back
as a `LawStatus` whose `note` the figure prints instead of drawing the law.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from scaling_cli.errors import FitError
from scaling_cli.fit.results import Backtest, FitResult, LawFit



class _LawLabels(Mapping):
    """Each registered law's short label ("Approach 3"), read from the registry when asked (a law
    registered after this module was imported has its label too)."""

    def __getitem__(self, name: str) -> str:
        from scaling_cli.fit import law as registry

        return registry.get(name).label

    def __iter__(self):
        from scaling_cli.fit import law as registry

        return iter(registry.registered())

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def get(self, name, default=None):
        try:
            return self[name]
        except FitError:
            return default


LAW_NAMES = _LawLabels()


def allocation_laws() -> tuple[str, ...]:
    """The registered laws that split a budget into N_opt and D_opt, in the registry's order."""
    from scaling_cli.fit.allocation import allocating_laws

    return allocating_laws()


@dataclass(frozen=True)
class LawStatus:
    """Whether a law may be drawn: state is "ok", "not_identified", "skipped" or "absent" (never asked for)."""

    law: str
    state: str
    reason: str = ""

    @property
    def holds(self) -> bool:
        return self.state == "ok"

    @property
    def note(self) -> str:
        """One line for the figure: which law it does not draw, and why."""
        if self.holds:
            return ""
        # A law the figure leaves out is one of these; "not drawn" would only take room from the reason.
        what = {"not_identified": "not identified", "skipped": "skipped", "absent": "not fitted"}
        line = f"{LAW_NAMES.get(self.law, self.law)} {what[self.state]}"
        return one_line(f"{line}: {self.reason}" if self.reason else line)


@dataclass(frozen=True)
class Budget:
    """One stored IsoFLOP budget: its measured points, the fit's curve over its window, and the minimum."""

    compute: float
    sizes: np.ndarray
    losses: np.ndarray
    used: np.ndarray  # which points the fit's curve went through (all, when the fit does not say)
    curve_sizes: np.ndarray  # empty when the fit stored no curve for this budget
    curve_losses: np.ndarray
    size_opt: float | None
    tokens_opt: float | None
    loss_opt: float | None
    in_power_law: bool
    why_left_out: str  # empty when the budget feeds the power law


@dataclass(frozen=True)
class Allocation:
    """A law's compute-optimal N and D on a grid of compute, with the fit's bootstrap intervals and loss."""

    law: str
    compute: np.ndarray
    sizes: np.ndarray
    tokens: np.ndarray
    size_band: tuple[np.ndarray, np.ndarray] | None
    token_band: tuple[np.ndarray, np.ndarray] | None
    loss: np.ndarray | None
    a: float | None
    b: float | None


@dataclass(frozen=True)
class HeldOut:
    """One law's predictions of the runs it was not fitted on."""

    law: str
    compute: np.ndarray
    measured: np.ndarray
    predicted: np.ndarray
    mape: float | None
    recommended: bool = False


@dataclass(frozen=True)
class Extrapolation:
    """A test of the laws beyond their data: how it split the runs, each law's predictions, what is missing."""

    kind: str  # "backtest" or "holdout"
    title: str
    how: str  # one line: which runs were fitted and which predicted
    cut: float | None
    series: list[HeldOut]
    notes: list[str]


def one_line(text: str) -> str:
    """`text` with its whitespace (newlines too) collapsed to single spaces."""
    return " ".join(str(text).split())


def primary_group(fit: FitResult | dict | None) -> str | None:
    """The group a single-panel figure draws: 'all' when present, else the one fitted on the most points."""
    groups = FitResult.of(fit).groups if fit is not None else {}
    if not groups:
        return None
    if "all" in groups:
        return "all"
    return max(groups, key=lambda key: groups[key].n_points or 0)


class FitView:
    """One group of one fit, read for drawing (a FitResult, or a fit.json document checked into one)."""

    def __init__(self, fit: FitResult | dict | None, group: str | None = None):
        self.fit = None if fit is None else FitResult.of(fit)
        self.name = group if group is not None else (primary_group(self.fit) or "")
        self.group = self.fit.groups.get(self.name) if self.fit is not None else None
        self._predictions: dict[float, dict] = {}

    @property
    def exists(self) -> bool:
        return self.group is not None

    # ---- status ---------------------------------------------------------------------------------------

    def entry(self, law: str) -> LawFit | None:
        return self.group.laws.get(law) if self.group is not None else None

    def status(self, law: str) -> LawStatus:
        """The law's status as the fit recorded it (`status`, `problems`, the group's `skipped`)."""
        entry = self.entry(law)
        if entry is None:
            skipped = self.group.skipped.get(law) if self.group is not None else None
            return LawStatus(law, "skipped", str(skipped)) if skipped else LawStatus(law, "absent")
        if "status" in entry.order:
            state = "ok" if entry.identified else "not_identified"
            return LawStatus(law, state, "; ".join(str(p) for p in entry.problems))
        return self._status_before_identification(law, entry)

    @staticmethod
    def _status_before_identification(law: str, entry: LawFit) -> LawStatus:
        # fit.json without per-law `status` (version 1): a parameter at the edge of the start grid
        # means the data did not pin E down, so the law is not identified.
        edge = entry.diagnostics.get("grid_edge") or []
        if law == "chinchilla" and edge:
            return LawStatus(law, "not_identified", f"{', '.join(map(str, edge))} at the edge of the start grid")
        return LawStatus(law, "ok")

    def notes(self, laws) -> list[str]:
        """The one-line notes of every law in `laws` that the figure will not draw."""
        return [status.note for status in map(self.status, laws) if not status.holds]

    # ---- measured points the fit used ----------------------------------------------------------------

    def points(self) -> pd.DataFrame:
        """The (run_id, N, D, C, loss) points of this group that the fit used."""
        frame = pd.DataFrame(list(self.group.points) if self.group is not None else [])
        if frame.empty:
            return pd.DataFrame(columns=["run_id", "N", "D", "C", "loss"])
        return frame

    def frontier(self) -> pd.DataFrame | None:
        """Approach 1's stored compute-efficient frontier (C, N, D, loss), or None when it has none."""
        entry = self.entry("envelope")
        rows = entry.extra.get("frontier") if entry is not None else None
        if not rows:
            return None
        return pd.DataFrame(rows).sort_values("C").reset_index(drop=True)

    def budgets(self) -> list[Budget]:
        """Approach 2's stored budgets, each with the curve the fit used to find its minimum."""
        entry = self.entry("isoflop")
        stored = (entry.extra.get("budgets") if entry is not None else None) or []
        return [_budget(raw) for raw in stored if raw.get("points")]

    # ---- laws evaluated ------------------------------------------------------------------------------

    def chinchilla_params(self) -> dict | None:
        entry = self.entry("chinchilla")
        return entry.params if entry is not None and self.status("chinchilla").holds else None

    def chinchilla_loss(self, sizes, tokens) -> np.ndarray:
        """L(N, D) of the fitted parametric law, evaluated by the fitting package."""
        from scaling_cli.fit.laws import chinchilla_loss

        return np.asarray(chinchilla_loss(self.chinchilla_params(), sizes, tokens), dtype=float)

    def kaplan_compute_loss(self, compute) -> np.ndarray | None:
        """Kaplan's L(C) = E + (C_c / C)^alpha_C, or None when the law does not hold."""
        from scaling_cli.fit.laws import kaplan_term

        entry = self.entry("kaplan")
        params = entry.parts["L_C"].params if entry is not None and "L_C" in entry.parts else None
        if not params or not self.status("kaplan").holds:
            return None
        return np.asarray(kaplan_term(compute, params["C_c"], params["alpha_C"], params.get("E") or 0.0))

    def allocation(self, law: str, compute, bands: bool = True) -> Allocation | None:
        """N_opt(C), D_opt(C), their intervals and (Approach 3) the loss there, as the fit computes them.

        None when the law does not hold; `bands=False` leaves the intervals out. The optimum is
        `fit.allocation.optimal_allocation`, the function behind fit.json's `at_compute` and `scale predict`,
        so all three agree at every C.
        """
        from scaling_cli.fit.allocation import optimal_allocation

        if law not in allocation_laws() or not self.status(law).holds:
            return None
        compute = np.asarray(compute, dtype=float)
        try:
            answer = optimal_allocation(self.fit, self.name, law, compute)
        except FitError:  # the fit refuses an allocation it cannot stand behind: draw none
            return None
        sizes, tokens = (np.asarray(v, dtype=float) for v in answer)
        intervals = self._intervals_from_predict(law, compute) if bands else []
        loss = self.chinchilla_loss(sizes, tokens) if law == "chinchilla" else None
        a, b = self.exponents(law)
        band = {key: _band(intervals, key) if intervals else None for key in ("N_opt_interval", "D_opt_interval")}
        return Allocation(law, compute, sizes, tokens, band["N_opt_interval"], band["D_opt_interval"], loss, a, b)

    def _intervals_from_predict(self, law: str, compute: np.ndarray) -> list[dict]:
        """`scale predict`'s bootstrap intervals of N_opt and D_opt at each C (empty dicts without samples)."""
        return [self._predicted(float(value)).get(law) or {} for value in compute]

    def _predicted(self, compute: float) -> dict:
        """Every law's answer of `scale predict` at one C, asked once per C for all the figures."""
        from scaling_cli.fit.predict import predict

        if compute not in self._predictions:
            groups = predict(self.fit, compute=compute, group=self.name)["groups"]
            self._predictions[compute] = groups[self.name].get("compute") or {}
        return self._predictions[compute]

    def at_compute(self, law: str) -> tuple[float, float, float] | None:
        """(C, N_opt, D_opt) the fit reported for the law at the group's reference compute, when it did."""
        entry = self.entry(law)
        stored = (entry.at_compute if entry is not None else None) or {}
        values = [_number(stored.get(key)) for key in ("C", "N_opt", "D_opt")]
        return None if None in values or not self.status(law).holds else tuple(values)

    def exponents(self, law: str) -> tuple[float | None, float | None]:
        """The exponents a, b of N_opt ∝ C^a and D_opt ∝ C^b as the fit reports them: the allocation's own (D_opt
        from the budget, under the fit's compute convention) where recorded, which is the line drawn; Approach 1's
        fitted D0 C^b, kept for comparison, has another b."""
        entry = self.entry(law)
        stored = {} if entry is None else (entry.extra.get("allocation_exponents") or entry.derived or entry.params)
        return _number(stored.get("a")), _number(stored.get("b"))

    # ---- extrapolation -------------------------------------------------------------------------------

    def extrapolation(self) -> Extrapolation | None:
        """The fit's test of its laws on runs they did not see: the backtest when fitted, else the holdout."""
        backtest = self.group.backtest if self.group is not None else None
        if backtest is not None and backtest.candidates:
            return _from_backtest(backtest, self.points())
        holdout = self.group.holdout if self.group is not None else None
        if holdout and holdout.get("runs"):
            return _from_holdout(holdout)
        return None

    def no_extrapolation_reason(self) -> str:
        """Why the fit holds no test of its laws beyond their data."""
        backtest = self.group.backtest if self.group is not None else None
        if backtest is not None and backtest.skipped:
            return f"the fit's backtest could not run: {backtest.skipped}"
        return "no held-out runs in the fit; run `scale fit --backtest` or `--holdout K` to test extrapolation"

    def in_sample_errors(self) -> pd.DataFrame | None:
        """C and measured/predicted − 1 of every fitted point under Approach 3 fitted on all of them."""
        points = self.points()
        if points.empty or self.chinchilla_params() is None:
            return None
        predicted = self.chinchilla_loss(points["N"], points["D"])
        return pd.DataFrame({"C": points["C"], "error": points["loss"].to_numpy() / predicted - 1})

    def compute_range(self) -> tuple[float, float] | None:
        points = self.points()
        if points.empty:
            return None
        return float(points["C"].min()), float(points["C"].max())


def _from_backtest(backtest: Backtest, points: pd.DataFrame) -> Extrapolation:
    """The laws of the backtest's recommended filter (else the unfiltered one) on the runs above the cut."""
    recommended = backtest.recommended
    candidates = backtest.candidates
    chosen_filter = recommended.filter if recommended else None
    chosen = next((c for c in candidates if c.get("filter") == chosen_filter), candidates[0])
    compute_of = dict(zip(points["run_id"].astype(str), points["C"])) if not points.empty else {}
    series, notes = [], []
    for law, scored in (chosen.get("laws") or {}).items():
        if scored.get("status", "ok") != "ok":
            reason = "; ".join(scored.get("problems") or [])
            notes.append(LawStatus(law, "not_identified", f"below the cut: {reason}").note)
            continue
        runs = scored.get("runs") or []
        series.append(
            HeldOut(
                law,
                np.array([compute_of.get(str(r["run_id"]), np.nan) for r in runs], dtype=float),
                np.array([r["loss"] for r in runs], dtype=float),
                np.array([_nan_if_none(r["pred"]) for r in runs], dtype=float),
                _number(scored.get("mape")),
                recommended is not None and recommended.law == law,
            )
        )
    notes += [LawStatus(law, "skipped", reason).note for law, reason in (chosen.get("skipped") or {}).items()]
    refit = recommended.fit if recommended is not None else None
    if refit is not None and not refit.identified:
        why = "; ".join(refit.problems) or "not identified"
        notes.append(f"{recommended.law} is withheld from predict: not identified on every run ({why})")
    cut = float(backtest.cut)
    threshold = _number(chosen.get("min_tokens_per_param"))
    kept = "" if threshold is None else f", D/N ≥ {threshold:g}"
    scored = backtest.scored if backtest.scored is not None else chosen.get("scored")
    how = f"fit below C = {cut:.3g} ({chosen.get('fitted_on')} runs{kept}), {scored} scored above"
    return Extrapolation("backtest", "Backtest on the largest runs", how, cut, _recommended_first(series), notes)


def _from_holdout(holdout: dict) -> Extrapolation:
    runs = holdout["runs"]
    laws = sorted(set().union(*[set(r.get("pred") or {}) for r in runs]))
    series = [
        HeldOut(
            law,
            np.array([r["C"] for r in runs], dtype=float),
            np.array([r["loss"] for r in runs], dtype=float),
            np.array([_nan_if_none((r.get("pred") or {}).get(law)) for r in runs], dtype=float),
            _number((holdout.get("mape") or {}).get(law)),
        )
        for law in laws
    ]
    notes = [LawStatus(law, "skipped", reason).note for law, reason in (holdout.get("skipped") or {}).items()]
    how = f"fit on {holdout.get('fitted_on')} runs, scored on {len(runs)} held out"
    return Extrapolation("holdout", "Holdout: runs left out of the fit", how, None, _recommended_first(series), notes)


def _recommended_first(series: list[HeldOut]) -> list[HeldOut]:
    return sorted(series, key=lambda s: (not s.recommended, s.law != "chinchilla", s.law))


def _budget(raw: dict) -> Budget:
    sizes = np.array([p["N"] for p in raw["points"]], dtype=float)
    losses = np.array([p["loss"] for p in raw["points"]], dtype=float)
    used = np.array([p.get("used", True) is not False for p in raw["points"]], dtype=bool)
    curve_sizes, curve_losses = _budget_curve(raw, sizes)
    size_opt = _number(raw.get("N_opt"))
    loss_opt = _number(raw.get("loss_opt"))
    if size_opt is not None and loss_opt is None and raw.get("coef"):
        loss_opt = float(np.polyval(np.asarray(raw["coef"], dtype=float), np.log(size_opt)))
    why = _why_left_out(raw, size_opt)
    tokens_opt = _number(raw.get("D_opt"))
    return Budget(
        float(raw["C"]), sizes, losses, used, curve_sizes, curve_losses, size_opt, tokens_opt, loss_opt, not why, why
    )


def _budget_curve(raw: dict, sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The fit's curve of this budget: a stored dense curve, else its parabola over its window of sizes."""
    curve = raw.get("curve")
    if isinstance(curve, dict) and curve.get("N"):
        return np.asarray(curve["N"], dtype=float), np.asarray(curve["loss"], dtype=float)
    if isinstance(curve, list) and curve:
        return (np.array([p["N"] for p in curve], dtype=float), np.array([p["loss"] for p in curve], dtype=float))
    coef = raw.get("coef")
    if not coef:
        return np.empty(0), np.empty(0)
    low, high = _window(raw.get("window"), sizes)
    span = np.geomspace(low, high, 60)
    return span, np.polyval(np.asarray(coef, dtype=float), np.log(span))


def _window(window, sizes: np.ndarray) -> tuple[float, float]:
    """The sizes the budget's curve was fitted on: the stored `window`, else every size of the budget."""
    if isinstance(window, dict):
        window = [value for key, value in window.items() if key.lower().startswith("n")]
    values = [float(v) for v in window or [] if _number(v) is not None]
    if len(values) >= 2:
        return min(values), max(values)
    return float(sizes.min()), float(sizes.max())


def _why_left_out(raw: dict, size_opt: float | None) -> str:
    """Why the fit kept this budget's minimum out of the power law; empty when it used it."""
    if raw.get("used_in_law") is False:
        return str(raw.get("reason") or "left out of the power law")
    if raw.get("convex") is False or size_opt is None:
        return "no minimum"
    if raw.get("edge"):
        return "minimum at an edge of the sizes"
    return ""


def _number(value) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if np.isfinite(value) else None


def _nan_if_none(value) -> float:
    number = _number(value)
    return np.nan if number is None else number


def _band(answers: list[dict], key: str) -> tuple[np.ndarray, np.ndarray] | None:
    intervals = [answer.get(key) or [None, None] for answer in answers]
    low = np.array([_nan_if_none(i[0]) for i in intervals], dtype=float)
    high = np.array([_nan_if_none(i[1]) for i in intervals], dtype=float)
    if not (np.isfinite(low).any() and np.isfinite(high).any()):
        return None
    return low, high
