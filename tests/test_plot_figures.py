"""What each figure draws, read off the matplotlib Figure objects: only what fit.json holds, laws that do not
hold left out with a note, filled run markers, legend entries with a marker or line, axes fitted to the data.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import replace
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.collections import PathCollection
from matplotlib.contour import ContourSet
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.text import Text
from test_plot import QUICK_FIT, write_results

from scaling_cli.fit import TableOptions, fit_all
from scaling_cli.fit.allocation import optimal_allocation
from scaling_cli.fit.predict import predict
from scaling_cli.plot import figures, fitview, load_inputs
from scaling_cli.plot.axes import figure_notes, figure_title
from scaling_cli.fit.results import FitResult
from scaling_cli.plot.fitview import FitView, LawStatus
from scaling_cli.plot.style import RC

PLOT_SOURCES = Path(figures.__file__).parent


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """The synthetic sweep fitted per data set by the real fitter; figures draw "markov", the larger group."""
    directory = write_results(tmp_path_factory.mktemp("figures") / "sweep")
    fit = fit_all(directory, TableOptions(by="dataset"), replace(QUICK_FIT, backtest=True))
    (directory / "fit.json").write_text(json.dumps(fit))
    return load_inputs(directory)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def draw(inputs, name: str, fit: dict | None = None):
    """The Figure object of one figure, drawn from `inputs` or from the same runs with another fit.json."""
    if fit is not None:
        inputs = copy.copy(inputs)
        inputs.fit = FitResult.of(fit)
    with matplotlib.rc_context(RC):
        return figures.FIGURE_FUNCTIONS[name](figures.make_context(inputs))


def edited_fit(inputs, edit) -> dict:
    fit = copy.deepcopy(inputs.fit.to_json())  # fit.json as a careless editor would change it
    edit(fit["groups"][FitView(fit).name])
    return fit


def not_identified(group: dict) -> None:
    entry = group["laws"]["chinchilla"]
    entry["status"] = "not_identified"
    entry["problems"] = ["E = 2.17e-30 ran off towards 0: the irreducible loss is not identified"]
    entry["params"]["E"] = 2.17e-30


def isoflop_skipped(group: dict) -> None:
    del group["laws"]["isoflop"]
    group["skipped"]["isoflop"] = "needs at least 3 budgets with 3+ model sizes; add a third FLOP budget"


def legend_handles(fig) -> list:
    legends = [*fig.legends, *(ax.get_legend() for ax in fig.axes)]
    return [handle for legend in legends if legend is not None for handle in legend.legend_handles]


def visible_mark(handle) -> bool:
    """A legend handle shows a marker or a line (a text-only entry shows nothing to match)."""
    if isinstance(handle, Patch):
        return handle.get_facecolor()[3] > 0
    if isinstance(handle, Line2D):
        has_marker = handle.get_marker() not in (None, "", "None", " ", "none")
        has_line = handle.get_linestyle() not in ("None", "", " ", "none") and handle.get_linewidth() > 0
        return has_marker or has_line
    if isinstance(handle, PathCollection):
        return len(handle.get_sizes()) > 0 and handle.get_sizes()[0] > 0
    return False


def lines_with_data(ax) -> list[Line2D]:
    return [line for line in ax.get_lines() if len(line.get_xdata()) > 1]


# ---- what every figure holds ------------------------------------------------------------------------


@pytest.mark.parametrize("name", figures.FIGURE_FUNCTIONS)
def test_every_legend_entry_shows_a_marker_or_a_line(inputs, name):
    fig = draw(inputs, name)
    handles = legend_handles(fig)
    assert all(visible_mark(handle) for handle in handles), [h.get_label() for h in handles if not visible_mark(h)]


def test_plot_contains_no_fitting_code():
    fitting = re.compile(r"polyfit|curve_fit|lstsq|scipy|minimize|least_squares|accumulate|/ \(6 \* ")
    for path in PLOT_SOURCES.glob("*.py"):
        found = fitting.findall(path.read_text())
        assert not found, f"{path.name} fits or derives on its own: {found}"


# ---- parametric fit ----------------------------------------------------------------------------------


def test_parametric_runs_are_filled_with_their_measured_loss(inputs):
    fig = draw(inputs, "parametric_fit")
    fig.canvas.draw()  # colours are mapped from the values when drawn
    ax = fig.axes[0]
    points = FitView(inputs.fit).points()
    runs = [c for c in ax.collections if isinstance(c, PathCollection) and c.get_array() is not None]
    assert len(runs) == 1
    np.testing.assert_allclose(np.sort(runs[0].get_array()), np.sort(points["loss"]))
    faces = runs[0].get_facecolors()
    assert len(faces) == len(points) and (faces[:, 3] > 0).all(), "the markers are hollow"
    # Filled in the law's contour levels: one colour per level band the runs fall in.
    np.testing.assert_allclose(faces, runs[0].to_rgba(runs[0].get_array()))
    assert len({tuple(np.round(face, 3)) for face in faces}) >= 4, "the fill does not vary with loss"
    contours = [c for c in ax.collections if isinstance(c, ContourSet)]
    assert contours, "the fitted law's iso-loss lines are drawn"
    # Lines, not filled bands: on bands of the same colour map a run that fits the law would vanish.
    assert not any(c.filled for c in contours)


def test_parametric_title_is_the_fitted_law_with_three_significant_figures(inputs):
    params = FitView(inputs.fit).chinchilla_params()
    title = figure_title(draw(inputs, "parametric_fit"))
    assert title.startswith("markov: $L = ") and f"{params['E']:.3g} + " in title
    assert f"N^{{{params['alpha']:.3g}}}" in title
    assert figure_notes(draw(inputs, "parametric_fit")) == []


def test_a_law_not_identified_is_not_drawn_and_says_why(inputs):
    fit = edited_fit(inputs, not_identified)
    fig = draw(inputs, "parametric_fit", fit)
    ax = fig.axes[0]
    assert "L =" not in figure_title(fig) and "0.00" not in figure_title(fig)
    assert not any(isinstance(c, ContourSet) for c in ax.collections)
    assert lines_with_data(ax) == [], "no compute-optimal path of a law that does not hold"
    (note,) = figure_notes(fig)
    assert note.startswith("Approach 3 not identified: E = 2.17e-30 ran off towards 0")
    loss_figure = draw(inputs, "loss_vs_compute", fit)
    labels = [h.get_label() for h in legend_handles(loss_figure)]
    assert not any("Approach 3" in label for label in labels)
    assert any(n.startswith("Approach 3 not identified") for n in figure_notes(loss_figure))
    allocation = draw(inputs, "optimal_allocation", fit)
    assert not any("Approach 3" in h.get_label() for h in legend_handles(allocation))
    assert any(n.startswith("Approach 3 not identified") for n in figure_notes(allocation))


def test_a_fit_json_without_status_treats_a_grid_edge_as_not_identified(inputs):
    def old_style(group):
        entry = group["laws"]["chinchilla"]
        entry.pop("status", None)
        entry.pop("problems", None)
        entry.setdefault("diagnostics", {})["grid_edge"] = ["e"]

    status = FitView(edited_fit(inputs, old_style)).status("chinchilla")
    assert status == LawStatus("chinchilla", "not_identified", "e at the edge of the start grid")


# ---- IsoFLOP ------------------------------------------------------------------------------------------


def test_isoflop_draws_the_fits_curves_and_minima(inputs):
    fig = draw(inputs, "isoflop")
    ax = fig.axes[0]
    budgets = FitView(inputs.fit).budgets()
    assert len(budgets) >= 3
    assert len(lines_with_data(ax)) == sum(b.curve_sizes.size > 0 for b in budgets)
    singles = [tuple(c.get_offsets()[0]) for c in ax.collections if len(c.get_offsets()) == 1]
    minima = [(b.size_opt, b.loss_opt) for b in budgets if b.size_opt is not None]
    assert minima and all(any(np.allclose(m, s) for s in singles) for m in minima), "each minimum is marked"


def test_isoflop_curves_span_only_the_stored_window(inputs):
    def windowed(group):
        for budget in group["laws"]["isoflop"]["budgets"]:
            sizes = sorted(p["N"] for p in budget["points"])
            budget["window"] = [sizes[0], sizes[2]]

    fit = edited_fit(inputs, windowed)
    windows = [b["window"] for b in fit["groups"]["markov"]["laws"]["isoflop"]["budgets"]]
    lines = lines_with_data(draw(inputs, "isoflop", fit).axes[0])
    spans = sorted([float(line.get_xdata().min()), float(line.get_xdata().max())] for line in lines)
    np.testing.assert_allclose(spans, sorted(windows[: len(spans)]), rtol=1e-9)


def test_a_skipped_isoflop_of_an_isoflop_grid_draws_the_runs_and_no_parabola(inputs):
    """Runs of an isoFLOP grid rarely share a D, so there are no token budgets to join them by."""
    drawn = inputs.runs[inputs.runs["group"] == "markov"]  # the group the figures draw
    assert not figures._token_budgets_shared(drawn)
    fit = edited_fit(inputs, isoflop_skipped)
    fig = draw(inputs, "isoflop", fit)
    assert lines_with_data(fig.axes[0]) == []
    (note,) = figure_notes(fig)
    assert note.startswith("Approach 2 skipped: needs at least 3 budgets")
    fig.canvas.draw()
    shown = [t for ax in fig.axes for t in ax.get_children() if isinstance(t, Text) and note[:30] in t.get_text()]
    assert shown  # wrapped onto lines, each within the figure: nothing cut
    assert all(fig.bbox.x0 <= t.get_window_extent().x0 < t.get_window_extent().x1 <= fig.bbox.x1 for t in shown)
    assert "…" not in shown[0].get_text()
    allocation = draw(inputs, "optimal_allocation", fit)
    assert not any("Approach 2" in h.get_label() for h in legend_handles(allocation))


# ---- allocation ---------------------------------------------------------------------------------------


def test_the_drawn_optimum_is_the_fits_and_predicts_at_every_compute(inputs):
    fig = draw(inputs, "optimal_allocation")
    ax_n = fig.axes[0]
    red = matplotlib.colors.to_rgba(figures.APPROACH_COLOURS["chinchilla"])
    (line,) = [line for line in lines_with_data(ax_n) if matplotlib.colors.to_rgba(line.get_color()) == red]
    compute, sizes = line.get_xdata(), line.get_ydata()
    view = FitView(inputs.fit)
    expected, _ = optimal_allocation(inputs.fit, view.name, "chinchilla", compute)
    np.testing.assert_allclose(sizes, expected, rtol=1e-9)
    answer = predict(inputs.fit, compute=float(compute[10]), group=view.name)
    assert sizes[10] == pytest.approx(answer["groups"][view.name]["compute"]["chinchilla"]["N_opt"], rel=0.01)
    # fit.json's own answer at its reference compute is marked, and lies on the drawn line.
    stored = inputs.fit.groups[view.name].laws["chinchilla"].at_compute
    (marker,) = [
        m for m in ax_n.get_lines() if m.get_marker() == "P" and matplotlib.colors.same_color(m.get_mfc(), red)
    ]
    assert (marker.get_xdata()[0], marker.get_ydata()[0]) == (stored["C"], stored["N_opt"])
    on_line = np.exp(np.interp(np.log(stored["C"]), np.log(compute), np.log(sizes)))
    assert on_line == pytest.approx(stored["N_opt"], rel=0.01)


# ---- extrapolation ------------------------------------------------------------------------------------


def residuals(fig) -> np.ndarray:
    ax_res = fig.axes[1]
    values = np.concatenate([c.get_offsets()[:, 1] for c in ax_res.collections if isinstance(c, PathCollection)])
    return values[np.isfinite(values)]


@pytest.mark.parametrize("test", ["backtest", "holdout"])
def test_residual_axis_is_scaled_to_the_data(inputs, test):
    fit = inputs.fit if test == "backtest" else edited_fit(inputs, lambda group: group.pop("backtest"))
    fig = draw(inputs, "extrapolation", fit)
    assert figure_title(fig).startswith(f"markov: {test.title()}")
    assert figure_notes(fig)[0].startswith("fit ")
    values = residuals(fig)
    low, high = fig.axes[1].get_ylim()
    inside = values[(values >= low) & (values <= high)]
    beyond = [note for note in figure_notes(fig) if "off the scale" in note]
    assert len(inside) == len(values) or beyond, "points off the axis are noted"
    span = max(inside.max(), 0) - min(inside.min(), 0)
    assert high - low <= 1.3 * span, (low, high, inside.min(), inside.max())


def test_backtest_figure_shows_each_laws_predictions_of_the_runs_above_the_cut(inputs):
    backtest = inputs.fit.groups["markov"].backtest.to_json()
    fig = draw(inputs, "extrapolation")
    cut_lines = [line for line in fig.axes[1].get_lines() if list(line.get_xdata()) == [backtest["cut"]] * 2]
    assert len(cut_lines) == 1, "the compute cut is marked"
    labels = [h.get_label() for h in legend_handles(fig)]
    recommended = backtest["recommended"]["law"]
    assert any(label.startswith(f"{fitview.LAW_NAMES[recommended]}, chosen: MAPE") for label in labels)
    (chosen,) = [c for c in backtest["candidates"] if c["filter"] == backtest["recommended"]["filter"]]
    top = [c for c in fig.axes[0].collections if isinstance(c, PathCollection)]
    drawn = [law for law, scored in chosen["laws"].items() if scored["status"] == "ok"]
    assert len(top) == len(drawn)
    for law in set(chosen["laws"]) - set(drawn):
        assert any(note.startswith(fitview.LAW_NAMES[law]) for note in figure_notes(fig))
    assert [len(c.get_offsets()) for c in top] == [backtest["scored"]] * len(top)


def test_held_out_markers_are_filled(inputs):
    fig = draw(inputs, "extrapolation")
    fig.canvas.draw()
    held = [c for c in fig.axes[0].collections if isinstance(c, PathCollection)]
    assert held and all((c.get_facecolors()[:, 3] > 0).all() for c in held)


def test_a_backtest_where_only_the_baseline_predicts_is_skipped_with_the_reasons(inputs):
    def laws_not_identified(group):
        backtest = group["backtest"]
        for candidate in backtest["candidates"]:
            for law in ("chinchilla", "kaplan"):
                candidate["laws"][law] = {"status": "not_identified", "problems": [f"{law} ran off"]}
        backtest["recommended"] = None

    with pytest.raises(figures.Skip, match="no law but the linear baseline.*chinchilla ran off"):
        draw(inputs, "extrapolation", edited_fit(inputs, laws_not_identified))


def smallest_size_outside_the_window(group: dict) -> None:
    """The data-chosen window uses every point of these clean slices; leave each budget's smallest size out,
    as a wider, under-trained slice would."""
    for budget in group["laws"]["isoflop"]["budgets"]:
        points = sorted(budget["points"], key=lambda point: point["N"])
        if len(points) > 3:
            points[0]["used"] = False


def test_isoflop_points_outside_the_fits_window_are_drawn_open(inputs):
    fit = edited_fit(inputs, smallest_size_outside_the_window)
    fig = draw(inputs, "isoflop", fit)
    fig.canvas.draw()
    budgets = FitView(fit).budgets()
    outside = [int((~b.used).sum()) for b in budgets if (~b.used).any()]
    assert outside, "the fit's windows leave some sizes out"

    def is_open(c) -> bool:  # white inside, the budget's colour around (a left-out minimum's star is black-edged)
        faces, edges = c.get_facecolors(), c.get_edgecolors()
        return len(faces) > 0 and (faces[:, :3] == 1).all() and not (edges[:, :3] == 0).all()

    open_markers = [c for c in fig.axes[0].collections if isinstance(c, PathCollection) and is_open(c)]
    assert [len(c.get_offsets()) for c in open_markers] == outside
    assert "run outside the fit's window" in [h.get_label() for h in legend_handles(fig)]


def test_a_backtest_that_could_not_run_says_why(inputs):
    def backtest_skipped(group):
        group["backtest"] = {"skipped": "needs runs on both sides of the cut"}
        group["holdout"] = None

    with pytest.raises(figures.Skip, match="backtest could not run: needs runs on both sides"):
        draw(inputs, "extrapolation", edited_fit(inputs, backtest_skipped))


def test_a_budget_without_a_minimum_is_noted(inputs):
    def no_minimum(group):
        budget = group["laws"]["isoflop"]["budgets"][-1]
        budget.update(N_opt=None, D_opt=None, loss_opt=None, convex=False, used_in_law=False)
        budget["reason"] = "the parabola opens downward"

    fit = edited_fit(inputs, no_minimum)
    compute = fit["groups"]["markov"]["laws"]["isoflop"]["budgets"][-1]["C"]
    notes = figure_notes(draw(inputs, "isoflop", fit))
    assert notes == [f"budget C = {compute:.3g} has no minimum: the parabola opens downward"]


def test_isoflop_not_identified_keeps_the_budgets_and_says_why(inputs):
    def not_identified(group):
        entry = group["laws"]["isoflop"]
        entry.update(status="not_identified", problems=["a = -0.1 <= 0: N_opt does not grow with compute"])

    fit = edited_fit(inputs, not_identified)
    fig = draw(inputs, "isoflop", fit)
    assert len(lines_with_data(fig.axes[0])) == len(FitView(fit).budgets())
    assert figure_notes(fig)[0].startswith("Approach 2 not identified: a = -0.1 <= 0: N_opt does not grow")
    allocation = draw(inputs, "optimal_allocation", fit)
    assert not any("Approach 2" in h.get_label() for h in legend_handles(allocation))


def test_a_law_below_the_runs_stays_in_view(inputs):
    def lower_irreducible_loss(group):
        group["laws"]["chinchilla"]["params"]["E"] -= 0.8

    fig = draw(inputs, "loss_vs_compute", edited_fit(inputs, lower_irreducible_loss))
    ax = fig.axes[0]
    red = matplotlib.colors.to_rgba(figures.APPROACH_COLOURS["chinchilla"])
    (line,) = [line for line in ax.get_lines() if matplotlib.colors.same_color(line.get_color(), red)]
    low, high = ax.get_ylim()
    in_view = (line.get_ydata() >= low) & (line.get_ydata() <= high)
    assert in_view.any(), "a legend entry for a line drawn outside the axes"


def test_the_allocation_reaches_the_fits_reference_compute(inputs):
    far = 1e4 * FitView(inputs.fit).points()["C"].max()

    def far_reference(group):
        n_opt, d_opt = optimal_allocation(inputs.fit, "markov", "chinchilla", far)
        group["laws"]["chinchilla"]["at_compute"].update(C=far, N_opt=float(n_opt), D_opt=float(d_opt))

    fig = draw(inputs, "optimal_allocation", edited_fit(inputs, far_reference))
    drawn = max(line.get_xdata().max() for line in lines_with_data(fig.axes[0]))
    assert drawn >= far
