"""Figures from a results directory or a table and its fit: `make_figures` writes them and says what it skipped."""

from __future__ import annotations

from pathlib import Path

from scaling_cli.errors import SpecError
from scaling_cli.fit.table import TableOptions
from scaling_cli.plot.inputs import PlotInputs, default_out_dir, load_inputs
from scaling_cli.plot.style import FORMATS

FIGURES = (
    "loss_vs_compute",
    "isoflop",
    "optimal_allocation",
    "parametric_fit",
    "extrapolation",
    "compression",
    "data_axis",
)
# Figures of measurements only: asking for just these never starts a fit.
DRAWN_WITHOUT_FIT = ("compression",)

__all__ = [
    "DRAWN_WITHOUT_FIT",
    "FIGURES",
    "FORMATS",
    "PlotInputs",
    "default_out_dir",
    "draw",
    "load_inputs",
    "make_figures",
]


def make_figures(
    source: Path,
    *,
    fit_path: Path | None = None,
    out_dir: Path | None = None,
    fmt: str = "png",
    only: str | None = None,
    table: TableOptions | None = None,
) -> list[tuple[str, Path | None, str]]:
    """Write each figure to `out_dir/<name>.<fmt>`; return (name, path, "") or (name, None, why it was skipped).

    `table` names the columns and selects the rows of an external table as `scale fit` does.
    """
    if fmt not in FORMATS:
        raise SpecError("--format", fmt, f"unknown format; choose from {', '.join(FORMATS)}")
    if only is not None and only not in FIGURES:
        raise SpecError("--only", only, f"unknown figure; choose from {', '.join(FIGURES)}")
    names = [only] if only else list(FIGURES)
    needs_fit = any(name not in DRAWN_WITHOUT_FIT for name in names)
    inputs = load_inputs(Path(source), fit_path, table, fit_if_missing=needs_fit)
    out_dir = Path(out_dir) if out_dir else default_out_dir(Path(source))
    return draw(inputs, out_dir, fmt, names)


def draw(inputs: PlotInputs, out_dir: Path, fmt: str, names: list[str]) -> list[tuple[str, Path | None, str]]:
    """Draw the named figures from already loaded inputs (the house style applies to each)."""
    from scaling_cli.plot.figures import each_figure
    from scaling_cli.plot.style import save

    made = []
    for name, figure, reason in each_figure(inputs, names):
        if figure is None:
            made.append((name, None, reason))
            continue
        path = out_dir / f"{name}.{fmt}"
        save(figure, path, fmt)
        made.append((name, path, ""))
    return made
