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


def fit_linear(points: pd.DataFrame, *, where: str) -> dict:
    """Least-squares weights (columns scaled to their largest value for conditioning), r2 on loss."""
    if len(points) < MIN_POINTS:
        raise FitError(
            where,
            "linear",
            f"needs at least {MIN_POINTS} points, got {len(points)}: {add_more('run', len(points), MIN_POINTS)}",
        )
    features = np.column_stack([np.ones(len(points)), points["N"], points["D"], points["C"]]).astype(float)
    scale = np.abs(features).max(axis=0)
    weights, *_ = np.linalg.lstsq(features / scale, points["loss"].to_numpy(dtype=float), rcond=None)
    params = {name: float(w) for name, w in zip(NAMES, weights / scale)}
    predicted = linear_loss(params, points["N"], points["D"], points["C"])
    return {
        "params": params,
        "r2": r2(points["loss"], predicted),
        "settings": {"loss": "squared residuals of loss"},
    }


@register
class LinearLaw(Law):
    """The baseline L = w0 + wN N + wD D + wC C: scored for comparison, valid only inside its fitted range."""

    name = "linear"
    predicts_loss = True

    def fit(self, points, options, where: str) -> dict:
        return fit_linear(points, where=where)

    def bootstrap(self, points, fitted: dict, indices, context: dict) -> dict:
        from scaling_cli.fit.bootstrap import bootstrap_linear

        return bootstrap_linear(points, indices, where=context["where"])

    def loss(self, params, n, d, c=None, u=None):
        return linear_loss(params, n, d, c)
