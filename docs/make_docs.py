"""`make docs`: regenerate every figure, excerpt and quoted number of the README from the current results.

Usage: python docs/make_docs.py  (after `make demo` and the data-quality and repeat sweeps, as `make docs` runs them)

It copies what the README draws and quotes from (runs.parquet, curves.parquet and the fit files) of results/demo,
results/known-answer, results/data-quality and results/repeat into docs/figures/<name>/; draws each README figure
from its snapshot with the current code (docs/figures/<figure>.png, and the plotted values in
docs/figures/<figure>.data.json); replaces the README's excerpt between its markers with what `scale predict`
prints for the demo snapshot's fit at 100x its largest run; and fills every `<!-- docs:NAME -->` marker of the
prose with its number (docs/readme_facts.py). With a Chromium on the machine it also lays out the report of the
demo and known-answer snapshots and saves the boxes of their key elements (tests/data/report_layout/), which
tests/test_report.py compares the pages with. tests/test_docs_drift.py redraws the figures, reruns that command
and recomputes the numbers from the committed snapshots, and fails when any of them differs, so the README cannot
go stale without the test saying so.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "docs"), str(REPO / "tests")]
import readme_facts  # noqa: E402 - docs/ is not a package; the facts module sits beside this script

FIGURES = REPO / "docs" / "figures"
SNAPSHOT = FIGURES / "demo"
# README figure file -> (the snapshot it is drawn from, the `scale plot` figure)
README_FIGURES = {
    "loss_vs_compute": ("demo", "loss_vs_compute"),
    "compression": ("demo", "compression"),
    "data_axis": ("data-quality", "data_axis"),
    "repeat_data_axis": ("repeat", "data_axis"),
}
# Snapshots only drawn from and quoted (frontiers, parameters, intervals): their fit files drop the bootstrap
# samples, most of their size. The demo and known-answer keep theirs: predict and the report read them.
WITHOUT_SAMPLES = ("data-quality", "repeat")
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


def drawn_now(root: Path = FIGURES) -> dict[str, dict | str]:
    """{README figure: its plotted values (or why it is not drawn)}, drawn from the snapshots under `root`."""
    from scaling_cli.plot import load_inputs
    from scaling_cli.plot.figdata import drawn_data

    drawn = {}
    for snapshot in dict.fromkeys(source for source, _ in README_FIGURES.values()):
        wanted = {name: figure for name, (source, figure) in README_FIGURES.items() if source == snapshot}
        data = drawn_data(load_inputs(root / snapshot, fit_if_missing=False), list(dict.fromkeys(wanted.values())))
        drawn.update({name: data[figure] for name, figure in wanted.items()})
    return drawn


def take_snapshots() -> None:
    """Copy each results folder's tables and fit files into docs/figures/<name>/."""
    for name, (results, files) in readme_facts.SNAPSHOTS.items():
        missing = [file for file in files if not (REPO / results / file).is_file()]
        if missing:
            sys.exit(f"error: {results}: {', '.join(missing)} missing; run `make docs` (it sweeps and fits them)")
        (FIGURES / name).mkdir(parents=True, exist_ok=True)
        for file in files:
            shutil.copy2(REPO / results / file, FIGURES / name / file)
            if name in WITHOUT_SAMPLES and file.endswith(".json"):
                fit = json.loads((FIGURES / name / file).read_text())
                _drop_samples(fit)
                (FIGURES / name / file).write_text(json.dumps(fit, indent=1) + "\n")


def _drop_samples(document) -> None:
    """Remove every `bootstrap.samples` list (the resampled parameter vectors) from a fit document, in place."""
    if isinstance(document, dict):
        if isinstance(document.get("bootstrap"), dict):
            document["bootstrap"].pop("samples", None)
        for value in document.values():
            _drop_samples(value)
    elif isinstance(document, list):
        for value in document:
            _drop_samples(value)


def main() -> None:
    from scaling_cli.plot.figdata import DATA_SUFFIX, write_data

    take_snapshots()
    for name, data in drawn_now().items():
        if isinstance(data, str):
            sys.exit(f"error: {name}: not drawn: {data}")
        write_data(data, FIGURES / f"{name}{DATA_SUFFIX}")
    _save_pngs()
    readme = (REPO / "README.md").read_text()
    start, end = readme.index(EXCERPT_START), readme.index(EXCERPT_END)
    readme = readme[:start] + excerpt_block() + "\n```\n" + readme[end:]
    try:
        readme = readme_facts.fill(readme, readme_facts.facts())
    except KeyError as missing:
        sys.exit(f"error: README.md: marker docs:{missing.args[0]} has no fact in docs/readme_facts.py")
    (REPO / "README.md").write_text(readme)
    shown = len(readme_facts.shown(readme))
    print(f"docs: {len(README_FIGURES)} figures, the excerpt and {shown} quoted numbers regenerated")
    _save_report_layouts()


def _save_report_layouts() -> None:
    """The report's layout snapshots, when a Chromium is here to draw them (CI installs one: .ci/install-chromium)."""
    import report_browser

    from scaling_cli.report import build_report

    if report_browser.chromium() is None:
        print("docs: no chromium here; tests/data/report_layout/ not redrawn (apt-get install chromium)")
        return
    for name in report_browser.LAYOUT_SNAPSHOTS:
        path = report_browser.write_layout(name, build_report(FIGURES / name))
        print(f"docs: report layout of {name} saved to {path.relative_to(REPO)}")


def _save_pngs() -> None:
    import matplotlib.pyplot as plt

    from scaling_cli.plot import load_inputs
    from scaling_cli.plot.figures import FIGURE_FUNCTIONS, make_context
    from scaling_cli.plot.style import RC, save

    with plt.rc_context(RC):
        for name, (snapshot, figure) in README_FIGURES.items():
            context = make_context(load_inputs(FIGURES / snapshot, fit_if_missing=False))
            save(FIGURE_FUNCTIONS[figure](context), FIGURES / f"{name}.png", "png")


if __name__ == "__main__":
    main()
