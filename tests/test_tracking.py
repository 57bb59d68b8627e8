"""`--track wandb|tensorboard|mlflow`: a real sweep logs every run, and each library's own reader gives back
exactly the curves of curves.parquet; a tracker that fails is reported once and never fails a run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import TINY, TWO_WIDTHS, scale_in_process

from scaling_cli.tracking import CURVE_METRICS, chosen_trackers

SPEC = (
    """
name = "track-tiny"
dataset = "markov"
device = "cpu"
track = ["tensorboard"]

[data]
markov_order = 1
markov_alphabet = 16
markov_bytes = 100_000
val_min_bytes = 16_384

"""
    + TWO_WIDTHS
    + """
[train]
tokens = 6_144
batch_size = 16
lr = 1e-2
warmup_tokens = 1_024

[eval]
every = 4
batches = 2
"""
)


@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    """One sweep logged to all three trackers (tensorboard from the spec, the others from --track)."""
    root = tmp_path_factory.mktemp("tracked")
    spec = root / "tiny.toml"
    spec.write_text(SPEC)
    out = root / "out"
    env = {"WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    result = scale_in_process("sweep", spec, "--out", out, "--track", "wandb,mlflow", env=env)
    assert result.returncode == 0, result.stderr
    assert "tracking" not in result.stderr, result.stderr
    curves = pd.read_parquet(out / "curves.parquet")
    runs = pd.read_parquet(out / "runs.parquet")
    assert len(runs) == 2 and len(curves) >= 6
    return out, curves, runs


def expected(curves: pd.DataFrame, run_id: str) -> dict[str, dict[int, float]]:
    """{metric: {step: value}} of one run in curves.parquet."""
    mine = curves[curves["run_id"] == run_id]
    return {key: dict(zip(mine["step"].astype(int), mine[key].astype(float))) for key in CURVE_METRICS}


def test_tensorboard_events_read_back_equal_curves_parquet(tracked):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out, curves, runs = tracked
    for run_id in runs["run_id"]:
        events = EventAccumulator(str(out / "tracking" / "tensorboard" / "track-tiny" / run_id))
        events.Reload()
        for key, want in expected(curves, run_id).items():
            got = {event.step: event.value for event in events.Scalars(f"curve/{key}")}
            assert got.keys() == want.keys()
            # TensorBoard stores scalars as float32: equal to the parquet value rounded to float32
            assert all(np.float32(got[step]) == np.float32(value) for step, value in want.items()), key
        final = events.Scalars("final/val_loss")[0].value
        assert np.float32(final) == np.float32(runs.set_index("run_id").loc[run_id, "val_loss"])
        config = events.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
        assert f'run_id = "{run_id}"' in config and "train.lr = 0.01" in config


def test_wandb_offline_run_files_read_back_equal_curves_parquet(tracked):
    out, curves, runs = tracked
    files = sorted((out / "tracking" / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(files) == 2
    seen = set()
    for path in files:
        # wandb's own reader of its transaction log (the wandb-core binary behind `wandb leet inspect`)
        wandb_cli = str(Path(sys.executable).with_name("wandb"))
        listing = subprocess.run([wandb_cli, "leet", "inspect", "--json", str(path)], capture_output=True, text=True)
        records = [json.loads(line) for line in listing.stdout.splitlines() if line.startswith("{")]
        run = next(r["run"] for r in records if r["type"] == "run")
        run_id = run["display_name"]
        assert run["run_group"] == "track-tiny" and run["config"]["update"]["run_id"] == run_id
        history = [r["history"]["item"] for r in records if r["type"] == "history"]
        for key, want in expected(curves, run_id).items():
            got = {int(item["_step"]): float(item[key]) for item in history if key in item}
            assert got == pytest.approx(want, rel=1e-15), key
        summary = {}
        for r in records:
            if r["type"] == "summary":
                summary.update(r["summary"]["update"])
        assert summary["final/status"] == "done"
        assert summary["final/val_loss"] == runs.set_index("run_id").loc[run_id, "val_loss"]
        seen.add(run_id)
    assert seen == set(runs["run_id"])


def test_mlflow_file_store_read_back_equals_curves_parquet(tracked, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 reads its file store only with this switch
    out, curves, runs = tracked
    client = MlflowClient(tracking_uri=(out / "tracking" / "mlruns").resolve().as_uri())
    experiment = client.get_experiment_by_name("track-tiny")
    logged = client.search_runs([experiment.experiment_id])
    assert sorted(run.info.run_name for run in logged) == sorted(runs["run_id"])
    for run in logged:
        run_id = run.info.run_name
        for key, want in expected(curves, run_id).items():
            got = {m.step: m.value for m in client.get_metric_history(run.info.run_id, key)}
            assert got == want, key
        assert run.data.params["train.lr"] == "0.01" and run.data.tags["sweep"] == "track-tiny"
        assert run.data.metrics["final.val_loss"] == runs.set_index("run_id").loc[run_id, "val_loss"]
        assert run.info.status == "FINISHED"


def test_a_failing_tracker_is_reported_once_and_never_raises(tracked, monkeypatch, tmp_path):
    """The sweep's event hook on the real results: MLflow refuses every run, the events still pass on."""
    from scaling_cli.tracking import Tracker

    out, _, runs = tracked
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "nosuchscheme://nowhere")
    problems, events = [], []
    tracker = Tracker(("mlflow",), out, "track-tiny", on_problem=problems.append)
    hook = tracker.wrap(lambda kind, payload: events.append(kind))
    for row in runs.to_dict("records"):
        hook("run", row)
    assert events == ["run", "run"]
    assert len(problems) == 1 and problems[0].startswith("tracking: mlflow: ")
    assert "runs are still recorded in runs.parquet" in problems[0]
    assert tracker.summary() == ["tracking: mlflow missed 2 run(s)"]


def test_unknown_tracker_is_bad_input():
    from scaling_cli.errors import SpecError

    assert chosen_trackers(["wandb,mlflow", "wandb"], ("tensorboard",)) == ("tensorboard", "wandb", "mlflow")
    with pytest.raises(SpecError, match="did you mean 'wandb'"):
        chosen_trackers(["wandbb"])


def test_a_rerun_that_trains_nothing_logs_the_recorded_runs_once(tiny_results):
    """Runs trained without --track are logged by a later `scale sweep --track` that trains nothing, each once:
    a second rerun finds them in the tracker's ledger and logs nothing."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    runs = pd.read_parquet(tiny_results / "runs.parquet")
    curves = pd.read_parquet(tiny_results / "curves.parquet")
    sweep = runs["sweep"].iloc[0]
    first = scale_in_process("sweep", TINY, "--out", tiny_results, "--track", "tensorboard")
    assert first.returncode == 0, first.stderr
    assert f"tracking: tensorboard: logged {len(runs)} run(s) recorded before this call" in first.stdout
    board = tiny_results / "tracking" / "tensorboard" / sweep
    assert sorted(path.name for path in board.iterdir()) == sorted(runs["run_id"])
    run_id = runs["run_id"].iloc[0]
    events = EventAccumulator(str(board / run_id))
    events.Reload()
    want = expected(curves, run_id)["val_loss"]
    assert {event.step: np.float32(event.value) for event in events.Scalars("curve/val_loss")} == {
        step: np.float32(value) for step, value in want.items()
    }
    again = scale_in_process("sweep", TINY, "--out", tiny_results, "--track", "tensorboard")
    assert again.returncode == 0, again.stderr
    assert "tracking" not in again.stdout + again.stderr
    assert all(len(list((board / name).iterdir())) == 1 for name in runs["run_id"]), "one event file per run"
