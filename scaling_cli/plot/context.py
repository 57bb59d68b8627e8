"""What every figure function receives (Context: inputs, size colours, fit view, the group's runs), the labels
and markers the figures share, and the Skip a figure raises when the data cannot support it."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from scaling_cli.plot.fitview import FitView
from scaling_cli.plot.inputs import PlotInputs
from scaling_cli.plot.style import SizeColours, human_count

COMPUTE_LABEL = "training compute C (FLOPs)"
PARAMS_LABEL = "parameters N"
TOKENS_LABEL = "training tokens D"
LOSS_LABEL = "validation loss (nats/token)"
BPB_LABEL = "validation bits per byte"
CHINCHILLA_SLOPE = 0.5
KAPLAN_SLOPE_N = 0.73
RUN_MARKER = {"marker": "o", "ls": "none", "ms": 3.5, "mec": "black", "mew": 0.4}


class Skip(Exception):
    """The data cannot support this figure; the message says why in one line."""


@dataclass
class Context:
    """What every figure function receives: the inputs, the shared size colours and the fit group it draws.

    `runs` and the curves are that group's rows when the fit was made per group (`--by dataset`), so a
    single-law figure never mixes data sets; `inputs` keeps every row for data_axis.
    """

    inputs: PlotInputs
    colours: SizeColours
    view: FitView
    runs: pd.DataFrame
    curves: pd.DataFrame | None
    bpb_curves: pd.DataFrame | None

    @property
    def loss_label(self) -> str:
        return LOSS_LABEL if self.inputs.from_results_dir else "loss (nats/token)"

    def title(self, title: str) -> str:
        return title if self.view.name in ("", "all") else f"{self.view.name}: {title}"

    def require_fit(self) -> None:
        if not self.view.exists:
            raise Skip(self.inputs.fit_problem or "no fit.json; run `scale fit` first")

    def entropy_rate(self) -> float | None:
        """The source's known entropy rate in the loss's units (nats per token), for a known-answer source."""
        if not self.inputs.from_results_dir:
            return None
        bits = _entropy_rate(self.runs)
        if bits is None or "bytes_per_token" not in self.runs.columns:
            return None
        per_token = pd.to_numeric(self.runs["bytes_per_token"], errors="coerce").dropna()
        return bits * math.log(2) * float(per_token.median()) if not per_token.empty else None

    def entropy_line(self, ax, horizontal: bool = True) -> list[Line2D]:
        """The known entropy rate as a line (the floor no model can beat) and its legend handle."""
        entropy = self.entropy_rate()
        if entropy is None:
            return []
        draw = ax.axhline if horizontal else ax.axvline
        draw(entropy, color="black", lw=0.8, ls=(0, (1, 1)), zorder=1)
        return [Line2D([], [], color="black", lw=0.8, ls=(0, (1, 1)), label=f"source entropy rate {entropy:.3f}")]

    def require_sizes(self) -> None:
        sizes = np.unique(self.runs["N"])
        if len(sizes) < 2:
            only = f"one (N = {human_count(sizes[0])})" if len(sizes) else "none"
            raise Skip(f"needs several model sizes; this sweep has {only}")


def make_context(inputs: PlotInputs) -> Context:
    view = FitView(inputs.fit)
    runs, curves, bpb_curves = inputs.runs, inputs.curves, inputs.bpb_curves
    if view.exists and "group" in runs.columns and (runs["group"] == view.name).any():
        runs = runs[runs["group"] == view.name]
        ids = set(runs["run_id"])
        curves = None if curves is None else curves[curves["run_id"].isin(ids)]
        bpb_curves = None if bpb_curves is None else bpb_curves[bpb_curves["run_id"].isin(ids)]
    return Context(inputs, SizeColours(list(inputs.runs["N"])), view, runs, curves, bpb_curves)


def _has_rows(frame: pd.DataFrame | None) -> bool:
    return frame is not None and not frame.empty


def _draw_runs_against_compute(ctx: Context, ax, curves: pd.DataFrame | None, column: str) -> tuple:
    """Each run's curve (or final point) coloured by its size; returns the (compute, value) drawn."""
    if _has_rows(curves):
        for _, curve in curves.groupby("run_id", sort=False):
            ax.plot(curve["C"], curve["loss"], color=ctx.colours(curve["N"].iloc[0]), lw=0.7, alpha=0.85)
        return curves["C"].to_numpy(), curves["loss"].to_numpy()
    runs = ctx.runs.dropna(subset=[column])
    ax.scatter(runs["C"], runs[column], s=10, c=[ctx.colours(n) for n in runs["N"]], edgecolor="black", lw=0.3)
    return runs["C"].to_numpy(), runs[column].to_numpy()


def _entropy_rate(runs: pd.DataFrame) -> float | None:
    """The source's true entropy in bits per byte (synthetic Markov data), the floor no compressor beats."""
    if "entropy_rate_bits" not in runs.columns:
        return None
    values = pd.to_numeric(runs["entropy_rate_bits"], errors="coerce").dropna()
    return float(values.iloc[0]) if len(values) else None
