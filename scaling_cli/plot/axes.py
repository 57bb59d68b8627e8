"""Axis helpers shared by the figures: readable log ticks, limits fitted to the data, and one-line notes."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, MaxNLocator, NullFormatter, NullLocator

from scaling_cli.plot.style import human_count

NOTE_SIZE = 5.5
NOTE_COLOUR = "0.25"
NOTE_INDENT_IN = 0.5  # where the axes, and so the notes, start: the y label and tick labels


def title_with_notes(fig: Figure, ax, title: str, notes: list[str]) -> None:
    """Title the figure; under the title, one line per law the figure does not draw and why.

    With notes the title moves up to the figure and the notes take the axes' title place, so constrained
    layout keeps room for both and neither covers data or the legend.
    """
    if not notes:
        ax.set_title(title)
        return
    fig.suptitle(title, fontsize=ax.title.get_fontsize())
    lines = [line for note in notes for line in wrap_to_width(fig, note, fig.get_figwidth() - NOTE_INDENT_IN)]
    ax.set_title("\n".join(lines), loc="left", fontsize=NOTE_SIZE, color=NOTE_COLOUR, style="italic")


CONTINUED = "   "  # the start of a note's wrapped line (figure_notes joins it back)


def wrap_to_width(fig: Figure, text: str, width_in: float) -> list[str]:
    """`text` wrapped at words into lines that each fit `width_in` inches; nothing is cut."""
    renderer = fig.canvas.get_renderer()
    probe = fig.text(0, 0, "", fontsize=NOTE_SIZE, style="italic")
    lines: list[str] = []
    try:
        for word in text.split(" "):
            candidate = f"{lines[-1]} {word}" if lines else word
            probe.set_text(candidate)
            if lines and probe.get_window_extent(renderer).width / fig.dpi > width_in:
                lines.append(CONTINUED + word)
            elif lines:
                lines[-1] = candidate
            else:
                lines.append(word)
        return lines
    finally:
        probe.remove()


def figure_title(fig: Figure) -> str:
    """The title `title_with_notes` gave the figure."""
    return fig.get_suptitle() or fig.axes[0].get_title()


def figure_notes(fig: Figure) -> list[str]:
    """The notes `title_with_notes` put on a figure."""
    for ax in fig.axes:  # the figures use the left title for notes only
        if ax.get_title(loc="left"):
            notes: list[str] = []
            for line in ax.get_title(loc="left").split("\n"):
                if line.startswith(CONTINUED) and notes:
                    notes[-1] += " " + line.removeprefix(CONTINUED)
                else:
                    notes.append(line)
            return notes
    return []


def log_ylim(ax, low: float, high: float) -> None:
    """Set a log y range of less than a decade or so, with plain-number ticks (3, 3.5, 4) instead of 10^x."""
    ax.set_ylim(low, high)
    ticks = [t for t in MaxNLocator(nbins=6, steps=[1, 2, 2.5, 5, 10]).tick_values(low, high) if low <= t <= high]
    ax.yaxis.set_major_locator(FixedLocator(ticks))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.yaxis.set_minor_locator(NullLocator())


def loss_ylim(ax, loss: np.ndarray, from_curves: bool, also: np.ndarray | None = None) -> None:
    """A log loss range from the lowest loss (of `loss` and `also`) to the worst final loss (or the 90th
    percentile of curves)."""
    # Losses near initialisation would squash the interesting range of a curve plot.
    lowest = [np.nanmin(loss)] + ([np.nanmin(also)] if also is not None and np.isfinite(also).any() else [])
    low = float(max(min(lowest), 1e-9))
    high = float(np.nanquantile(loss, 0.9)) * 1.1 if from_curves else float(np.nanmax(loss)) * 1.03
    log_ylim(ax, low * 0.95, max(high, low * 1.3))


def limits_of(values, pad: float = 0.08, include=()) -> tuple[float, float]:
    """A linear range holding every finite value (and `include`), padded by `pad` of its span on each side."""
    values = np.asarray([*np.ravel(values), *include], dtype=float)
    values = values[np.isfinite(values)]
    low, high = float(values.min()), float(values.max())
    span = high - low or abs(high) or 1.0
    return low - pad * span, high + pad * span


def count_axis(axis, low: float, high: float) -> None:
    """Label a log axis of counts as 200k, 1M, 5B, with as many ticks per decade as leave room to read them."""
    decades = np.log10(high / low)
    subs = (1.0, 2.0, 5.0) if decades <= 1.6 else (1.0, 3.0) if decades <= 2.6 else (1.0,)
    axis.set_major_locator(LogLocator(base=10, subs=subs))
    axis.set_major_formatter(FuncFormatter(lambda value, _: human_count(value)))
    axis.set_minor_formatter(NullFormatter())


def power_of_ten(value: float, minor: bool = False) -> str:
    """`$10^{14}$` or `$3\\times10^{14}$`; minor ticks get a label only on a colour bar spanning little."""
    exponent = int(np.floor(np.log10(value) + 1e-9))
    mantissa = value / 10**exponent
    if minor and round(mantissa, 1) not in (2.0, 3.0, 5.0):
        return ""
    if abs(mantissa - 1) < 1e-6:
        return f"$10^{{{exponent}}}$"
    return f"${mantissa:.2g}\\times10^{{{exponent}}}$"


def power_of_ten_colorbar(bar, label: str) -> None:
    bar.set_label(label)
    bar.ax.tick_params(labelsize=6.5)
    bar.ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: power_of_ten(value)))
    bar.ax.yaxis.set_minor_formatter(FuncFormatter(lambda value, _: power_of_ten(value, minor=True)))
