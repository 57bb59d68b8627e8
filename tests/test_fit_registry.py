"""A law is one object behind the `Law` protocol: a toy law defined here, and registered here only, is fitted,
bootstrapped, backtested, predicted, plotted and reported without a change to any other module."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from scipy.optimize import least_squares
from test_plot import QUICK_FIT, write_results

from scaling_cli.errors import FitError
from scaling_cli.fit import fit_all, predict, write_fit
from scaling_cli.fit import law as registry
from scaling_cli.fit.bootstrap import interval


class ComputeOnly(registry.Law):
    """L = E + K / (N D)^g: a law that sees only the product N D (a deliberately poor one)."""

    name = "toy"
    predicts_loss = recommendable = True
    by_default = False

    def fit(self, points, options, where):
        if len(points) < 4:
            raise FitError(where, self.name, f"needs at least 4 points, got {len(points)}")
        params = self._fit(points["N"].to_numpy(float), points["D"].to_numpy(float), points["loss"].to_numpy(float))
        return {"params": params, "settings": {"loss": "least squares on log loss"}}

    def _fit(self, n, d, loss):
        def residuals(x):
            params = dict(zip(("E", "K", "g"), (np.exp(x[0]), np.exp(x[1]), x[2])))
            return np.log(self.loss(params, n, d)) - np.log(loss)

        x = least_squares(residuals, [np.log(0.5 * loss.min()), 3.0, 0.2]).x
        return {"E": float(np.exp(x[0])), "K": float(np.exp(x[1])), "g": float(x[2])}

    def bootstrap(self, points, fitted, indices, context):
        samples = [list(self.fit(points.iloc[rows], None, "toy")["params"].values()) for rows in indices]
        columns = np.array(samples).T
        return {
            "intervals": {key: interval(values) for key, values in zip(fitted["params"], columns)},
            "bootstrap": {"resamples": len(indices), "failed": 0, "samples": samples},
        }

    def loss(self, params, n, d, c=None, u=None):
        return params["E"] + params["K"] / (np.asarray(n, dtype=float) * np.asarray(d, dtype=float)) ** params["g"]


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    registry.register(ComputeOnly)
    directory = write_results(tmp_path_factory.mktemp("registry") / "sweep", datasets=("markov",))
    document = fit_all(directory, options=replace(QUICK_FIT, laws=("chinchilla", "toy"), backtest=True))
    write_fit(document, directory / "fit.json")
    yield directory, document
    registry.unregister("toy")


def test_the_toy_law_is_fitted_bootstrapped_and_calibrated(results):
    _, document = results
    toy = document["groups"]["all"]["laws"]["toy"]
    assert toy["status"] == "ok" and set(toy["params"]) == {"E", "K", "g"}
    assert len(toy["bootstrap"]["samples"]) == QUICK_FIT.bootstrap
    assert toy["calibration"]["scored"] > 0 and toy["calibration"]["s"] is not None
    scored = document["groups"]["all"]["backtest"]["candidates"][0]["laws"]
    assert "toy" in scored and scored["toy"]["mape"] > 0


def test_the_toy_law_predicts_a_run_with_an_interval(results):
    _, document = results
    row = predict(document, params=1e9, tokens=2e10)["groups"]["all"]["run"]["toy"]
    assert row["status"] == "ok" and row["interval_kind"] == "prediction"
    low, high = row["loss_interval"]
    assert low < row["loss"] < high


def test_the_toy_law_is_plotted_and_reported(results, tmp_path):
    import matplotlib.pyplot as plt

    from scaling_cli.plot import load_inputs, make_figures
    from scaling_cli.plot.figures import FIGURE_FUNCTIONS, make_context
    from scaling_cli.report import build_report

    directory, _ = results
    assert "toy" in build_report(directory)
    made = dict((name, path) for name, path, _ in make_figures(directory, out_dir=tmp_path))
    assert made["extrapolation"] is not None and made["extrapolation"].is_file()
    figure = FIGURE_FUNCTIONS["extrapolation"](make_context(load_inputs(directory)))
    legends = [*figure.legends, *(ax.get_legend() for ax in figure.axes if ax.get_legend())]
    labels = [text.get_text() for legend in legends for text in legend.get_texts()]
    assert any("toy" in label for label in labels), labels
    plt.close("all")
