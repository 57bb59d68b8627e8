"""`make docs`: regenerate the README's demo figures and its printed excerpt from the current demo results.

Usage: python docs/make_docs.py [RESULTS]  (default results/demo, as `make demo` leaves it)

It copies what the figures are drawn from (runs.parquet, curves.parquet, fit.json) into docs/figures/demo/, draws
each README figure from that snapshot with the current code (docs/figures/<name>.png, and the plotted values in
docs/figures/<name>.data.json), and replaces the README's excerpt between its markers with what
`scale predict` prints for the snapshot's fit at 100x its largest run. tests/test_docs_drift.py redraws the
figures and reruns that command on the committed snapshot and fails when either differs, so the README cannot go
stale without the test saying so.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FIGURES = REPO / "docs" / "figures"
SNAPSHOT = FIGURES / "demo"
SNAPSHOT_FILES = ("runs.parquet", "curves.parquet", "fit.json")
README_FIGURES = ("loss_vs_compute", "compression")  # the README figures drawn from the demo
EXCERPT_START = "<!-- make docs: demo excerpt -->"
EXCERPT_END = "<!-- end of make docs excerpt -->"
EXCERPT_MULTIPLE = 100


def excerpt_command(snapshot: Path = SNAPSHOT) -> list[str]:
    """The `scale predict` call whose printed lines the README shows (paths relative to the repository)."""
    fit = json.loads((snapshot / "fit.json").read_text())
    largest = max(point["C"] for group in fit["groups"].values() for point in group["points"])
    relative = snapshot.relative_to(REPO) / "fit.json"
    return ["scale", "predict", str(relative), "--compute", f"{EXCERPT_MULTIPLE * largest:.3g}"]


def excerpt_lines(snapshot: Path = SNAPSHOT) -> list[str]:
    """What that command prints before its tables: the verdict, the recommendation and the warnings."""
    command = excerpt_command(snapshot)
    scale = str(Path(sys.executable).with_name("scale"))
    env = {key: value for key, value in os.environ.items() if key not in ("COLUMNS", "LINES")}  # printed as in a log
    done = subprocess.run([scale, *command[1:]], cwd=REPO, env=env, capture_output=True, text=True, check=True)
    lines = []
    for line in (done.stdout + done.stderr).splitlines():
        if line.startswith("group all: compute-optimal split") or line[:1] in "┏┃│└":
            break
        lines.append(line.rstrip())
    return lines


def excerpt_block(snapshot: Path = SNAPSHOT) -> str:
    return "\n".join([EXCERPT_START, "```", "$ " + " ".join(excerpt_command(snapshot)), *excerpt_lines(snapshot)])


def readme_excerpt(readme: str) -> str:
    """The README's excerpt between the markers (the closing fence excluded)."""
    start = readme.index(EXCERPT_START)
    return readme[start : readme.index(EXCERPT_END, start)].rstrip().removesuffix("```").rstrip()


def main(results: Path) -> None:
    from scaling_cli.plot import load_inputs
    from scaling_cli.plot.figdata import DATA_SUFFIX, drawn_data, write_data
    from scaling_cli.plot.style import save

    missing = [name for name in SNAPSHOT_FILES if not (results / name).is_file()]
    if missing:
        sys.exit(f"error: {results}: {', '.join(missing)} missing; run make demo first")
    SNAPSHOT.mkdir(parents=True, exist_ok=True)
    for name in SNAPSHOT_FILES:
        shutil.copy2(results / name, SNAPSHOT / name)
    inputs = load_inputs(SNAPSHOT, fit_if_missing=False)
    for name, data in drawn_data(inputs, README_FIGURES).items():
        if isinstance(data, str):
            sys.exit(f"error: {name}: not drawn from {results}: {data}")
        write_data(data, FIGURES / f"{name}{DATA_SUFFIX}")
    _save_pngs(inputs, save)
    readme = (REPO / "README.md").read_text()
    start, end = readme.index(EXCERPT_START), readme.index(EXCERPT_END)
    (REPO / "README.md").write_text(readme[:start] + excerpt_block() + "\n```\n" + readme[end:])
    print(f"docs: {len(README_FIGURES)} figures and the README excerpt regenerated from {results}")


def _save_pngs(inputs, save) -> None:
    import matplotlib.pyplot as plt

    from scaling_cli.plot.figures import FIGURE_FUNCTIONS, make_context
    from scaling_cli.plot.style import RC

    with plt.rc_context(RC):
        context = make_context(inputs)
        for name in README_FIGURES:
            save(FIGURE_FUNCTIONS[name](context), FIGURES / f"{name}.png", "png")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "results" / "demo")
