"""The seven figures of a scaling study, each drawn from measured runs and fit.json, or skipped with a reason.

Measured runs and curves are drawn as measured. Everything fitted (frontier, IsoFLOP curves, optima, laws,
intervals) comes from `fitview`, which reads it from fit.json; nothing here fits. A law the fit skipped
or could not identify is not drawn: its figure carries a one-line note instead.
"""

from __future__ import annotations


import matplotlib
import numpy as np
import pandas as pd
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from scaling_cli.plot.axes import (
    count_axis,
    limits_of,
    loss_ylim,
    power_of_ten_colorbar,
    title_with_notes,
)
from scaling_cli.plot.context import (  # noqa: F401 - Skip and make_context are used through this module
    CHINCHILLA_SLOPE,
    COMPUTE_LABEL,
    KAPLAN_SLOPE_N,
    PARAMS_LABEL,
    RUN_MARKER,
    TOKENS_LABEL,
    Context,
    Skip,
    _draw_runs_against_compute,
    _has_rows,
    make_context,
)
from scaling_cli.plot.fitview import Allocation, Budget, FitView, allocation_laws
from scaling_cli.plot.more_figures import compression, data_axis, extrapolation
from scaling_cli.plot.style import (
    APPROACH_COLOURS,
    APPROACH_LABELS,
    human_count,
    new_figure,
    truncated,
)

# ---- 1. loss against compute ------------------------------------------------------------------------


def loss_vs_compute(ctx: Context) -> Figure:
    """Every run's validation loss against compute, the fit's efficient frontier and its L(C) laws."""
    if ctx.runs.empty:
        raise Skip("no finished runs with a finite loss")
    fig, (ax,) = new_figure(2.8)
    compute, loss = _draw_runs_against_compute(ctx, ax, ctx.curves, "loss")
    handles = []
    frontier = ctx.view.frontier()
    if frontier is not None:
        few = len(frontier) <= 30
        handles += ax.plot(
            frontier["C"],
            frontier["loss"],
            color="black",
            lw=1.0,
            ls=(0, (3, 1.5)),
            marker="o" if few else None,
            ms=2.5,
            label="efficient frontier (fit)",
            zorder=4,
        )
    fitted = ctx.view.compute_range() or (compute.min(), compute.max())
    grid = np.geomspace(fitted[0], fitted[1] * 10, 48)  # from the fitted runs to a decade beyond them
    chinchilla = ctx.view.allocation("chinchilla", grid, bands=False)
    if chinchilla is not None and chinchilla.loss is not None:
        colour = APPROACH_COLOURS["chinchilla"]
        handles += ax.plot(grid, chinchilla.loss, color=colour, lw=1.2, label="L(N_opt, D_opt) of Approach 3")
    kaplan = ctx.view.kaplan_compute_loss(grid)
    if kaplan is not None:
        handles += ax.plot(grid, kaplan, color=APPROACH_COLOURS["kaplan"], lw=1.0, ls="-.", label="Kaplan L(C)")
    ax.set(xscale="log", yscale="log", xlabel=COMPUTE_LABEL, ylabel=ctx.loss_label)
    # The laws where the runs are count as data for the range: a law below the runs must still show.
    in_range = grid <= compute.max()
    laws = [values[in_range] for values in (chinchilla.loss if chinchilla else None, kaplan) if values is not None]
    laws += [np.array([ctx.entropy_rate()])] if ctx.entropy_rate() is not None else []
    loss_ylim(ax, loss, from_curves=_has_rows(ctx.curves), also=np.concatenate(laws) if laws else None)
    handles += ctx.entropy_line(ax)
    notes = ctx.view.notes(("envelope", "chinchilla", "kaplan")) if ctx.view.exists else []
    title_with_notes(fig, ax, ctx.title("Loss against compute"), notes)
    if handles:
        # Below the axes: inside, it would cover either the small models' curves or the frontier.
        fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 2), fontsize=6.3)
    ax.grid(True, which="major")
    ctx.colours.colorbar(fig, ax)
    return fig


# ---- 2. IsoFLOP profiles ----------------------------------------------------------------------------


def isoflop(ctx: Context) -> Figure:
    """Loss against parameters per FLOP budget, with the fit's curve of each budget and its minimum."""
    ctx.require_sizes()
    ctx.require_fit()
    # Budgets are drawn whenever the fit stored them: when its power law is not identified, the note says
    # so, and the minima show why.
    budgets = ctx.view.budgets()
    computes = [b.compute for b in budgets] or list(ctx.runs["C"])
    norm = _budget_norm(computes)
    cmap = truncated("plasma", 0.0, 0.85)
    fig, (ax,) = new_figure(3.2)
    if not budgets and _token_budgets_shared(ctx.runs):
        return _token_budget_profiles(ctx)
    fig, (ax,) = new_figure(3.2)
    if not budgets:  # no budgets and no token budget shared by two sizes: the runs as measured
        ax.scatter(ctx.runs["N"], ctx.runs["loss"], s=12, c=ctx.runs["C"], cmap=cmap, norm=norm, ec="black", lw=0.3)
        budgets_handles = [Line2D([], [], color=cmap(0.5), label="run (colour: its compute)", **RUN_MARKER)]
    else:
        budgets_handles = _budget_handles(budgets)
    for budget in budgets:
        _draw_budget(ax, budget, cmap(norm(budget.compute)))
    losses = np.concatenate([b.losses for b in budgets]) if budgets else ctx.runs["loss"].to_numpy()
    handles = budgets_handles + ctx.entropy_line(ax)
    ax.set(xscale="log", xlabel=PARAMS_LABEL, ylabel=ctx.loss_label)
    count_axis(ax.xaxis, *ax.get_xlim())
    ax.set_ylim(*limits_of(losses, include=_entropy_in_view(ctx, losses)))
    notes = ctx.view.notes(("isoflop",)) + _budgets_without_minimum(budgets)
    title_with_notes(fig, ax, ctx.title("IsoFLOP profiles"), notes)
    ax.grid(True, which="major")
    fig.legend(handles=handles, loc="outside lower center", ncol=2, fontsize=6.3)
    bar = fig.colorbar(matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, pad=0.02, fraction=0.06, aspect=25)
    power_of_ten_colorbar(bar, "FLOP budget C (FLOPs)")
    return fig


def _token_budget_profiles(ctx: Context) -> Figure:
    """Without isoFLOP budgets: loss against size with the runs of each token budget D joined, so it shows
    where a larger model stops paying at that D (a fixed-D profile, not a fixed-compute one)."""
    runs = ctx.runs.sort_values("N")
    norm = _budget_norm(list(runs["D"]))
    cmap = truncated("viridis", 0.0, 0.9)
    fig, (ax,) = new_figure(3.2)
    for tokens, same in runs.groupby("D", sort=True):
        if len(same) > 1:
            ax.plot(same["N"], same["loss"], color=cmap(norm(tokens)), lw=0.9, zorder=2)
        ax.scatter(same["N"], same["loss"], s=12, color=cmap(norm(tokens)), ec="black", lw=0.3, zorder=3)
    handles = [Line2D([], [], color=cmap(0.5), lw=0.9, label="runs of one token budget D, joined", **RUN_MARKER)]
    handles += ctx.entropy_line(ax)
    losses = runs["loss"].to_numpy()
    ax.set(xscale="log", xlabel=PARAMS_LABEL, ylabel=ctx.loss_label)
    count_axis(ax.xaxis, *ax.get_xlim())
    ax.set_ylim(*limits_of(losses, include=_entropy_in_view(ctx, losses)))
    notes = ["no isoFLOP budgets in this sweep: each line joins the runs of one token budget D, not of one compute"]
    title_with_notes(fig, ax, ctx.title("Loss against size per token budget"), notes + ctx.view.notes(("isoflop",)))
    ax.grid(True, which="major")
    fig.legend(handles=handles, loc="outside lower center", ncol=2, fontsize=6.3)
    bar = fig.colorbar(matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, pad=0.02, fraction=0.06, aspect=25)
    # One tick per budget, written as the axes write counts (131k ... 2.1M), so each colour names its D.
    budgets = sorted(runs["D"].unique())
    bar.set_label("token budget D (tokens)")
    bar.ax.tick_params(labelsize=6.5)
    bar.set_ticks(budgets, labels=[human_count(budget) for budget in budgets])
    bar.ax.minorticks_off()
    return fig


def _token_budgets_shared(runs: pd.DataFrame) -> bool:
    """Whether most runs share their token budget D with another size (a grid of budgets, not of compute)."""
    return bool(len(runs)) and float((runs.groupby("D")["N"].transform("nunique") > 1).mean()) >= 0.5


def _entropy_in_view(ctx: Context, losses: np.ndarray) -> tuple:
    """The entropy rate kept in the loss axis when it lies near the losses (within half their spread below)."""
    entropy = ctx.entropy_rate()
    if entropy is None or not len(losses):
        return ()
    spread = float(np.nanmax(losses) - np.nanmin(losses)) or 1.0
    return (entropy,) if entropy >= np.nanmin(losses) - 2 * spread else ()


def _budgets_without_minimum(budgets: list[Budget]) -> list[str]:
    """A note for the budgets that carry no star: the fit found no minimum to mark, and says why."""
    missing = [b for b in budgets if b.size_opt is None]
    if len(missing) == 1:
        return [f"budget C = {missing[0].compute:.3g} has no minimum: {missing[0].why_left_out}"]
    if missing:
        return [f"{len(missing)} budgets have no minimum: C = {', '.join(f'{b.compute:.3g}' for b in missing)}"]
    return []


def _budget_norm(computes) -> LogNorm:
    low, high = float(np.min(computes)), float(np.max(computes))
    if high < 1.5 * low:  # a single budget still gets a readable colour bar around it
        low, high = low / 1.5, high * 1.5
    return LogNorm(low, high)


def _draw_budget(ax, budget: Budget, colour) -> None:
    used, unused = budget.used, ~budget.used
    ax.scatter(budget.sizes[used], budget.losses[used], s=12, color=colour, edgecolor="black", lw=0.3, zorder=3)
    if unused.any():  # outside the window the fit's curve went through: open, in the budget's colour
        ax.scatter(budget.sizes[unused], budget.losses[unused], s=12, fc="white", ec=colour, lw=0.8, zorder=3)
    if budget.curve_sizes.size:
        ax.plot(budget.curve_sizes, budget.curve_losses, color=colour, lw=0.9)
    if budget.size_opt is not None and budget.loss_opt is not None:
        fill = colour if budget.in_power_law else "white"
        ax.scatter([budget.size_opt], [budget.loss_opt], marker="*", s=46, zorder=4, fc=fill, ec="black", lw=0.5)


def _budget_handles(budgets: list[Budget]) -> list[Line2D]:
    grey = "0.45"
    handles = [Line2D([], [], color=grey, label="run", **RUN_MARKER)]
    if any((~b.used).any() for b in budgets):
        outside = {**RUN_MARKER, "mfc": "white", "mec": grey, "mew": 0.8}
        handles.append(Line2D([], [], label="run outside the fit's window", **outside))
    if any(b.curve_sizes.size for b in budgets):
        handles.append(Line2D([], [], color=grey, lw=0.9, label="fit's curve of the budget"))
    star = {"marker": "*", "ls": "none", "mec": "black", "mew": 0.5, "ms": 7}
    with_minimum = [b for b in budgets if b.size_opt is not None]
    if any(b.in_power_law for b in with_minimum):
        handles.append(Line2D([], [], mfc=grey, label="minimum, used by the fit", **star))
    if any(not b.in_power_law for b in with_minimum):
        handles.append(Line2D([], [], mfc="white", label="minimum, left out", **star))
    return handles


# ---- 3. optimal allocation --------------------------------------------------------------------------


def optimal_allocation(ctx: Context) -> Figure:
    """N_opt(C) and D_opt(C) of each approach with their intervals, as the fit computes them."""
    ctx.require_sizes()
    ctx.require_fit()
    compute_seen = ctx.runs["C"].to_numpy()
    # Out to the fit's reference compute (`scale fit --at-compute`), so its answer there is on the figure.
    reported = [ctx.view.at_compute(law) for law in allocation_laws()]
    farthest = max([compute_seen.max() * 30, *(3 * r[0] for r in reported if r is not None)])
    grid = np.geomspace(compute_seen.min() / 3, farthest, 48)
    lines = {law: ctx.view.allocation(law, grid) for law in allocation_laws()}
    lines = {law: line for law, line in lines.items() if line is not None}
    notes = ctx.view.notes(allocation_laws())
    if not lines:
        raise Skip("no allocation law holds: " + "; ".join(notes))
    fig, (ax_n, ax_d) = new_figure(5.4, nrows=2, sharex=True)
    handles = []
    optima = {law: _measured_optima(ctx.view, law) for law in lines}
    for law, line in lines.items():
        handles.append(_draw_allocation(ax_n, ax_d, line, optima[law]))
    handles += _draw_at_compute(ax_n, ax_d, ctx.view, lines)
    _allocation_limits(ax_n, ax_d, lines, optima)
    pivot = float(np.exp(np.mean(np.log(compute_seen))))
    # Reference slopes through a line that passes through measured optima, where there is one.
    anchor = lines.get("envelope") or lines.get("isoflop") or next(iter(lines.values()))
    at_pivot = min(np.searchsorted(grid, pivot), len(grid) - 1)
    _reference_slopes(ax_n, grid, pivot, anchor.sizes[at_pivot], (CHINCHILLA_SLOPE, KAPLAN_SLOPE_N))
    _reference_slopes(ax_d, grid, pivot, anchor.tokens[at_pivot], (CHINCHILLA_SLOPE, 1 - KAPLAN_SLOPE_N))
    ax_n.set(xscale="log", yscale="log", ylabel="compute-optimal N_opt")
    ax_d.set(xscale="log", yscale="log", ylabel="compute-optimal D_opt (tokens)", xlabel=COMPUTE_LABEL)
    for ax in (ax_n, ax_d):
        ax.axvspan(compute_seen.min(), compute_seen.max(), color="0.92", lw=0, zorder=0)
        ax.grid(True, which="major")
    if ctx.entropy_rate() is not None:
        notes = [*notes, f"known-answer source: entropy rate {ctx.entropy_rate():.3f} nats/token (the loss floor)"]
    title_with_notes(fig, ax_n, ctx.title("Compute-optimal allocation"), notes)
    # Below the axes: inside, the legend would cover the lines of one approach or another.
    fig.legend(handles=handles + _reference_handles(), loc="outside lower center", fontsize=6.0, handlelength=2)
    return fig


def _allocation_limits(ax_n, ax_d, lines: dict, optima: dict) -> None:
    """Fit each axis to the lines and the optima they were fitted to; a wide band may run off the axis."""
    for ax, line_key, optima_key in ((ax_n, "sizes", "N"), (ax_d, "tokens", "D")):
        values = [getattr(line, line_key) for line in lines.values()]
        values += [frame[optima_key].to_numpy() for frame in optima.values() if frame is not None]
        values = np.concatenate(values)
        values = values[np.isfinite(values) & (values > 0)]
        ax.set_ylim(values.min() / 3, values.max() * 3)


def _draw_allocation(ax_n, ax_d, line: Allocation, optima) -> Line2D:
    colour = APPROACH_COLOURS[line.law]
    for ax, values, band in ((ax_n, line.sizes, line.size_band), (ax_d, line.tokens, line.token_band)):
        ax.plot(line.compute, values, color=colour, lw=1.1)
        if band is not None:
            ax.fill_between(line.compute, *band, color=colour, alpha=0.15, lw=0)
    if optima is not None:
        # An envelope read off the curves has a point per FLOP value: draw them small.
        size = 9 if len(optima) <= 30 else 2
        ax_n.scatter(optima["C"], optima["N"], s=size, color=colour, ec="black", lw=0.3 if size > 2 else 0, zorder=3)
        ax_d.scatter(optima["C"], optima["D"], s=size, color=colour, ec="black", lw=0.3 if size > 2 else 0, zorder=3)
    exponents = "" if line.a is None else f": a={line.a:.2f}, b={line.b:.2f}"
    marker = {"marker": "o", "ms": 3, "mec": "black", "mew": 0.3} if optima is not None else {}
    return Line2D([], [], color=colour, lw=1.1, label=f"{APPROACH_LABELS[line.law]}{exponents}", **marker)


def _draw_at_compute(ax_n, ax_d, view: FitView, lines: dict) -> list[Line2D]:
    """fit.json's own N_opt and D_opt at its reference compute (`at_compute`): they sit on the lines."""
    marker = {"marker": "P", "ls": "none", "ms": 5, "mec": "black", "mew": 0.5}
    reported = {law: view.at_compute(law) for law in lines}
    reported = {law: value for law, value in reported.items() if value is not None}
    for law, (compute, size, tokens) in reported.items():
        colour = APPROACH_COLOURS[law]
        ax_n.plot([compute], [size], mfc=colour, zorder=5, **marker)
        ax_d.plot([compute], [tokens], mfc=colour, zorder=5, **marker)
    return [Line2D([], [], mfc="0.5", label="fit.json's at_compute", **marker)] if reported else []


def _measured_optima(view: FitView, law: str) -> pd.DataFrame | None:
    """The optima the law's power law was fitted to: the frontier (Approach 1) or the budgets' minima (2)."""
    if law == "envelope":
        frontier = view.frontier()
        return None if frontier is None else frontier[["C", "N", "D"]]
    if law == "isoflop":
        rows = [(b.compute, b.size_opt, b.tokens_opt) for b in view.budgets() if b.in_power_law]
        return pd.DataFrame(rows, columns=["C", "N", "D"]) if rows else None
    return None


def _reference_slopes(ax, grid, pivot, value_at_pivot, slopes) -> None:
    for slope, style in zip(slopes, ((0, (4, 2)), (0, (1, 1.2)))):
        ax.plot(grid, value_at_pivot * (grid / pivot) ** slope, color="0.35", lw=0.8, ls=style, zorder=1)


def _reference_handles() -> list:
    return [
        Line2D([], [], color="0.35", lw=0.8, ls=(0, (4, 2)), label="Chinchilla: N, D ∝ C^0.5"),
        Line2D([], [], color="0.35", lw=0.8, ls=(0, (1, 1.2)), label="Kaplan: N ∝ C^0.73, D ∝ C^0.27"),
        matplotlib.patches.Patch(color="0.92", label="compute range of the runs"),
    ]


# ---- 4. parametric fit ------------------------------------------------------------------------------


def parametric_fit(ctx: Context) -> Figure:
    """The runs over tokens and parameters, filled with their measured loss, on the fitted law's iso-loss lines."""
    ctx.require_sizes()
    ctx.require_fit()
    points = ctx.view.points()
    if points.empty:
        points = ctx.runs[["run_id", "N", "D", "C", "loss"]]
    params = ctx.view.chinchilla_params()
    # With a law, room for where it leads beyond the runs; without one, just the runs.
    below, above = (3, 10) if params else (1.5, 1.5)
    tokens = np.geomspace(points["D"].min() / below, points["D"].max() * above, 160)
    sizes = np.geomspace(points["N"].min() / below, points["N"].max() * above, 160)
    surface = None
    if params:
        grid_d, grid_n = np.meshgrid(tokens, sizes)
        surface = ctx.view.chinchilla_loss(grid_n, grid_d)
    losses = points["loss"].to_numpy()
    levels = MaxNLocator(nbins=10).tick_values(float(np.min(losses)) * 0.97, float(np.max(losses)))
    norm = matplotlib.colors.BoundaryNorm(levels, 256, extend="both")
    cmap = truncated("viridis", 0.0, 0.95)  # perceptually uniform, and its mid-tones differ in hue
    fig, (ax,) = new_figure(3.0)
    handles = []
    if surface is not None:
        contours = ax.contour(grid_d, grid_n, surface, levels=levels, cmap=cmap, norm=norm, linewidths=0.8)
        # Labels in dark grey, not the line's colour: the light end of viridis is unreadable on white.
        ax.clabel(contours, levels[::2], fontsize=5.5, fmt="%g", inline_spacing=2, colors="0.15")
        handles.append(Line2D([], [], color=cmap(0.5), lw=0.8, label="iso-loss line of the fitted law"))
        path_handles, path_notes = _draw_optimal_path(ax, ctx.view, points, (tokens, sizes))
        handles += path_handles
    runs = ax.scatter(points["D"], points["N"], c=losses, cmap=cmap, norm=norm, s=18, ec="black", lw=0.4, zorder=3)
    handles.append(Line2D([], [], color=cmap(0.6), label="run (fill: measured loss)", **{**RUN_MARKER, "ms": 4}))
    ax.set(xscale="log", yscale="log", xlabel=TOKENS_LABEL, ylabel=PARAMS_LABEL)
    ax.set_xlim(tokens[0], tokens[-1])
    ax.set_ylim(sizes[0], sizes[-1])
    count_axis(ax.xaxis, tokens[0], tokens[-1])
    count_axis(ax.yaxis, sizes[0], sizes[-1])
    title = law_title(params) if params else "Parametric law L(N, D)"
    notes = ctx.view.notes(("chinchilla",)) + (path_notes if surface is not None else [])
    if ctx.entropy_rate() is not None:
        fitted_e = f"; fitted E = {params['E']:.3f}" if params and "E" in params else ""
        notes.append(f"source entropy rate {ctx.entropy_rate():.3f} nats/token, the loss no model can beat{fitted_e}")
    title_with_notes(fig, ax, ctx.title(title), notes)
    fig.legend(handles=handles, loc="outside lower center", ncol=2, fontsize=6.2)
    bar = fig.colorbar(runs, ax=ax, pad=0.02, fraction=0.06, aspect=25)
    bar.set_label(ctx.loss_label)
    bar.ax.tick_params(labelsize=6.5)
    return fig


def _draw_optimal_path(ax, view: FitView, points: pd.DataFrame, view_grid) -> tuple[list[Line2D], list[str]]:
    """The fit's compute-optimal (D_opt, N_opt) over the compute of the runs and a decade beyond.

    A path that never enters the view is said in a note rather than stretching the axes away from the runs.
    """
    compute = np.geomspace(points["C"].min() / 3, points["C"].max() * 10, 40)
    path = view.allocation("chinchilla", compute, bands=False)
    if path is None:
        return [], []
    (tokens, sizes) = view_grid
    inside = (path.tokens >= tokens[0]) & (path.tokens <= tokens[-1]) & (path.sizes >= sizes[0])
    inside &= path.sizes <= sizes[-1]
    if not inside.any():
        at = float(points["C"].max())
        n_opt, d_opt = path.sizes[np.searchsorted(compute, at)], path.tokens[np.searchsorted(compute, at)]
        return [], [f"compute-optimal path off the view: N_opt = {n_opt:.3g}, D_opt = {d_opt:.3g} at C = {at:.3g}"]
    colour = APPROACH_COLOURS["chinchilla"]
    ax.plot(path.tokens, path.sizes, color=colour, lw=1.3, zorder=2)
    return [Line2D([], [], color=colour, lw=1.3, label="compute-optimal (D_opt, N_opt)")], []


def law_title(params: dict) -> str:
    """The fitted law as a formula, each number to three significant figures."""
    return (
        f"$L = {_tex(params['E'])} + {_tex(params['A'])}/N^{{{params['alpha']:.3g}}}"
        f" + {_tex(params['B'])}/D^{{{params['beta']:.3g}}}$"
    )


def _tex(value: float) -> str:
    text = f"{value:.3g}"
    if "e" in text:
        mantissa, exponent = text.split("e")
        return f"{mantissa}\\times10^{{{int(exponent)}}}"
    return text


FIGURE_FUNCTIONS = {
    "loss_vs_compute": loss_vs_compute,
    "isoflop": isoflop,
    "optimal_allocation": optimal_allocation,
    "parametric_fit": parametric_fit,
    "extrapolation": extrapolation,
    "compression": compression,
    "data_axis": data_axis,
}


def each_figure(inputs, names):
    """Draw the named figures in the house style: (name, figure, "") for each drawn, (name, None, why) for each
    the inputs cannot support. The style stays in force while the caller holds a figure (to save or read it)."""
    import matplotlib.pyplot as plt

    from scaling_cli.plot.style import RC

    with plt.rc_context(RC):
        context = make_context(inputs)
        for name in names:
            try:
                figure = FIGURE_FUNCTIONS[name](context)
            except Skip as reason:
                plt.close("all")
                yield name, None, str(reason)
                continue
            yield name, figure, ""
