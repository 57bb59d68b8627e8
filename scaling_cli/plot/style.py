"""House style of every figure: paper-column size, fonts, the model-size colour map, and saving."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.cm
import matplotlib.ticker
import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from scaling_cli.errors import StoreError

WIDTH_IN = 3.4
PNG_DPI = 200
FORMATS = ("png", "pdf", "svg")

RC = {
    "font.size": 7.5,
    "axes.titlesize": 8,
    "axes.labelsize": 7.5,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "legend.fontsize": 7,
    "legend.frameon": False,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.linewidth": 0.6,
    "lines.linewidth": 1.0,
    "lines.markersize": 3.5,
    "xtick.major.width": 0.6,
    "ytick.major.width": 0.6,
    "xtick.minor.width": 0.4,
    "ytick.minor.width": 0.4,
    "grid.linewidth": 0.4,
    "grid.alpha": 0.35,
    # Type 42 keeps text editable in PDF editors and accepted by paper submission systems.
    "pdf.fonttype": 42,
    "svg.fonttype": "path",
}

# One fixed colour per fitting approach and per compressor, so a reader can compare figures at a glance.
APPROACH_COLOURS = {
    "chinchilla": "#d62728",
    "envelope": "#1f77b4",
    "isoflop": "#2ca02c",
    "kaplan": "#9467bd",
    "linear": "#7f7f7f",
}
APPROACH_LABELS = {
    "chinchilla": "Approach 3: parametric L(N, D)",
    "envelope": "Approach 1: envelope",
    "isoflop": "Approach 2: IsoFLOP",
    "kaplan": "Kaplan L(C)",
    "linear": "linear baseline",
}
COMPRESSOR_STYLES = {
    "lz4": ("#8c564b", (0, (1, 1))),
    "zlib": ("#e377c2", (0, (4, 1.5))),
    "bz2": ("#7f7f7f", (0, (6, 1.5, 1, 1.5))),
    "lzma": ("#17becf", "-"),
}


class SizeColours:
    """Maps a parameter count to a colour on viridis over log N, shared by all figures of one call."""

    def __init__(self, sizes):
        finite = np.asarray([s for s in sizes if np.isfinite(s) and s > 0], dtype=float)
        low, high = (float(finite.min()), float(finite.max())) if finite.size else (1.0, 10.0)
        if high <= low * 1.01:
            low, high = low / 2, high * 2
        self.norm = LogNorm(vmin=low, vmax=high)
        self.cmap = matplotlib.colormaps["viridis"]

    def __call__(self, size: float):
        # Stop short of viridis' pale yellow end, which vanishes on white paper.
        return self.cmap(0.92 * float(self.norm(size)))

    def colorbar(self, fig: Figure, ax, label: str = "parameters N") -> None:
        mappable = matplotlib.cm.ScalarMappable(norm=self.norm, cmap=truncated(self.cmap, 0.0, 0.92))
        bar = fig.colorbar(mappable, ax=ax, pad=0.02, fraction=0.06, aspect=25)
        bar.set_label(label)
        bar.ax.tick_params(labelsize=6.5)
        bar.ax.yaxis.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        bar.ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda value, _: human_count(value)))
        bar.ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())


def human_count(value: float) -> str:
    """1e3 -> 1k, 2.5e6 -> 2.5M, 7e10 -> 70B: the way model sizes are written in papers."""
    for scale, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{suffix}"
    return f"{value:.3g}"


def truncated(cmap, bottom: float, top: float, name: str | None = None):
    """The part of a colour map (a name or a map) between `bottom` and `top`, as a map of its own."""
    from matplotlib.colors import ListedColormap

    cmap = matplotlib.colormaps[cmap] if isinstance(cmap, str) else cmap
    return ListedColormap(cmap(np.linspace(bottom, top, 256)), name=name or f"{cmap.name}_part")


def new_figure(height_in: float, nrows: int = 1, height_ratios=None, sharex: bool = False):
    """A constrained-layout figure one paper column wide, with `nrows` stacked axes."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        nrows,
        1,
        figsize=(WIDTH_IN, height_in),
        layout="constrained",
        sharex=sharex,
        gridspec_kw={"height_ratios": height_ratios} if height_ratios else None,
        squeeze=False,
    )
    return fig, list(axes[:, 0])


def save(fig: Figure, path: Path, fmt: str) -> None:
    """Write the figure atomically, at the paper DPI for raster output, and free its memory."""
    import matplotlib.pyplot as plt

    from scaling_cli.atomic import write_stream

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_stream(
            path,
            lambda handle: fig.savefig(
                handle, format=fmt, dpi=PNG_DPI if fmt == "png" else None, metadata=_metadata(fmt)
            ),
        )
    except OSError as exc:
        raise StoreError(
            str(path.parent), "--out", f"cannot write figures ({exc.strerror}); choose a writable folder"
        ) from None
    finally:
        plt.close(fig)


def _metadata(fmt: str) -> dict:
    # Fixed metadata keeps PDF/SVG output byte-stable between runs (no timestamps).
    if fmt == "pdf":
        return {"CreationDate": None, "Creator": "scale plot"}
    if fmt == "svg":
        return {"Date": None, "Creator": "scale plot"}
    return {"Software": "scale plot"}
