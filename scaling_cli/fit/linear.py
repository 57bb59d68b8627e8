"""A baseline, not a scaling law: loss as a straight weighted sum L = w0 + wN N + wD D + wC C.

Some write-ups propose such a model; it is fitted by ordinary least squares only so that the report
can show, next to the power laws, how badly it extrapolates.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from scaling_cli.errors import FitError
from scaling_cli.fit.laws import linear_loss
from scaling_cli.fit.powerlaw import add_more, r2
from scaling_cli.fit.law import Law, register

MIN_POINTS = 5
NAMES = ("w0", "wN", "wD", "wC")


def fit_linear(points: pd.DataFrame, *, where: str, fixed: dict | None = None) -> dict:
    """Least-squares weights (columns scaled to their largest value for conditioning) with the `fixed` ones
    held, r2 on loss."""
    if len(points) < MIN_POINTS:
        raise FitError(
            where,
            "linear",
            f"needs at least {MIN_POINTS} points, got {len(points)}: {add_more('run', len(points), MIN_POINTS)}",
        )
    fixed = fixed or {}
    features = np.column_stack([np.ones(len(points)), points["N"], points["D"], points["C"]]).astype(float)
    held = np.array([name in fixed for name in NAMES])
    held_values = np.array([fixed[n] for n in NAMES if n in fixed])
    target = points["loss"].to_numpy(dtype=float) - features[:, held] @ held_values
    free = features[:, ~held]
    scale = np.abs(free).max(axis=0) if free.size else np.ones(0)
    weights = np.empty(len(NAMES))
    weights[held] = held_values
    if free.size:
        solved, *_ = np.linalg.lstsq(free / scale, target, rcond=None)
        weights[~held] = solved / scale
    params = {name: float(w) for name, w in zip(NAMES, weights)}
    predicted = linear_loss(params, points["N"], points["D"], points["C"])
    return {
        "params": params,
        "fixed": dict(fixed),
        "r2": r2(points["loss"], predicted),
        "settings": {"loss": "squared residuals of loss"},
    }


@register
class LinearLaw(Law):
    """The baseline L = w0 + wN N + wD D + wC C: scored for comparison, valid only inside its fitted range."""

    name = "linear"
    title = "Linear baseline: L = w0 + wN·N + wD·D + wC·C"
    label = "linear baseline"
    predicts_loss = True

    def fixable(self) -> tuple[str, ...]:
        return NAMES

    def fit(self, points, options, where: str) -> dict:
        return fit_linear(points, where=where, fixed=self.held(options))

    def bootstrap(self, points, fitted: dict, indices, context: dict) -> dict:
        from scaling_cli.fit.bootstrap import bootstrap_linear

        return bootstrap_linear(points, indices, where=context["where"], fixed=fitted.get("fixed"))

    def loss(self, params, n, d, c=None, u=None):
        return linear_loss(params, n, d, c)
