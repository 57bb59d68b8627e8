"""`scale report`: the page made from a real tiny sweep (one run diverged, one failed), read as a user would.

Every number on the page carries where it came from (`data-source`, `data-key`) and its value (`data-value`);
the tests recompute each one from fit.json, runs.parquet, `scale status`, the data set's manifest and
`fit.predict`, and check the shown digits. Then a real headless Chromium draws the page: no console
errors, every image decoded.
"""

from __future__ import annotations

import base64
import functools
import json
import math
import os
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
from conftest import REPO, scale_in_process
from report_browser import (
    LAYOUT_DIR,
    LAYOUT_SNAPSHOTS,
    chromium,
    console_lines,
    in_browser,
    layout_at_1280,
    layout_differences,
    probe_of,
)

from scaling_cli.data import prepare
from scaling_cli.fit import predict
from scaling_cli.plan import load_sweep
from scaling_cli.plot import FIGURES
from scaling_cli.report import REPORT_NAME, build_report
from scaling_cli.store_status import status
from scaling_cli.sweep import build_units

HOSTILE = '<script>alert("x")</script> & <b>bold</b>'
SPEC = f"""
name = "report-tiny"
description = '''Four widths x three WSD budgets on a Markov chain; {HOSTILE}'''
dataset = "markov"
tokenizer = "bytes"
device = "cpu"
seeds = [0]

[data]
markov_order = 1
markov_alphabet = 16
markov_branching = 3
markov_bytes = 200_000
val_min_bytes = 16_384

[model]
d_model = [16, 32, 48, 64]
n_layer = 2
head_dim = 16
seq_len = 32

[train]
tokens = [8_192, 16_384, 32_768]
batch_size = 16
lr = 1e-2
schedule = "wsd"
cooldown_frac = 0.25
warmup_tokens = 2_048
checkpoint_every = 8

[eval]
every = 8
batches = 4
"""
# An earlier try in the same directory, on a larger validation split: lr 10 with decoupled weight decay 1
# multiplies every weight by 1 - lr * wd = -9 each step, so the loss overflows within a few steps.
DIVERGING = (
    SPEC.replace("d_model = [16, 32, 48, 64]", "d_model = 16")
    .replace("val_min_bytes = 16_384", "val_min_bytes = 20_000")
    .replace("tokens = [8_192, 16_384, 32_768]", "tokens = 8_192")
    .replace("lr = 1e-2", "lr = 10.0\nweight_decay = 1.0\ngrad_clip = 0.0")
    .replace("warmup_tokens = 2_048", "warmup_tokens = 0")
)


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    """A results directory as a user makes one: a diverging first try, the sweep (one run failing), a fit."""
    work = tmp_path_factory.mktemp("report")
    out = work / "results"
    (work / "diverging.toml").write_text(DIVERGING)
    (work / "spec.toml").write_text(SPEC)
    first = scale_in_process("sweep", work / "diverging.toml", "--out", out)
    assert first.returncode == 0, first.stderr
    widest = max(build_units(load_sweep(work / "spec.toml").runs()), key=lambda unit: unit.trunk.params)
    doomed = next(run for run, _ in widest.branches if run.tokens == 16_384)
    sweep = scale_in_process(
        "sweep", work / "spec.toml", "--out", out, "--workers", "2", "--retries", "0",
        env={"SCALE_FAIL_RUNS": doomed.run_id},
    )  # fmt: skip
    assert sweep.returncode == 1, sweep.stderr  # some runs failed
    fitted = scale_in_process("fit", out, "--holdout", "2", "--backtest", "--bootstrap", "40")
    assert fitted.returncode == 0, fitted.stderr
    made = scale_in_process("report", out)
    assert made.returncode == 0 and made.stdout.strip() == str(out / REPORT_NAME), made.stderr
    return out


@pytest.fixture(scope="module")
def page(results) -> str:
    return (results / REPORT_NAME).read_text()


# ---- reading the page ---------------------------------------------------------------------------------


class PageReader(HTMLParser):
    """Collects sourced numbers, table cells' free text, images, scripts and outbound references."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.numbers: list[dict] = []
        self.images: list[dict] = []
        self.references: list[str] = []
        self.tags: set[str] = set()
        self.cells: list[str] = []
        self.text: list[str] = []
        self._stack: list[tuple[str, dict]] = []
        self._cell: list[str] | None = None
        self._skip_depth = 0  # inside sourced numbers or text-from-files spans of a cell

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.add(tag)
        for name in ("src", "href"):
            if attrs.get(name):
                self.references.append(attrs[name])
        if tag == "img":
            self.images.append(attrs)
            return
        if tag in ("meta", "br", "link"):
            return
        self._stack.append((tag, attrs))
        classes = (attrs.get("class") or "").split()
        if "data-source" in attrs:
            self.numbers.append({**attrs, "shown": ""})
        if tag == "td":
            self._cell = []
        if "data-source" in attrs or {"id", "error"} & set(classes):
            self._skip_depth += 1

    def handle_endtag(self, tag):
        while self._stack:
            open_tag, attrs = self._stack.pop()
            classes = (attrs.get("class") or "").split()
            if "data-source" in attrs or {"id", "error"} & set(classes):
                self._skip_depth -= 1
            if open_tag == "td" and self._cell is not None:
                self.cells.append("".join(self._cell))
                self._cell = None
            if open_tag == tag:
                break

    def handle_data(self, data):
        self.text.append(data)
        if self._stack and "data-source" in self._stack[-1][1]:
            self.numbers[-1]["shown"] += data
        if self._cell is not None and self._skip_depth == 0:
            self._cell.append(data)


def read_page(page: str) -> PageReader:
    reader = PageReader()
    reader.feed(page)
    reader.close()
    return reader


# ---- recomputing each number from its file ------------------------------------------------------------


class Sources:
    """The value each `data-source` / `data-key` names, computed here from the files themselves."""

    def __init__(self, results: Path):
        self.results = results
        self.runs = pd.read_parquet(results / "runs.parquet")
        self.status = status(results)
        self._predictions: dict = {}

    @functools.cached_property
    def fit(self) -> dict:
        return json.loads((self.results / "fit.json").read_text())

    @functools.cached_property
    def manifests(self) -> dict:
        """Every prepared data set's manifest in the cache the sweeps used, by its directory name."""
        paths = (Path(os.environ["SCALE_CACHE"]) / "prepared").glob("*/manifest.json")
        return {path.parent.name: json.loads(path.read_text()) for path in paths}

    def value(self, source: str, key: list) -> float:
        if source == "fit.json":
            return walk(self.fit, key)
        if source == "status":
            return walk(self.status, key)
        if source == "manifest.json":
            return walk(self.manifests[key[0]], key[1:])
        if source == "predict":
            return walk(self.prediction(key[0], key[1]), key[2:])
        if source == "runs.parquet":
            return self.from_runs(*key)
        raise AssertionError(f"unknown data-source {source!r}")

    def prediction(self, group: str, multiple: int) -> dict:
        if (group, multiple) not in self._predictions:
            largest = max(point["C"] for point in self.fit["groups"][group]["points"])
            self._predictions[group, multiple] = predict(self.fit, compute=multiple * largest, group=group)
        return self._predictions[group, multiple]

    def from_runs(self, how: str, column: str | None, where=None) -> float:
        runs = self.runs
        if how == "row":
            return runs.set_index("run_id").loc[column, where]
        for name, wanted in (where or {}).items():
            text = runs[name].map(lambda v: "unknown" if v is None or v != v else str(v))
            runs = runs[text == wanted]
        if how == "count":
            return len(runs)
        if how == "elapsed":
            return (runs["finished_at"]).max() - (runs["finished_at"] - runs["wall_s"]).min()
        values = pd.to_numeric(runs[column], errors="coerce").dropna()
        values = values[values.abs() != math.inf]
        return {"sum": values.sum, "min": values.min, "max": values.max}[how]()


def walk(document, key: list):
    for part in key:
        document = document[part]
    return document


def shown_matches(shown: str, value: float) -> bool:
    """The digits on the page are `value` to four significant digits (whole numbers exactly)."""
    number = float(shown.replace(",", ""))
    if re.fullmatch(r"-?[\d,]+", shown):
        return number == value
    half_unit = 0.5 * 10 ** (math.floor(math.log10(abs(value))) - 3) if value else 0.0
    return abs(number - value) <= half_unit * (1 + 1e-9)


def wrong_numbers(page: str, sources: Sources) -> list[str]:
    problems = []
    for number in read_page(page).numbers:
        key = json.loads(number["data-key"])
        expected = float(sources.value(number["data-source"], key))
        stated = float(number["data-value"])
        if not math.isclose(stated, expected, rel_tol=1e-12, abs_tol=1e-300):
            problems.append(f"{number['data-source']} {key}: page says {stated!r}, the file has {expected!r}")
        elif not shown_matches(number["shown"].strip(), expected):
            problems.append(f"{number['data-source']} {key}: shown as {number['shown']!r}, the file has {expected!r}")
    return problems


# ---- the page's numbers -------------------------------------------------------------------------------


def test_every_number_on_the_page_matches_its_file(results, page):
    sources = Sources(results)
    assert wrong_numbers(page, sources) == []
    numbers = read_page(page).numbers
    assert {n["data-source"] for n in numbers} == {"fit.json", "runs.parquet", "status", "manifest.json", "predict"}
    keys = {(n["data-source"], n["data-key"]) for n in numbers}
    for law_key in (
        ["groups", "all", "laws", "chinchilla", "params", "alpha"],
        ["groups", "all", "laws", "chinchilla", "intervals", "beta", 1],
        ["groups", "all", "laws", "kaplan", "L_C", "params", "alpha_C"],
        ["groups", "all", "holdout", "mape", "chinchilla"],
        ["groups", "all", "backtest", "cut"],
        ["groups", "all", "backtest", "candidates", 0, "laws", "linear", "mape"],
    ):
        assert ("fit.json", json.dumps(law_key)) in keys
    for run_id in sources.runs["run_id"]:  # every run's loss is on the page (a dash where it has none)
        assert ("runs.parquet", json.dumps(["row", run_id, "tokens"])) in keys
    for multiple in (10, 100):  # every allocation `scale predict` gives is on the page; a withheld one is not
        answers = sources.prediction("all", multiple)["groups"]["all"]["compute"]
        offered = {law for law, answer in answers.items() if "N_opt" in answer}
        assert offered, answers
        for law in answers:
            key = ("predict", json.dumps(["all", multiple, "groups", "all", "compute", law, "N_opt"]))
            assert (key in keys) == (law in offered), law


def test_the_check_fails_when_a_shown_number_or_a_stated_value_is_wrong(results, page):
    sources = Sources(results)
    alpha = next(n for n in read_page(page).numbers if n["data-key"].endswith('"params", "alpha"]'))
    digits = alpha["shown"]
    off_by_one = digits[:-1] + str((int(digits[-1]) + 1) % 10)
    shown_wrong = page.replace(
        f'data-value="{alpha["data-value"]}">{digits}<', f'data-value="{alpha["data-value"]}">{off_by_one}<'
    )
    assert shown_wrong != page and len(wrong_numbers(shown_wrong, sources)) == 1
    stated_wrong = page.replace(
        f'data-value="{alpha["data-value"]}"', f'data-value="{float(alpha["data-value"]) * 1.01!r}"'
    )
    assert wrong_numbers(stated_wrong, sources)


def test_every_number_in_a_table_is_sourced(page):
    unsourced = [cell for cell in read_page(page).cells if re.search(r"\d", cell)]
    assert unsourced == []


def test_runs_by_state_failures_and_divergence_are_shown(results, page):
    runs = pd.read_parquet(results / "runs.parquet")
    assert sorted(runs["status"]) == sorted(["diverged", "failed"] + ["done"] * 11)
    reader = read_page(page)
    counted = {json.loads(n["data-key"])[2].get("status"): n["shown"] for n in reader.numbers
               if n["data-source"] == "runs.parquet" and n["data-key"].startswith('["count"')}  # fmt: skip
    assert (counted["done"], counted["diverged"], counted["failed"]) == ("11", "1", "1")
    failures = page.split('id="failures"')[1].split("</section>")[0]
    for _, row in runs[runs["status"] != "done"].iterrows():
        assert row["run_id"] in failures
    assert "injected failure (SCALE_FAIL_RUNS test hook)" in failures
    assert "Extrapolation: 10× beyond the largest run" in page and "Extrapolation: 100×" in page


def test_data_section_shows_cleaning_steps_and_baselines_against_the_best_model(results, page):
    data = page.split('id="data"')[1].split("</section>")[0]
    sweep = load_sweep(results / "spec.toml")
    manifest = prepare("markov", sweep.data_options, tokenizer=sweep.tokenizer).manifest
    # the first try's data set differs only in its validation size, and the page says so
    assert "<h3>markov (val_min_bytes=16384)</h3>" in data and "<h3>markov (val_min_bytes=20000)</h3>" in data
    for step in manifest["cleaning"]:
        assert f'<span class="id">{step["step"]}</span>' in data
    for compressor in manifest["baselines"]["bits_per_byte"]:
        key = [manifest["dirname"], "baselines", "bits_per_byte", compressor]
        assert json.dumps(key).replace('"', "&quot;") in data
    runs = pd.read_parquet(results / "runs.parquet")
    best = runs.loc[runs["val_bpb"].idxmin(), "run_id"]
    assert json.dumps(["row", best, "val_bpb"]).replace('"', "&quot;") in data


# ---- self-contained and escaped -----------------------------------------------------------------------


def test_page_is_self_contained_and_escapes_text_from_files(page):
    reader = read_page(page)
    assert "script" not in reader.tags and "link" not in reader.tags
    assert all(ref.startswith(("data:image/png;base64,", "#")) for ref in reader.references)
    assert "http://" not in page and "https://" not in page and "url(" not in page
    assert "default-src 'none'" in page  # the browser itself refuses any request the page might make
    assert HOSTILE not in page and "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &lt;b&gt;" in page


def test_every_figure_is_inlined_as_a_png_or_says_why_not(page):
    figures = page.split('id="figures"')[1].split("</section>")[0]
    drawn = {image["alt"]: image["src"] for image in read_page(figures).images}
    for name in FIGURES:
        block = figures.split(f"<b>{name}</b>")[0].rsplit("<figure>", 1)[1]
        if name in drawn:
            png = base64.b64decode(drawn[name].split(",", 1)[1], validate=True)
            assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 2000
        else:
            assert 'class="na">not available: ' in figures.split(f"<b>{name}</b>")[1].split("</figure>")[0], block
    assert {"loss_vs_compute", "parametric_fit", "compression"} <= set(drawn)


def test_without_a_fit_or_a_manifest_the_page_still_shows_the_runs_and_says_what_is_missing(
    results, tmp_path, monkeypatch
):
    bare = tmp_path / "bare"
    shutil.copytree(results, bare, ignore=shutil.ignore_patterns("fit.json", REPORT_NAME, "figures"))
    empty_cache = tmp_path / "empty-cache"
    monkeypatch.setenv("SCALE_CACHE", str(empty_cache))  # the prepared data set is gone too
    page = build_report(bare)
    missing = f"not available: no fit.json; run <code>scale fit {bare}</code> first"  # backticks set as code
    laws = page.split('id="laws"')[1].split("</section>")[0]
    optimal = page.split('id="optimal"')[1].split("</section>")[0]
    assert missing in laws and missing in optimal
    data = page.split('id="data"')[1].split("</section>")[0]
    assert "not available: no prepared data set for markov" in data and "(from runs.parquet)" in data
    what_was_run = page.split('id="run"')[1].split("</section>")[0]
    assert what_was_run.count("&quot;row&quot;") >= 13 and 'alt="compression"' in page
    assert wrong_numbers(page, Sources(bare)) == []
    assert {n["data-source"] for n in read_page(page).numbers} == {"runs.parquet", "status"}
    assert not (bare / "fit.json").exists() and not empty_cache.exists()  # nothing fitted or prepared behind the back


def test_bad_input_is_one_line_and_exit_2_and_writes_nothing(tmp_path):
    missing = scale_in_process("report", tmp_path / "missing")
    assert missing.returncode == 2 and missing.stderr == f"error: {tmp_path / 'missing'}: directory: not found\n"
    empty = tmp_path / "empty"
    empty.mkdir()
    result = scale_in_process("report", empty)
    assert result.returncode == 2 and result.stderr.startswith(f"error: {empty}: directory: not a results directory")
    assert len(result.stderr.splitlines()) == 1 and list(empty.iterdir()) == []


# ---- a real browser -----------------------------------------------------------------------------------

needs_chromium = pytest.mark.skipif(
    chromium() is None, reason="no chromium binary found (apt-get install chromium, or set SCALE_CHROMIUM)"
)


@needs_chromium
def test_the_page_draws_in_headless_chromium_with_every_image_and_no_errors(page, tmp_path):
    dumped = in_browser(page, tmp_path, "--dump-dom")
    probe = probe_of(dumped)
    assert probe["problems"] == [] and console_lines(dumped) == []
    drawn = [image for image in probe["images"] if image["loaded"]]
    assert len(probe["images"]) >= 3 and drawn == probe["images"]
    assert probe["height"] > 3000  # laid out: sections, tables and figures take room

    shot = tmp_path / "report.png"
    taken = in_browser(page, tmp_path, f"--screenshot={shot}", "--window-size=1200,2400", "--hide-scrollbars")
    assert taken.returncode == 0 and shot.is_file(), taken.stderr[-2000:]
    from PIL import Image

    with Image.open(shot) as image:
        assert image.size == (1200, 2400)
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
        assert colours is None or len(colours) > 50  # text and figures, not a blank page
    keep = os.environ.get("SCALE_REPORT_SCREENSHOT")
    if keep:
        shutil.copy(shot, keep)


@needs_chromium
def test_no_element_is_wider_than_the_page_and_the_verdict_is_on_the_first_screen(page, tmp_path):
    probe = layout_at_1280(page, tmp_path)
    assert probe["width"] >= 1200 and probe["wide"] == []
    assert len(probe["verdict"]) >= 4  # N_opt, D_opt, tokens per parameter (and loss) at 10x and 100x
    assert all(0 <= number["top"] and number["bottom"] <= probe["screen"] for number in probe["verdict"])


# What each committed snapshot's page must say: the demo identifies no parametric law, the known-answer source does.
MARKS = {"demo": ("not identified", "withheld", "weak evidence"), "known-answer": ("expect loss", "trust: moderate")}


@pytest.fixture(scope="module", params=LAYOUT_SNAPSHOTS)
def snapshot_page(request) -> tuple[str, str]:
    """The report of a committed results snapshot (docs/figures/<name>, written by make docs from make demo)."""
    return request.param, build_report(REPO / "docs" / "figures" / request.param)


@needs_chromium
def test_the_report_of_each_snapshot_fits_the_page_leads_with_the_verdict_and_keeps_its_layout(snapshot_page, tmp_path):
    """Demo (Shakespeare under muP, no parametric law identified) and known-answer (E identified): no element
    wider than 1280 px, the verdict's numbers on the first screen, and the key elements where the committed
    layout snapshot has them (tests/data/report_layout/<name>.json, written by make docs)."""
    name, page = snapshot_page
    for shown in MARKS[name]:
        assert shown in page, shown
    probe = layout_at_1280(page, tmp_path)
    assert probe["wide"] == [] and len(probe["verdict"]) >= 6
    assert all(0 <= number["top"] and number["bottom"] <= probe["screen"] for number in probe["verdict"])
    saved = json.loads((LAYOUT_DIR / f"{name}.json").read_text())
    assert len(saved) >= 10 and {box["tag"] for box in saved} >= {"h1", "h2", "span", "table"}
    assert layout_differences(saved, probe["key"]) == [], "run `make docs` and commit tests/data/report_layout"


@needs_chromium
def test_the_layout_snapshot_check_notices_a_wider_table_and_a_pushed_down_verdict(snapshot_page, tmp_path):
    name, page = snapshot_page
    saved = json.loads((LAYOUT_DIR / f"{name}.json").read_text())
    wider = ".verdicts { grid-template-columns: 1fr; } .verdict table { width: 100%; } h1 { margin-bottom: 300px; }"
    styled = page.replace("</style>", wider + "</style>", 1)
    moved = layout_differences(saved, layout_at_1280(styled, tmp_path)["key"])
    assert any("top" in problem for problem in moved) and any("width" in problem for problem in moved)


def test_the_layout_comparison_allows_small_shifts_and_names_what_moved():
    saved = [{"tag": "h2", "text": "Verdict", "left": 20, "top": 1000, "width": 600, "height": 30}]
    assert layout_differences(saved, [{**saved[0], "top": 1040, "width": 610}]) == []
    assert layout_differences(saved, [{**saved[0], "width": 900}]) == ["h2 'Verdict': width 600 -> 900"]
    assert layout_differences(saved, [{**saved[0], "text": "Laws"}])[0].startswith("element 0:")


@needs_chromium
def test_the_layout_check_notices_an_overflowing_table(page, tmp_path):
    wide = page.replace(
        "</main>", '<table><tr><td style="white-space:nowrap">' + "x" * 400 + "</td></tr></table></main>"
    )
    assert layout_at_1280(wide, tmp_path)["wide"]


@needs_chromium
def test_the_browser_check_notices_a_broken_image_a_request_and_a_script_error(page, tmp_path):
    images = '<img alt="broken" src="data:image/png;base64,AAAA"><img alt="remote" src="https://example.com/x.png">'
    broken = page.replace("</main>", images + "</main>", 1)
    broken = broken.replace("</body>", "<script>null.boom()</script></body>", 1)
    dumped = in_browser(broken, tmp_path, "--dump-dom")
    probe = probe_of(dumped)
    assert {"alt": "broken", "loaded": False} in probe["images"] and {"alt": "remote", "loaded": False} in probe[
        "images"
    ]
    assert any("boom" in problem or "null" in problem for problem in probe["problems"])
    assert any("blocked: https://example.com/x.png" in problem for problem in probe["problems"])
    assert any("Content Security Policy" in line for line in console_lines(dumped))  # the page's policy refused it
