"""Read everything the report shows from a results directory, keeping for each part either its data or
one line saying why it is not available (a missing fit.json must not stop the rest of the page)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import json
import tempfile
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from scaling_cli.errors import ScaleError, StoreError

if TYPE_CHECKING:
    from scaling_cli.fit.results import FitResult, GroupFit

PREDICTION_MULTIPLES = (10, 100)


@dataclass
class Part:
    """One input of the report: its value, or why it could not be read."""

    value: object = None
    problem: str = ""

    @property
    def ok(self) -> bool:
        return self.value is not None


@dataclass
class DataSet:
    """The runs trained on one prepared data set (a source with one set of data options and one tokenizer),
    and its manifest (None with a reason when it cannot be found)."""

    name: str  # the source, plus the options that set it apart from the sweep's other variants of that source
    dataset: str  # the runs' `dataset` value
    run_ids: list[str]
    manifest: dict | None
    problem: str = ""


@dataclass
class Figure:
    name: str
    png: bytes | None
    reason: str = ""


@dataclass
class Prediction:
    """`scaling_cli.fit.predict` at `multiple` x the group's largest fitted compute."""

    group: str
    multiple: int
    largest_compute: float
    result: dict | None
    problem: str = ""


@dataclass
class ReportInputs:
    results: Path
    spec_text: Part
    spec: dict
    runs: Part  # pandas DataFrame of runs.parquet
    status: Part  # scaling_cli.store_status.status(...)
    fit: Part  # the fit.json document
    predictions: list[Prediction] = field(default_factory=list)
    data_sets: list[DataSet] = field(default_factory=list)
    figures: Part = field(default_factory=Part)  # list[Figure]


def gather(results: Path) -> ReportInputs:
    """Everything the page needs from `results`; StoreError only when it is not a results directory at all."""
    results = Path(results)
    if not results.is_dir():
        raise StoreError(str(results), "directory", "not found")
    if not any((results / name).exists() for name in ("runs.parquet", "plan.json", "spec.toml", "fit.json")):
        raise StoreError(str(results), "directory", "not a results directory (no runs.parquet, plan.json or spec.toml)")
    spec_text = _read_spec(results)
    runs = _read_runs(results)
    fit = _read_fit(results)
    return ReportInputs(
        results=results,
        spec_text=spec_text,
        spec=_parse_spec(spec_text),
        runs=runs,
        status=_read_status(results),
        fit=fit,
        predictions=_predictions(fit.value) if fit.ok else [],
        data_sets=_data_sets(results, runs.value) if runs.ok else [],
        figures=_figures(results, fit.ok),
    )


def _read_spec(results: Path) -> Part:
    path = results / "spec.toml"
    try:
        return Part(path.read_text())
    except FileNotFoundError:
        return Part(problem="no spec.toml in the results directory")
    except (OSError, UnicodeDecodeError) as exc:
        return Part(problem=f"spec.toml unreadable: {exc}")


def _parse_spec(spec_text: Part) -> dict:
    """The spec's top-level table, for its name and description; empty when it does not parse."""
    if not spec_text.ok:
        return {}
    try:
        return tomllib.loads(spec_text.value)
    except tomllib.TOMLDecodeError:
        return {}


def _read_runs(results: Path) -> Part:
    path = results / "runs.parquet"
    if not path.is_file():
        return Part(problem="no runs.parquet (no run has settled yet, or the sweep was never compacted)")
    try:
        runs = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several unrelated types for a damaged file
        return Part(problem=f"runs.parquet unreadable: {exc}")
    if "run_id" in runs.columns:
        runs = runs.assign(run_id=runs["run_id"].astype(str))
    return Part(runs)


def _read_status(results: Path) -> Part:
    from scaling_cli.store_status import status

    try:
        return Part(status(results))
    except ScaleError as exc:
        return Part(problem=exc.line())


def _read_fit(results: Path) -> Part:
    from scaling_cli.fit.predict import load_fit

    if not (results / "fit.json").is_file():
        return Part(problem=f"no fit.json; run `scale fit {results}` first")
    try:
        return Part(load_fit(results))
    except ScaleError as exc:
        return Part(problem=exc.line())


def largest_compute(group: GroupFit) -> float | None:
    """The largest C among a fitted group's points (in the fit's own FLOP convention)."""
    values = [point.get("C") for point in group.points]
    values = [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return max(values) if values else None


def _predictions(fit: FitResult) -> list[Prediction]:
    from scaling_cli.fit import predict

    made = []
    for name, group in sorted(fit.groups.items()):
        top = largest_compute(group)
        for multiple in PREDICTION_MULTIPLES:
            if top is None:
                made.append(Prediction(name, multiple, float("nan"), None, "the group has no fitted points"))
                continue
            try:
                answer = predict(fit, compute=multiple * top, group=name)
            except ScaleError as exc:
                made.append(Prediction(name, multiple, top, None, exc.line()))
                continue
            made.append(Prediction(name, multiple, top, answer))
    return made


def _data_sets(results: Path, runs: pd.DataFrame) -> list[DataSet]:
    """One entry per prepared data set the runs used: per source, and per data options within a source
    (a sweep over quality levels trains one source under several options)."""
    if "dataset" not in runs.columns or runs.empty:
        return []
    variants: dict[tuple, list[str]] = {}
    configs: dict[tuple, dict] = {}
    for run_id, dataset in zip(runs["run_id"], runs["dataset"].map(str)):
        config = _config(results, run_id)
        identity = (
            dataset,
            json.dumps({k: config.get(k) for k in ("data", "tokenizer", "vocab_size")}, sort_keys=True),
        )
        variants.setdefault(identity, []).append(run_id)
        configs.setdefault(identity, config)
    found = []
    for identity in sorted(variants):
        dataset, config = identity[0], configs[identity]
        siblings = [configs[other] for other in variants if other[0] == dataset and other != identity]
        name = dataset + _differences(config, siblings)
        if not config:
            found.append(
                DataSet(name, dataset, variants[identity], None, f"no readable runs/<run_id>/config.json for {name}")
            )
            continue
        manifest, problem = find_manifest(config)
        found.append(DataSet(name, dataset, variants[identity], manifest, problem))
    return found


def _differences(config: dict, siblings: list[dict]) -> str:
    """` (option=value, ...)` for the data options in which this variant differs from another of its source."""
    if not siblings:
        return ""
    mine = config.get("data") or {}
    differing = sorted({k for other in siblings for k, v in (other.get("data") or {}).items() if mine.get(k) != v})
    for key in ("tokenizer", "vocab_size"):
        if any(other.get(key) != config.get(key) for other in siblings):
            differing.append(key)
    values = {**mine, "tokenizer": config.get("tokenizer"), "vocab_size": config.get("vocab_size")}
    return " (" + ", ".join(f"{k}={values.get(k)}" for k in differing) + ")" if differing else ""


def _config(results: Path, run_id: str) -> dict:
    try:
        return json.loads((results / "runs" / run_id / "config.json").read_text())
    except (OSError, ValueError):
        return {}


def find_manifest(config: dict) -> tuple[dict | None, str]:
    """The manifest of the prepared data set a run trained on, matched by source, options and tokenizer from
    its config.json; searched in the data cache (`SCALE_CACHE` or ~/.cache/scale), never prepared here."""
    from scaling_cli.data.sources import cache_root

    prepared = cache_root() / "prepared"
    matches = []
    for path in sorted(prepared.glob("*/manifest.json")):
        try:
            manifest = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if _same_data(manifest, config):
            matches.append(manifest)
    if not matches:
        return None, f"no prepared data set for {config.get('dataset')} with these options in {prepared}"
    return max(matches, key=lambda m: str(m.get("created", ""))), ""


def _same_data(manifest: dict, config: dict) -> bool:
    tokenizer = manifest.get("tokenizer") or {}
    vocab = config.get("vocab_size")
    return (
        manifest.get("source") == config.get("dataset")
        and manifest.get("options") == config.get("data")
        and tokenizer.get("kind") == config.get("tokenizer")
        and (
            tokenizer.get("kind") == "bytes"
            or vocab in (tokenizer.get("vocab_size"), tokenizer.get("requested_vocab_size"))
        )
    )


def _figures(results: Path, have_fit: bool) -> Part:
    """Every figure drawn now as PNG bytes (into a temporary folder, leaving results/figures alone)."""
    from scaling_cli.plot import DRAWN_WITHOUT_FIT, FIGURES, make_figures

    figures = []
    with tempfile.TemporaryDirectory(prefix="scale-report-") as folder:
        try:
            if have_fit:
                made = make_figures(results, out_dir=Path(folder), fmt="png")
            else:
                made = [entry for name in DRAWN_WITHOUT_FIT for entry in _only(results, name, Path(folder))]
        except ScaleError as exc:
            return Part(problem=exc.line())
        drawn = {name: (path, reason) for name, path, reason in made}
        for name in FIGURES:
            path, reason = drawn.get(name, (None, f"no fit.json; run `scale fit {results}` first"))
            figures.append(Figure(name, path.read_bytes() if path else None, reason))
    return Part(figures)


def _only(results: Path, name: str, folder: Path) -> list:
    from scaling_cli.plot import make_figures

    return make_figures(results, out_dir=folder, fmt="png", only=name)
