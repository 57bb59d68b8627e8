"""The seven figures of a scaling study, each drawn from PlotInputs or skipped with a one-line reason."""

from __future__ import annotations

from dataclasses import dataclass

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.colors import BoundaryNorm, LogNorm
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import (
    FixedLocator,
    FuncFormatter,
    LogLocator,
    MaxNLocator,
    NullFormatter,
    NullLocator,
)

from scaling_cli.plot import fitview
from scaling_cli.plot.inputs import BASELINES, PlotInputs
from scaling_cli.plot.style import (
    APPROACH_COLOURS,
    APPROACH_LABELS,
    COMPRESSOR_STYLES,
    SizeColours,
    human_count,
    new_figure,
)

COMPUTE_LABEL = "training compute C (FLOPs)"
PARAMS_LABEL = "parameters N"
LOSS_LABEL = "validation loss (nats/token)"
BPB_LABEL = "validation bits per byte"
CHINCHILLA_SLOPE = 0.5
KAPLAN_SLOPE_N = 0.73


class Skip(Exception):
    """The data cannot support this figure; the message says why in one line."""


@dataclass
class Context:
    """What every figure function receives: the inputs, the shared size colours and the main fit group.

    `runs` and `curves` are the main group's rows when the fit was made per group (`--by dataset`),
    so a single-law figure never mixes data sets; `inputs` keeps every row for data_axis.
    """

    inputs: PlotInputs
    colours: SizeColours
    group_name: str
    group: dict | None
    runs: pd.DataFrame
    curves: pd.DataFrame | None

    @property
    def loss_label(self) -> str:
        return LOSS_LABEL if self.inputs.from_results_dir else "loss (nats/token)"

    def group_title(self, title: str) -> str:
        return title if self.group_name in ("", "all") else f"{self.group_name}: {title}"

    def no_fit_reason(self) -> str:
        return self.inputs.fit_problem or "no fit.json; run `scale fit` first"

    def chinchilla_params(self) -> dict | None:
        entry = fitview.law(self.group, "chinchilla")
        return entry.get("params") if entry else None

    def flop_ratio(self, sizes) -> np.ndarray:
        """C / (6 N D) of this source's FLOP count at model size N (1 when C is 6ND; above 1 for Appendix F).

        The parametric law's optimum assumes C = 6ND, but the runs may count attention and embeddings too,
        and tiny models count them a lot; drawing the law against the runs' own FLOPs needs this ratio.
        """
        ratio = (self.runs["C"] / (6 * self.runs["N"] * self.runs["D"])).groupby(self.runs["N"]).median()
        if ratio.empty:
            return np.ones_like(np.asarray(sizes, dtype=float))
        return np.interp(np.log(np.asarray(sizes, dtype=float)), np.log(ratio.index.to_numpy()), ratio.to_numpy())

    def chinchilla_optimum(self, params: dict, compute: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The parametric law's N_opt and D_opt at `compute` counted as this source counts FLOPs."""
        compute_6nd = np.geomspace(compute.min() / 10, compute.max() * 10, 4 * len(compute))
        sizes, tokens = fitview.chinchilla_optimum(params, compute_6nd)
        counted = np.log(self.flop_ratio(sizes) * compute_6nd)
        at = np.log(compute)
        return np.exp(np.interp(at, counted, np.log(sizes))), np.exp(np.interp(at, counted, np.log(tokens)))

    def require_sizes(self) -> None:
        sizes = np.unique(self.runs["N"])
        if len(sizes) < 2:
            only = f"one (N = {human_count(sizes[0])})" if len(sizes) else "none"
            raise Skip(f"needs several model sizes; this sweep has {only}")


def make_context(inputs: PlotInputs) -> Context:
    picked = fitview.primary_group(inputs.fit)
    name, group = picked if picked else ("", None)
    runs, curves = inputs.runs, inputs.curves
    by = (inputs.fit or {}).get("by")
    if by and by in runs.columns and name:
        runs = runs[runs[by].astype(str) == name]
        curves = None if curves is None else curves[curves["run_id"].isin(runs["run_id"])]
    return Context(inputs, SizeColours(list(inputs.runs["N"])), name, group, runs, curves)


# ---- 1. loss against compute ------------------------------------------------------------------------


def loss_vs_compute(ctx: Context) -> Figure:
    """Every run's validation loss against training FLOPs, the efficient frontier and the fitted L(C)."""
    runs, curves = ctx.runs, ctx.curves
    if runs.empty:
        raise Skip("no finished runs with a finite loss")
    fig, (ax,) = new_figure(2.7)
    if curves is not None and not curves.empty:
        for _, curve in curves.groupby("run_id", sort=False):
            ax.plot(curve["flops"], curve["val_loss"], color=ctx.colours(curve["N"].iloc[0]), lw=0.7, alpha=0.85)
        compute, loss = curves["flops"].to_numpy(), curves["val_loss"].to_numpy()
    else:
        ax.scatter(runs["C"], runs["loss"], s=7, c=[ctx.colours(n) for n in runs["N"]], lw=0)
        compute, loss = runs["C"].to_numpy(), runs["loss"].to_numpy()
    handles = []
    front_c, front_l = frontier(compute, loss)
    handles += ax.plot(front_c, front_l, color="black", lw=1.1, ls=(0, (3, 1.5)), label="efficient frontier", zorder=4)
    grid = np.geomspace(compute.min(), compute.max() * 10, 200)
    params = ctx.chinchilla_params()
    if params:
        fitted = fitview.chinchilla_loss(params, *ctx.chinchilla_optimum(params, grid))
        handles += ax.plot(grid, fitted, color=APPROACH_COLOURS["chinchilla"], lw=1.2, label="Chinchilla fit")
    kaplan = fitview.kaplan_compute_loss(fitview.law(ctx.group, "kaplan"), grid)
    if kaplan is not None:
        handles += ax.plot(grid, kaplan, color=APPROACH_COLOURS["kaplan"], lw=1.0, ls="-.", label="Kaplan L(C) fit")
    ax.set(xscale="log", yscale="log", xlabel=COMPUTE_LABEL, ylabel=ctx.loss_label)
    _loss_ylim(ax, loss, from_curves=curves is not None and not curves.empty)
    ax.set_title(ctx.group_title("Loss against compute"))
    # Below the axes: inside, it would cover either the small models' curves or the frontier.
    fig.legend(
        handles=handles,
        loc="outside lower center",
        ncol=len(handles),
        fontsize=6.5,
        handlelength=1.8,
        columnspacing=1.0,
    )
    ax.grid(True, which="major")
    ctx.colours.colorbar(fig, ax)
    return fig


def frontier(compute: np.ndarray, loss: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The lower envelope: points with less loss than every point that used less compute."""
    order = np.argsort(compute, kind="stable")
    compute, loss = compute[order], loss[order]
    best = np.minimum.accumulate(loss)
    keep = np.r_[True, best[1:] < best[:-1]]
    return compute[keep], best[keep]


def _loss_ylim(ax, loss: np.ndarray, from_curves: bool) -> None:
    # Losses near initialisation would squash the interesting range of a curve plot; final losses are
    # all worth seeing.
    low = float(np.nanmin(loss))
    high = float(np.nanquantile(loss, 0.9)) * 1.1 if from_curves else float(np.nanmax(loss)) * 1.03
    _log_ylim(ax, low * 0.95, max(high, low * 1.3))


def _log_ylim(ax, low: float, high: float) -> None:
    """Set a log y range of less than a decade or so, with plain-number ticks (3, 3.5, 4) instead of 10^x."""
    ax.set_ylim(low, high)
    ticks = [t for t in MaxNLocator(nbins=6, steps=[1, 2, 2.5, 5, 10]).tick_values(low, high) if low <= t <= high]
    ax.yaxis.set_major_locator(FixedLocator(ticks))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.yaxis.set_minor_locator(NullLocator())


def _count_axis(axis, low: float, high: float) -> None:
    """Label a log axis of counts as 200k, 1M, 5B, with as many ticks per decade as leave room to read them."""
    decades = np.log10(high / low)
    subs = (1.0, 2.0, 5.0) if decades <= 1.6 else (1.0, 3.0) if decades <= 2.6 else (1.0,)
    axis.set_major_locator(LogLocator(base=10, subs=subs))
    axis.set_major_formatter(FuncFormatter(lambda value, _: human_count(value)))
    axis.set_minor_formatter(NullFormatter())


# ---- 2. IsoFLOP profiles ----------------------------------------------------------------------------


@dataclass
class Budget:
    """One IsoFLOP slice: the sizes tried at compute C, their losses, and the parabola's minimum."""

    compute: float
    sizes: np.ndarray
    losses: np.ndarray
    parabola: object  # callable: sizes -> loss
    size_opt: float | None
    loss_opt: float | None
    edge: bool


def isoflop(ctx: Context) -> Figure:
    """Loss against parameters per FLOP budget, with the fitted parabolas and their minima."""
    ctx.require_sizes()
    budgets, source = isoflop_budgets(ctx)
    fig, (ax,) = new_figure(3.2)
    norm = _budget_norm([b.compute for b in budgets])
    cmap = _truncate("plasma", 0.0, 0.85)
    for budget in budgets:
        _draw_budget(ax, budget, cmap(norm(budget.compute)))
    ax.set(xscale="log", xlabel=PARAMS_LABEL, ylabel=ctx.loss_label)
    _count_axis(ax.xaxis, *ax.get_xlim())
    ax.set_title(ctx.group_title("IsoFLOP profiles"))
    # Below the axes: the parabolas fill the plot area, and the notes are wider than the gaps between them.
    fig.legend(
        handles=_minimum_handles(budgets),
        loc="outside lower center",
        title=source,
        title_fontsize=6.5,
        fontsize=6.5,
        ncol=1,
    )
    ax.grid(True, which="major")
    minima = [b.loss_opt for b in budgets if b.loss_opt is not None]
    _limit_to_points(ax, np.concatenate([*(b.losses for b in budgets), minima]))
    bar = fig.colorbar(matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, pad=0.02, fraction=0.06, aspect=25)
    bar.set_label("FLOP budget C (FLOPs)")
    bar.ax.tick_params(labelsize=6.5)
    bar.ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: power_of_ten(value)))
    bar.ax.yaxis.set_minor_formatter(FuncFormatter(lambda value, _: power_of_ten(value, minor=True)))
    return fig


def _budget_norm(computes: list[float]) -> LogNorm:
    low, high = min(computes), max(computes)
    if high < 1.5 * low:  # a single budget still gets a readable colour bar around it
        low, high = low / 1.5, high * 1.5
    return LogNorm(low, high)


def _draw_budget(ax, budget: Budget, colour) -> None:
    ax.scatter(budget.sizes, budget.losses, s=9, color=colour, lw=0, zorder=3)
    span = np.geomspace(budget.sizes.min() / 1.3, budget.sizes.max() * 1.3, 100)
    ax.plot(span, budget.parabola(span), color=colour, lw=0.9)
    if budget.size_opt is not None:
        fill = "white" if budget.edge else colour
        ax.scatter(
            [budget.size_opt],
            [budget.loss_opt],
            marker="*",
            s=42,
            zorder=4,
            facecolor=fill,
            edgecolor="black",
            lw=0.5,
        )


def _minimum_handles(budgets: list[Budget]) -> list[Line2D]:
    star = {"marker": "*", "ls": "none", "mec": "black", "mew": 0.5, "ms": 7}
    minima = [b for b in budgets if b.size_opt is not None]
    handles = []
    if any(not b.edge for b in minima):
        handles.append(Line2D([], [], color="grey", label="parabola minimum", **star))
    if any(b.edge for b in minima):
        handles.append(Line2D([], [], mfc="white", label="minimum at edge of sizes", **star))
    if len(minima) < len(budgets):
        handles.append(Line2D([], [], ls="none", label="no minimum: parabola opens downward"))
    return handles


def power_of_ten(value: float, minor: bool = False) -> str:
    """`$10^{14}$` or `$3\\times10^{14}$`; minor ticks get a label only on a colour bar spanning little."""
    exponent = int(np.floor(np.log10(value) + 1e-9))
    mantissa = value / 10**exponent
    if minor and round(mantissa, 1) not in (2.0, 3.0, 5.0):
        return ""
    if abs(mantissa - 1) < 1e-6:
        return f"$10^{{{exponent}}}$"
    return f"${mantissa:.2g}\\times10^{{{exponent}}}$"


def isoflop_budgets(ctx: Context) -> tuple[list[Budget], str]:
    """Budgets of the fit's Approach 2 when it has them, else slices of the training curves."""
    entry = fitview.law(ctx.group, "isoflop")
    if entry and entry.get("budgets"):
        return [_fit_budget(b) for b in entry["budgets"] if len(b.get("points") or []) >= 3], "parabolas of the fit"
    reasons = [
        ctx.no_fit_reason()
        if ctx.group is None
        else f"fit: {fitview.skipped_reason(ctx.group, 'isoflop') or 'no IsoFLOP budgets'}"
    ]
    if ctx.curves is not None and not ctx.curves.empty:
        budgets = sliced_budgets(ctx.curves)
        if budgets:
            return budgets, "curves sliced at fixed FLOPs"
        reasons.append("curves: no FLOP value that three or more model sizes all reached")
    raise Skip(f"no FLOP budget with three or more sizes ({'; '.join(reasons)})")


def _fit_budget(budget: dict) -> Budget:
    points = budget["points"]
    sizes = np.array([p["N"] for p in points], dtype=float)
    losses = np.array([p["loss"] for p in points], dtype=float)
    coef = budget["coef"]
    size_opt = budget.get("N_opt")
    loss_opt = budget.get("loss_opt")
    if size_opt is not None and loss_opt is None:
        loss_opt = float(fitview.isoflop_curve(coef, [size_opt])[0])
    return Budget(
        float(budget["C"]),
        sizes,
        losses,
        lambda n, coef=coef: fitview.isoflop_curve(coef, n),
        size_opt,
        loss_opt,
        bool(budget.get("edge")),
    )


def sliced_budgets(curves: pd.DataFrame, count: int = 6) -> list[Budget]:
    """IsoFLOP slices of the training curves: at each budget, the best loss any run of each size reached."""
    low, high = curves["flops"].min(), curves["flops"].max()
    candidates = np.geomspace(low, high, 48)
    per_size = {size: list(group.groupby("run_id")) for size, group in curves.groupby("N")}
    slices = []
    for compute in candidates:
        sizes, losses = [], []
        for size, runs in per_size.items():
            reached = [_loss_at(run["flops"].to_numpy(), run["val_loss"].to_numpy(), compute) for _, run in runs]
            reached = [value for value in reached if value is not None]
            if reached:
                sizes.append(size)
                losses.append(min(reached))
        if len(sizes) >= 3:
            slices.append((compute, np.array(sizes), np.array(losses)))
    if not slices:
        return []
    picks = np.unique(np.linspace(0, len(slices) - 1, min(count, len(slices))).round().astype(int))
    spaced = [slices[picks[0]]]
    for index in picks[1:]:
        # Budgets closer than a factor 1.5 would draw the same parabola twice.
        if slices[index][0] >= 1.5 * spaced[-1][0]:
            spaced.append(slices[index])
    return [_parabola_budget(*budget) for budget in spaced]


def _loss_at(compute: np.ndarray, loss: np.ndarray, target: float) -> float | None:
    if len(compute) < 2 or target < compute[0] or target > compute[-1]:
        return None
    return float(np.exp(np.interp(np.log(target), np.log(compute), np.log(loss))))


def _parabola_budget(compute: float, sizes: np.ndarray, losses: np.ndarray) -> Budget:
    coef = np.polyfit(np.log10(sizes), losses, 2)

    def parabola(n):
        return np.polyval(coef, np.log10(n))

    if coef[0] <= 0:
        return Budget(compute, sizes, losses, parabola, None, None, False)
    vertex = -coef[1] / (2 * coef[0])
    inside = np.log10(sizes.min()) <= vertex <= np.log10(sizes.max())
    size_opt = float(10 ** np.clip(vertex, np.log10(sizes.min()), np.log10(sizes.max())))
    return Budget(compute, sizes, losses, parabola, size_opt, float(parabola(size_opt)), not inside)


def _limit_to_points(ax, losses: np.ndarray) -> None:
    low, high = float(np.min(losses)), float(np.max(losses))
    pad = 0.08 * (high - low or high)
    ax.set_ylim(low - pad, high + pad)


def _truncate(name: str, bottom: float, top: float):
    from matplotlib.colors import ListedColormap

    return ListedColormap(matplotlib.colormaps[name](np.linspace(bottom, top, 256)))


# ---- 3. optimal allocation --------------------------------------------------------------------------


def optimal_allocation(ctx: Context) -> Figure:
    """N_opt(C) and D_opt(C) of each fitting approach with their bands, against Chinchilla and Kaplan slopes."""
    ctx.require_sizes()
    if ctx.group is None:
        raise Skip(ctx.no_fit_reason())
    compute_seen = ctx.runs["C"].to_numpy()
    grid = np.geomspace(compute_seen.min() / 3, compute_seen.max() * 30, 160)
    pivot = float(np.exp(np.mean(np.log(compute_seen))))
    lines = _allocation_lines(ctx, grid)
    if not lines:
        reasons = "; ".join(
            f"{name}: {fitview.skipped_reason(ctx.group, name) or 'not fitted'}"
            for name in ("chinchilla", "envelope", "isoflop")
        )
        raise Skip(f"no fitted allocation law ({reasons})")
    fig, (ax_n, ax_d) = new_figure(4.4, nrows=2, sharex=True)
    for name, (sizes, tokens, a, b, intervals, points) in lines.items():
        colour = APPROACH_COLOURS[name]
        label = f"{APPROACH_LABELS[name]}: a={a:.2f}, b={b:.2f}"
        for ax, line, exponent, key in ((ax_n, sizes, a, "a"), (ax_d, tokens, b, "b")):
            ax.plot(grid, line, color=colour, lw=1.1, label=label)
            band = fitview.exponent_band(line, grid, intervals.get(key), exponent, pivot)
            if band:
                ax.fill_between(grid, *band, color=colour, alpha=0.15, lw=0)
        if points is not None:
            # An envelope read off the curves has a point per FLOP value: draw them small.
            size, alpha = (8, 1.0) if len(points[0]) <= 20 else (2, 0.5)
            ax_n.scatter(points[0], points[1], s=size, color=colour, lw=0, zorder=3, alpha=alpha)
            ax_d.scatter(points[0], points[2], s=size, color=colour, lw=0, zorder=3, alpha=alpha)
    anchor_sizes, anchor_tokens = next(iter(lines.values()))[:2]
    at_pivot = np.searchsorted(grid, pivot)
    _reference_slopes(ax_n, grid, pivot, anchor_sizes[at_pivot], (CHINCHILLA_SLOPE, KAPLAN_SLOPE_N))
    _reference_slopes(ax_d, grid, pivot, anchor_tokens[at_pivot], (CHINCHILLA_SLOPE, 1 - KAPLAN_SLOPE_N))
    ax_n.set(xscale="log", yscale="log", ylabel="compute-optimal N_opt (parameters)")
    ax_d.set(xscale="log", yscale="log", ylabel="compute-optimal D_opt (tokens)", xlabel=COMPUTE_LABEL)
    for ax in (ax_n, ax_d):
        ax.axvspan(compute_seen.min(), compute_seen.max(), color="0.92", lw=0, zorder=0)
        ax.grid(True, which="major")
    ax_n.set_title(ctx.group_title("Compute-optimal allocation"))
    ax_n.legend(loc="upper left", fontsize=6.3, handlelength=1.5)
    ax_d.legend(handles=_reference_handles(), loc="upper left", fontsize=6.3, handlelength=2)
    return fig


def _allocation_lines(ctx: Context, grid: np.ndarray) -> dict:
    """Per approach: N_opt and D_opt on the grid, exponents, their intervals and the measured optima."""
    lines = {}
    params = ctx.chinchilla_params()
    if params:
        entry = fitview.law(ctx.group, "chinchilla")
        sizes, tokens = ctx.chinchilla_optimum(params, grid)
        derived = entry.get("derived") or {}
        alpha, beta = float(params["alpha"]), float(params["beta"])
        a = float(derived.get("a", beta / (alpha + beta)))
        b = float(derived.get("b", alpha / (alpha + beta)))
        lines["chinchilla"] = (sizes, tokens, a, b, entry.get("intervals") or {}, None)
    for name in ("envelope", "isoflop"):
        entry = fitview.law(ctx.group, name)
        if not entry or not entry.get("params"):
            continue
        p = entry["params"]
        sizes = fitview.power_law(p["N0"], p["a"], grid)
        tokens = fitview.power_law(p["D0"], p["b"], grid)
        lines[name] = (
            sizes,
            tokens,
            float(p["a"]),
            float(p["b"]),
            entry.get("intervals") or {},
            _measured_optima(name, entry),
        )
    return lines


def _measured_optima(name: str, entry: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    if name == "envelope":
        rows, size_key, tokens_key = entry.get("frontier") or [], "N", "D"
    else:
        budgets = entry.get("budgets") or []
        rows, size_key, tokens_key = [b for b in budgets if b.get("N_opt") and not b.get("edge")], "N_opt", "D_opt"
    if not rows:
        return None
    compute = np.array([r["C"] for r in rows], dtype=float)
    sizes = np.array([r[size_key] for r in rows], dtype=float)
    tokens = np.array([r.get(tokens_key) or r["C"] / (6 * r[size_key]) for r in rows], dtype=float)
    return compute, sizes, tokens


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
    """Iso-loss contours of the fitted L(N, D) over compute and size, the frontier and the runs."""
    ctx.require_sizes()
    params = ctx.chinchilla_params()
    if not params:
        reason = fitview.skipped_reason(ctx.group, "chinchilla") if ctx.group else ctx.no_fit_reason()
        raise Skip(f"no parametric (chinchilla) law in the fit: {reason or 'not fitted'}")
    points = _fit_points(ctx)
    compute = np.geomspace(points["C"].min() / 3, points["C"].max() * 30, 220)
    sizes = np.geomspace(points["N"].min() / 4, points["N"].max() * 8, 200)
    grid_c, grid_n = np.meshgrid(compute, sizes)
    surface = fitview.chinchilla_loss(params, grid_n, grid_c / (6 * grid_n * ctx.flop_ratio(grid_n)))
    # Contours from the lowest loss in view (the extrapolated corner) up to the worst runs.
    levels = MaxNLocator(nbins=12).tick_values(float(np.min(surface)), np.quantile(points["loss"], 0.95) * 1.05)
    norm = BoundaryNorm(levels, 256, extend="both")
    cmap = matplotlib.colormaps["cividis"]
    fig, (ax,) = new_figure(2.8)
    filled = ax.contourf(grid_c, grid_n, surface, levels=levels, cmap=cmap, norm=norm, extend="both")
    ax.contour(grid_c, grid_n, surface, levels=levels, colors="white", linewidths=0.35, alpha=0.7)
    opt_sizes, _ = ctx.chinchilla_optimum(params, compute)
    ax.plot(compute, opt_sizes, color=APPROACH_COLOURS["chinchilla"], lw=1.3, label="efficient frontier N_opt(C)")
    crowded = len(points) > 60
    ax.scatter(
        points["C"],
        points["N"],
        c=points["loss"],
        cmap=cmap,
        norm=norm,
        s=7 if crowded else 16,
        edgecolor="white",
        lw=0.4 if crowded else 0.9,
        zorder=3,
        label="runs (fill: measured loss)",
    )
    ax.set(xscale="log", yscale="log", xlabel=COMPUTE_LABEL, ylabel=PARAMS_LABEL)
    ax.set_xlim(compute[0], compute[-1])
    ax.set_ylim(sizes[0], sizes[-1])
    ax.set_title(ctx.group_title(_law_title(params)))
    ax.legend(loc="upper left", fontsize=6.3, frameon=True, framealpha=0.85, edgecolor="none")
    bar = fig.colorbar(filled, ax=ax, pad=0.02, fraction=0.06, aspect=25)
    bar.set_label(ctx.loss_label)
    bar.ax.tick_params(labelsize=6.5)
    return fig


def _law_title(params: dict) -> str:
    return (
        f"$L = {params['E']:.2f} + {params['A']:.4g}/N^{{{params['alpha']:.3f}}}"
        f" + {params['B']:.4g}/D^{{{params['beta']:.3f}}}$"
    )


def _fit_points(ctx: Context) -> pd.DataFrame:
    """The (N, D, C, loss) points the fit used, or the finished runs when the fit did not list them."""
    listed = (ctx.group or {}).get("points") or []
    if listed:
        frame = pd.DataFrame(listed)
        if "D" not in frame:
            frame["D"] = frame["C"] / (6 * frame["N"])
        return frame
    return ctx.runs[["run_id", "N", "D", "C", "loss"]]


# ---- 5. extrapolation -------------------------------------------------------------------------------


def extrapolation(ctx: Context) -> Figure:
    """Predicted against measured loss with held-out runs marked, and the relative errors beneath."""
    if ctx.group is None:
        raise Skip(ctx.no_fit_reason())
    holdout = ctx.group.get("holdout")
    if not holdout or not holdout.get("runs"):
        raise Skip("no held-out runs in the fit; run `scale fit --holdout K` to test extrapolation")
    params = ctx.chinchilla_params()
    if not params:
        raise Skip("no parametric (chinchilla) law in the fit to predict with")
    fitted = _fit_points(ctx)
    fitted_pred = fitview.chinchilla_loss(params, fitted["N"], fitted["D"])
    held = pd.DataFrame(holdout["runs"])
    laws = [name for name in (holdout.get("mape") or {}) if name in set().union(*[set(p) for p in held["pred"]])]
    laws = sorted(laws, key=lambda name: name != "chinchilla")
    fig, (ax, ax_res) = new_figure(3.9, nrows=2, height_ratios=[2.1, 1])

    ax.scatter(fitted_pred, fitted["loss"], s=9, c=[ctx.colours(n) for n in fitted["N"]], lw=0, label="fitted runs")
    held_pred = np.array([p.get("chinchilla", np.nan) for p in held["pred"]], dtype=float)
    ax.scatter(
        held_pred,
        held["loss"],
        s=26,
        marker="D",
        facecolor="none",
        edgecolor=APPROACH_COLOURS["chinchilla"],
        lw=1.0,
        label="held-out runs",
        zorder=4,
    )
    everything = np.concatenate([fitted_pred, fitted["loss"], held_pred, held["loss"]])
    everything = everything[np.isfinite(everything)]
    low, high = everything.min() * 0.98, everything.max() * 1.02
    ax.plot([low, high], [low, high], color="0.4", lw=0.7, ls="--", zorder=1, label="perfect prediction")
    ax.set(
        xlim=(low, high),
        ylim=(low, high),
        xlabel="predicted loss, Chinchilla law (nats/token)",
        ylabel="measured loss (nats/token)",
    )
    ax.set_aspect("equal", adjustable="box")
    ax.legend(loc="upper left")
    ax.set_title(ctx.group_title("Extrapolation to held-out runs"))
    ctx.colours.colorbar(fig, ax)

    ax_res.axhline(0, color="0.4", lw=0.7, ls="--")
    ax_res.scatter(fitted["C"], 100 * (fitted["loss"] / fitted_pred - 1), s=6, color="0.6", lw=0, label="fitted")
    for index, law in enumerate(laws):
        predicted = np.array([p.get(law, np.nan) for p in held["pred"]], dtype=float)
        mape = float(holdout["mape"][law])  # fit.json stores it in percent
        ax_res.scatter(
            held["C"],
            100 * (held["loss"] / predicted - 1),
            s=18,
            marker="Dos^v"[index % 5],
            facecolor="none",
            edgecolor=APPROACH_COLOURS.get(law, f"C{index}"),
            lw=0.9,
            label=f"{law} (MAPE {mape:.1f}%)",
        )
    low, high = ax_res.get_ylim()
    ax_res.set_ylim(low, high + 0.7 * (high - low))  # headroom for the legend above the points
    ax_res.set(xscale="log", xlabel=COMPUTE_LABEL, ylabel="measured/predicted − 1 (%)")
    ax_res.yaxis.label.set_size(6.5)
    ax_res.legend(loc="upper left", fontsize=6.2, ncol=2, handletextpad=0.2, columnspacing=0.8)
    ax_res.grid(True, which="major")
    return fig


# ---- 6. compression ---------------------------------------------------------------------------------


def compression(ctx: Context) -> Figure:
    """Validation bits per byte against compute, next to lz4, zlib, bz2 and lzma on the same text."""
    runs, curves = ctx.runs, ctx.curves
    has_curves = curves is not None and "val_bpb" in curves.columns and curves["val_bpb"].notna().any()
    if not has_curves and ("val_bpb" not in runs.columns or runs["val_bpb"].isna().all()):
        raise Skip("no bits-per-byte measurements (val_bpb); this needs a results directory from `scale sweep`")
    columns = [f"bpb_{name}" for name in BASELINES if f"bpb_{name}" in runs.columns]
    if not columns or runs[columns].isna().all().all():
        raise Skip("no compressor baselines (bpb_lz4 ... bpb_lzma) in runs.parquet")
    dataset = _main_dataset(runs)
    runs_here = runs if dataset is None else runs[runs["dataset"] == dataset]
    fig, (ax,) = new_figure(2.7)
    if has_curves:
        here = curves[curves["run_id"].isin(runs_here["run_id"])].dropna(subset=["val_bpb"])
        for _, curve in here.groupby("run_id", sort=False):
            ax.plot(curve["flops"], curve["val_bpb"], color=ctx.colours(curve["N"].iloc[0]), lw=0.7, alpha=0.85)
        compute, bpb = here["flops"].to_numpy(), here["val_bpb"].to_numpy()
    else:
        here = runs_here.dropna(subset=["val_bpb"])
        ax.scatter(here["C"], here["val_bpb"], s=8, c=[ctx.colours(n) for n in here["N"]], lw=0)
        compute, bpb = here["C"].to_numpy(), here["val_bpb"].to_numpy()
    baselines = {
        name: float(runs_here[f"bpb_{name}"].dropna().iloc[0])
        for name in BASELINES
        if f"bpb_{name}" in runs_here.columns and runs_here[f"bpb_{name}"].notna().any()
    }
    if not baselines:
        raise Skip(f"no compressor baselines for data set {dataset}")
    lines = {name: (value, *COMPRESSOR_STYLES[name]) for name, value in baselines.items()}
    entropy = _entropy_rate(runs_here)
    if entropy is not None:
        lines["entropy rate"] = (entropy, "black", "-")
    ax.set(xscale="log", xlabel=COMPUTE_LABEL, ylabel=BPB_LABEL)
    ax.set_xlim(compute.min(), compute.max())
    low = min(float(np.nanmin(bpb)), *(value for value, _, _ in lines.values()))
    high = max(max(baselines.values()), float(np.nanmin(bpb)))
    ax.set_ylim(low - 0.08 * (high - low), high + 0.35 * (high - low))
    for name, (value, colour, style) in lines.items():
        ax.axhline(value, color=colour, ls=style, lw=1.0 if name in baselines else 0.7, zorder=1)
    _label_lines(ax, {f"{name} {value:.2f}": (value, colour) for name, (value, colour, _) in lines.items()})
    title = "The model as a compressor" + (f" ({dataset})" if dataset else "")
    ax.set_title(title)
    ax.grid(True, which="major", axis="x")
    ctx.colours.colorbar(fig, ax)
    return fig


def _entropy_rate(runs: pd.DataFrame) -> float | None:
    """The source's true entropy in bits per byte (synthetic Markov data), the floor no compressor beats."""
    if "entropy_rate_bits" not in runs.columns:
        return None
    values = pd.to_numeric(runs["entropy_rate_bits"], errors="coerce").dropna()
    return float(values.iloc[0]) if len(values) else None


def _label_lines(ax, labels: dict[str, tuple[float, str]], gap: float = 0.065) -> None:
    """Write each horizontal line's label at the left, just above it, pushed up where labels would collide.

    On the lines themselves rather than in a legend: a legend would hide the curves in a one-column figure.
    """
    low, high = ax.get_ylim()
    placed = -1.0
    for text, (value, colour) in sorted(labels.items(), key=lambda item: item[1][0]):
        where = max((value - low) / (high - low), placed + gap)
        placed = where
        ax.annotate(
            text,
            (0.015, where),
            xycoords="axes fraction",
            xytext=(0, 1.5),
            textcoords="offset points",
            va="bottom",
            fontsize=6.5,
            color=colour,
        )


def _main_dataset(runs: pd.DataFrame) -> str | None:
    if "dataset" not in runs.columns or runs["dataset"].isna().all():
        return None
    return str(runs["dataset"].value_counts().idxmax())


# ---- 7. data axis -----------------------------------------------------------------------------------


def data_axis(ctx: Context) -> Figure:
    """One compute-efficient frontier per data set, each labelled with how well lzma compresses it."""
    runs, curves = ctx.inputs.runs, ctx.inputs.curves
    datasets = sorted(runs["dataset"].dropna().unique()) if "dataset" in runs.columns else []
    if len(datasets) < 2:
        only = f" ({datasets[0]})" if datasets else ""
        raise Skip(f"the sweep uses one data set{only}; data_axis needs runs on several")
    in_bpb = "val_bpb" in runs.columns and runs.groupby("dataset")["val_bpb"].apply(lambda v: v.notna().any()).all()
    column, label = ("val_bpb", BPB_LABEL) if in_bpb else ("val_loss", LOSS_LABEL)
    fig, (ax,) = new_figure(2.7)
    lowest = []
    for index, dataset in enumerate(datasets):
        colour = matplotlib.colormaps["tab10"](index % 10)
        ids = runs.loc[runs["dataset"] == dataset, "run_id"]
        if curves is not None and column in curves.columns:
            points = curves[curves["run_id"].isin(ids)].dropna(subset=[column])
            compute, value = points["flops"].to_numpy(), points[column].to_numpy()
        else:
            points = runs[runs["dataset"] == dataset].dropna(subset=[column if column in runs else "loss"])
            compute, value = points["C"].to_numpy(), points[column if column in runs else "loss"].to_numpy()
        if compute.size == 0:
            continue
        finals = runs[runs["dataset"] == dataset]
        ax.scatter(
            finals["C"],
            finals[column] if column in finals else finals["loss"],
            s=6,
            color=colour,
            alpha=0.45,
            lw=0,
        )
        front_c, front_v = frontier(compute, value)
        ax.plot(front_c, front_v, color=colour, lw=1.3, label=_dataset_label(dataset, finals))
        lowest.append(front_v)
        if column == "val_bpb" and "bpb_lzma" in finals.columns and finals["bpb_lzma"].notna().any():
            lzma = float(finals["bpb_lzma"].dropna().iloc[0])
            ax.axhline(lzma, color=colour, lw=0.8, ls=(0, (1, 1.5)), zorder=1)
            lowest.append(np.array([lzma]))
    if not lowest:
        raise Skip("no runs with a measured loss in any data set")
    ax.set(xscale="log", yscale="log", xlabel=COMPUTE_LABEL, ylabel=label)
    everything = np.concatenate(lowest)
    _log_ylim(ax, everything.min() * 0.93, np.quantile(everything, 0.9) * 1.1)
    ax.set_title("Frontier per data set")
    if column == "val_bpb":
        ax.plot([], [], color="0.3", lw=0.8, ls=(0, (1, 1.5)), label="lzma on the same text")
    ax.legend(loc="upper right", title="data set (lzma bits/byte)", title_fontsize=6.5, fontsize=6.5)
    ax.grid(True, which="major")
    return fig


def _dataset_label(dataset: str, runs: pd.DataFrame) -> str:
    if "bpb_lzma" in runs.columns and runs["bpb_lzma"].notna().any():
        return f"{dataset} ({float(runs['bpb_lzma'].dropna().iloc[0]):.2f})"
    return str(dataset)


FIGURE_FUNCTIONS = {
    "loss_vs_compute": loss_vs_compute,
    "isoflop": isoflop,
    "optimal_allocation": optimal_allocation,
    "parametric_fit": parametric_fit,
    "extrapolation": extrapolation,
    "compression": compression,
    "data_axis": data_axis,
}
