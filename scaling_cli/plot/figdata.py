"""The plotted values of a figure as plain data (titles, notes, lines, markers), so a saved figure can be checked
against what the current code draws, as data rather than pixels."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from matplotlib.collections import PathCollection
from matplotlib.figure import Figure

from scaling_cli import atomic
from scaling_cli.plot.inputs import PlotInputs

DATA_SUFFIX = ".data.json"


def figure_data(fig: Figure) -> dict:
    """Every axes' title, notes, labels, lines (label, x, y) and marker positions, in drawing order."""
    axes = []
    for ax in fig.axes:
        axes.append(
            {
                "title": ax.get_title(),
                "notes": ax.get_title(loc="left"),
                "xlabel": ax.get_xlabel(),
                "ylabel": ax.get_ylabel(),
                "lines": [
                    {"label": line.get_label(), "x": _floats(line.get_xdata()), "y": _floats(line.get_ydata())}
                    for line in ax.get_lines()
                ],
                "markers": [_floats(c.get_offsets()) for c in ax.collections if isinstance(c, PathCollection)],
            }
        )
    return {"title": fig.get_suptitle(), "axes": axes}


def drawn_data(inputs: PlotInputs, names) -> dict[str, dict | str]:
    """{name: figure_data} for each figure the inputs support, {name: reason} for the others."""
    import matplotlib.pyplot as plt

    from scaling_cli.plot.figures import each_figure

    found: dict[str, dict | str] = {}
    for name, figure, reason in each_figure(inputs, names):
        if figure is None:
            found[name] = reason
            continue
        found[name] = figure_data(figure)
        plt.close(figure)
    return found


def write_data(data: dict, path: Path) -> None:
    atomic.write_text(path, json.dumps(data, indent=None, sort_keys=True) + "\n")


def differences(saved: object, current: object, where: str = "", rtol: float = 1e-6) -> list[str]:
    """Where two figure_data documents differ: text exactly, numbers to `rtol` (NaN equal to NaN)."""
    if isinstance(saved, dict) and isinstance(current, dict):
        if saved.keys() != current.keys():
            return [f"{where}: keys {sorted(saved)} != {sorted(current)}"]
        return [d for key in saved for d in differences(saved[key], current[key], f"{where}.{key}", rtol)]
    if isinstance(saved, list) and isinstance(current, list):
        if len(saved) != len(current):
            return [f"{where}: {len(saved)} items saved, {len(current)} drawn now"]
        return [d for i, (a, b) in enumerate(zip(saved, current)) for d in differences(a, b, f"{where}[{i}]", rtol)]
    if _is_number(saved) and _is_number(current):
        a, b = (math.nan if v is None else float(v) for v in (saved, current))
        same = (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=rtol, abs_tol=1e-300)
        return [] if same else [f"{where}: {a!r} saved, {b!r} drawn now"]
    return [] if saved == current else [f"{where}: {saved!r} saved, {current!r} drawn now"]


def _floats(values) -> list:
    array = np.asarray(values, dtype=float) if len(values) else np.zeros(0)
    return [None if not math.isfinite(v) else v for v in array.ravel().tolist()]


def _is_number(value) -> bool:
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))
