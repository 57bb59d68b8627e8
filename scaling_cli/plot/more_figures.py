"""Figures 5-7 of a scaling study: extrapolation (held-out runs against predictions), compression (bits per
byte beside the compressors) and data_axis (one frontier per data set); see `figures` for the others."""

from __future__ import annotations

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from scaling_cli.plot import fitview
from scaling_cli.plot.axes import limits_of, log_ylim, title_with_notes
from scaling_cli.plot.context import (
    BPB_LABEL,
    COMPUTE_LABEL,
    LOSS_LABEL,
    Context,
    Skip,
    _draw_runs_against_compute,
    _entropy_rate,
    _has_rows,
)
from scaling_cli.plot.fitview import FitView
from scaling_cli.plot.inputs import BASELINES
from scaling_cli.plot.style import APPROACH_COLOURS, COMPRESSOR_STYLES, new_figure


# ---- 5. extrapolation -------------------------------------------------------------------------------

LAW_MARKERS = {"chinchilla": "D", "kaplan": "s", "linear": "^"}


def extrapolation(ctx: Context) -> Figure:
    """Measured against predicted loss of runs each law was not fitted on, and the relative errors beneath."""
    ctx.require_fit()
    test = ctx.view.extrapolation()
    if test is None:
        raise Skip(ctx.view.no_extrapolation_reason())
    if all(_baseline(held.law) for held in test.series):
        why = "; ".join(test.notes) or "none was fitted"
        raise Skip(f"no law but the linear baseline predicted the held-out runs ({why})")
    fig, (ax, ax_res) = new_figure(4.3, nrows=2, height_ratios=[2.0, 1])
    handles, shown, errors = [], [], []
    in_sample = ctx.view.in_sample_errors()
    if in_sample is not None:
        ax_res.scatter(in_sample["C"], 100 * in_sample["error"], s=6, color="0.65", lw=0, zorder=2)
        handles.append(
            Line2D([], [], ls="none", marker="o", ms=3, mfc="0.65", mec="none", label="all runs, Approach 3 in sample")
        )
    for index, held in enumerate(test.series):
        style = _held_out_style(held.law, index)
        error = 100 * (held.measured / held.predicted - 1)
        ax.scatter(held.predicted, held.measured, **style)
        ax_res.scatter(held.compute, error, **style)
        if not _baseline(held.law):  # the baseline may miss by a factor; it must not set the scale
            shown.append(np.concatenate([held.predicted, held.measured]))
        errors.append((held.law, error))
        handles.append(_held_out_handle(held, style))
    low, high = limits_of(np.concatenate(shown or [np.concatenate([h.predicted, h.measured]) for h in test.series]))
    ax.plot([low, high], [low, high], color="0.4", lw=0.7, ls="--", zorder=1)
    handles.append(Line2D([], [], color="0.4", lw=0.7, ls="--", label="measured = predicted"))
    ax.set(xlim=(low, high), ylim=(low, high), xlabel="predicted loss (nats/token)", ylabel="measured loss")
    if ctx.entropy_rate() is not None and low <= ctx.entropy_rate() <= high:
        handles += ctx.entropy_line(ax)
    ax_res.axhline(0, color="0.4", lw=0.7, ls="--")
    if test.cut is not None:
        ax_res.axvline(test.cut, color="0.3", lw=0.7, ls=":")
    notes = test.notes + _systematic_bias(test.series, errors) + _residual_limits(ax_res, errors, in_sample)
    ax_res.set(xscale="log", xlabel=COMPUTE_LABEL, ylabel="measured/predicted − 1 (%)")
    ax_res.yaxis.label.set_size(6.5)
    ax_res.grid(True, which="major")
    title_with_notes(fig, ax, ctx.title(test.title), [test.how, *notes])
    fig.legend(handles=handles, loc="outside lower center", ncol=2, fontsize=5.8, handletextpad=0.3)
    return fig


def _systematic_bias(series, errors: list[tuple[str, np.ndarray]]) -> list[str]:
    """A note per law whose held-out errors all share one sign: a bias, not noise (and whether it grows)."""
    notes = []
    for held, (law, error) in zip(series, errors):
        keep = np.isfinite(error) & np.isfinite(held.compute)
        error, compute = error[keep], held.compute[keep]
        if _baseline(law) or len(error) < 3 or not (np.all(error > 0) or np.all(error < 0)):
            continue
        side = "above" if error[0] > 0 else "below"
        order = np.argsort(compute)
        grows = abs(error[order[-1]]) > abs(error[order[0]])
        notes.append(
            f"systematic bias of {fitview.LAW_NAMES.get(law, law)}: every held-out run is {side} its prediction "
            f"({error.min():+.2g}% to {error.max():+.2g}%)" + (", growing with compute" if grows else "")
        )
    return notes


def _held_out_style(law: str, index: int) -> dict:
    colour = APPROACH_COLOURS.get(law, f"C{index}")
    return {"marker": LAW_MARKERS.get(law, "o"), "s": 24, "color": colour, "ec": "black", "lw": 0.4, "zorder": 4}


def _held_out_handle(held, style: dict) -> Line2D:
    mape = "" if held.mape is None else f": MAPE {held.mape:.2g}%"
    chosen = ", chosen" if held.recommended else ""
    return Line2D(
        [],
        [],
        ls="none",
        marker=style["marker"],
        ms=4.5,
        mfc=style["color"],
        mec="black",
        mew=0.4,
        label=f"{fitview.LAW_NAMES.get(held.law, held.law)}{chosen}{mape}",
    )


def _baseline(name: str) -> bool:
    """A comparison law (the linear baseline): it may miss by a factor and must not set a figure's scale."""
    from scaling_cli.errors import FitError
    from scaling_cli.fit import law as registry

    try:
        return registry.get(name).baseline
    except FitError:
        return False


def _residual_limits(ax, errors: list[tuple[str, np.ndarray]], in_sample) -> list[str]:
    """Fit the error axis to the laws' errors; a baseline far off the scale is noted, not let squash the rest."""
    laws = [error for law, error in errors if not _baseline(law)] or [error for _, error in errors]
    values = [*laws, *([] if in_sample is None else [100 * in_sample["error"].to_numpy()])]
    low, high = limits_of(np.concatenate(values), pad=0.12, include=(0.0,))
    notes = []
    for law, error in errors:
        finite = error[np.isfinite(error)]
        if _baseline(law) and finite.size and (finite.min() < low or finite.max() > high):
            worst = finite[np.argmax(np.abs(finite))]
            notes.append(f"{fitview.LAW_NAMES.get(law, law)} off the scale: errors up to {worst:+.3g}%")
    ax.set_ylim(low, high)
    return notes


# ---- 6. compression ---------------------------------------------------------------------------------


def compression(ctx: Context) -> Figure:
    """Validation bits per byte against compute, next to lz4, zlib, bz2 and lzma on the same text."""
    runs = ctx.runs
    has_curves = _has_rows(ctx.bpb_curves)
    if not has_curves and ("val_bpb" not in runs.columns or runs["val_bpb"].isna().all()):
        raise Skip("no bits-per-byte measurements (val_bpb); this needs a results directory from `scale sweep`")
    columns = [f"bpb_{name}" for name in BASELINES if f"bpb_{name}" in runs.columns]
    if not columns or runs[columns].isna().all().all():
        raise Skip("no compressor baselines (bpb_lz4 ... bpb_lzma) in runs.parquet")
    dataset = _main_dataset(runs)
    here = runs if dataset is None else runs[runs["dataset"] == dataset]
    curves = ctx.bpb_curves[ctx.bpb_curves["run_id"].isin(here["run_id"])] if has_curves else None
    fig, (ax,) = new_figure(2.7)
    compute, bpb = _draw_runs_against_compute(ctx, ax, curves, "val_bpb")
    baselines = {
        name: float(here[f"bpb_{name}"].dropna().iloc[0])
        for name in BASELINES
        if f"bpb_{name}" in here.columns and here[f"bpb_{name}"].notna().any()
    }
    if not baselines:
        raise Skip(f"no compressor baselines for data set {dataset}")
    lines = {name: (value, *COMPRESSOR_STYLES[name]) for name, value in baselines.items()}
    entropy = _entropy_rate(here)
    if entropy is not None:
        lines["entropy rate"] = (entropy, "black", "-")
    ax.set(xscale="log", xlabel=COMPUTE_LABEL, ylabel=BPB_LABEL)
    lowest, highest = float(compute.min()), float(compute.max())
    one_compute = highest <= lowest  # every run at one compute: show a factor of two either side of it
    ax.set_xlim(*((lowest / 2, highest * 2) if one_compute else (lowest, highest)))
    low = min(float(np.nanmin(bpb)), *(value for value, _, _ in lines.values()))
    high = max(max(baselines.values()), float(np.nanmin(bpb)))
    ax.set_ylim(low - 0.08 * (high - low), high + 0.35 * (high - low))
    for name, (value, colour, style) in lines.items():
        ax.axhline(value, color=colour, ls=style, lw=1.0 if name in baselines else 0.7, zorder=1)
    _label_lines(ax, {f"{name} {value:.2f}": (value, colour) for name, (value, colour, _) in lines.items()})
    ax.set_title("The model as a compressor" + (f" ({dataset})" if dataset else ""))
    ax.grid(True, which="major", axis="x")
    ctx.colours.colorbar(fig, ax)
    return fig


def _label_lines(ax, labels: dict[str, tuple[float, str]], gap: float = 0.065, step: float = 0.17) -> None:
    """Write each horizontal line's label just above it, at the left; a label that would collide with one below
    moves right, into the next free column, so it stays on its own line (pushed up, it sat above the next line).

    On the lines themselves rather than in a legend: a legend would hide the curves in a one-column figure.
    """
    low, high = ax.get_ylim()
    columns: list[float] = []  # the height of the last label placed in each column
    for text, (value, colour) in sorted(labels.items(), key=lambda item: item[1][0]):
        where = (value - low) / (high - low)
        column = next((i for i, last in enumerate(columns) if where - last >= gap), len(columns))
        columns[column : column + 1] = [where]
        ax.annotate(
            text,
            (0.015 + step * column, where),
            xycoords="axes fraction",
            xytext=(0, 1.5),
            textcoords="offset points",
            va="bottom",
            fontsize=6.5,
            color=colour,
            bbox={"facecolor": "white", "alpha": 0.75, "lw": 0, "pad": 0.4},  # legible over a curve
        )


def _main_dataset(runs: pd.DataFrame) -> str | None:
    if "dataset" not in runs.columns or runs["dataset"].isna().all():
        return None
    return str(runs["dataset"].value_counts().idxmax())


# ---- 7. data axis -----------------------------------------------------------------------------------


def data_axis(ctx: Context) -> Figure:
    """The fit's compute-efficient frontier per data set, each labelled with how well lzma compresses it."""
    runs = ctx.inputs.runs
    datasets = sorted(runs["dataset"].dropna().unique()) if "dataset" in runs.columns else []
    if len(datasets) < 2:
        only = f" ({datasets[0]})" if datasets else ""
        raise Skip(f"the sweep uses one data set{only}; data_axis needs runs on several")
    ctx.require_fit()
    if ctx.inputs.fit is None or ctx.inputs.fit.by != "dataset":
        raise Skip("the fit mixes data sets; fit each on its own with `scale fit --by dataset`")
    in_bpb = "bytes_per_token" in runs.columns and runs["bytes_per_token"].notna().all()
    fig, (ax,) = new_figure(2.8)
    drawn, notes, shown = [], [], []  # shown: every run's point, which the axes must hold too
    for index, dataset in enumerate(datasets):
        colour = matplotlib.colormaps["tab10"](index % 10)
        finals = runs[runs["dataset"] == dataset]
        scale = 1 / (np.log(2) * float(finals["bytes_per_token"].median())) if in_bpb else 1.0
        ax.scatter(finals["C"], finals["loss"] * scale, s=7, color=colour, alpha=0.5, lw=0)
        shown.append(finals["loss"].to_numpy() * scale)
        view = FitView(ctx.inputs.fit, dataset)
        frontier = view.frontier()
        if frontier is None:
            notes += view.notes(("envelope",))
            drawn.append(finals["loss"].to_numpy() * scale)
            continue
        values = frontier["loss"].to_numpy() * scale
        ax.plot(frontier["C"], values, color=colour, lw=1.3, label=_dataset_label(dataset, finals))
        drawn.append(values)
        if in_bpb and "bpb_lzma" in finals.columns and finals["bpb_lzma"].notna().any():
            lzma = float(finals["bpb_lzma"].dropna().iloc[0])
            ax.axhline(lzma, color=colour, lw=0.8, ls=(0, (1, 1.5)), zorder=1)
            drawn.append(np.array([lzma]))
    everything = np.concatenate(drawn)
    ax.set(xscale="log", yscale="log", xlabel=COMPUTE_LABEL, ylabel=BPB_LABEL if in_bpb else LOSS_LABEL)
    # The 0.9 quantile of the frontiers alone cut off the runs above them (the early, worse ones).
    top = max(np.quantile(everything, 0.9) * 1.1, np.concatenate(shown).max() * 1.05)
    log_ylim(ax, everything.min() * 0.93, top)
    title_with_notes(fig, ax, "Efficient frontier per data set", notes)
    if in_bpb:
        ax.plot([], [], color="0.3", lw=0.8, ls=(0, (1, 1.5)), label="lzma on the same text")
    if ax.get_legend_handles_labels()[0]:
        # Below the axes, as in the other figures: inside, long variant names cover the frontiers.
        handles, labels = ax.get_legend_handles_labels()
        fig.legend(
            handles,
            labels,
            loc="outside lower center",
            ncol=1,
            title="data set (lzma bits/byte)",
            title_fontsize=6.3,
            fontsize=6.3,
        )
    ax.grid(True, which="major")
    return fig


def _dataset_label(dataset: str, runs: pd.DataFrame) -> str:
    if "bpb_lzma" in runs.columns and runs["bpb_lzma"].notna().any():
        return f"{dataset} ({float(runs['bpb_lzma'].dropna().iloc[0]):.2f})"
    return str(dataset)
