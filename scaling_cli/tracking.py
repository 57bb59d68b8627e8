"""Log each settled run of a sweep to experiment trackers (W&B, TensorBoard, MLflow) from its files in the store.

Parquet stays the record: a tracker gets a copy of what the run's files hold (config.json, the curve points,
row.json), named by the run id and grouped by the sweep, after the run is settled. A tracker that fails never
fails a run: its first problem is reported once, and `summary()` counts the runs it missed.

Each tracker keeps a ledger of the run ids it has logged (tracking/<tracker>.logged), so a sweep rerun with
`--track` that trains nothing still logs the settled runs that tracker has not seen (`catch_up`), and never logs
a run twice. Runs logged before the ledger existed are not in it and are logged once more.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from scaling_cli.errors import SpecError
from scaling_cli.spec import TRACKERS
from scaling_cli.store import CURVES_COLUMNS, Store
from scaling_cli.validate import one_of

TRACK_DIR = "tracking"  # under the results directory: tensorboard/, wandb/, mlruns/
LEDGER_SUFFIX = ".logged"  # tracking/<tracker>.logged: one run id a line, appended once the tracker took the run
CURVE_METRICS = tuple(column for column in CURVES_COLUMNS if column not in ("run_id", "step"))
EXTRAS = {"wandb": "wandb", "tensorboard": "tensorboard", "mlflow": "mlflow"}  # pip extra per tracker


def chosen_trackers(cli_values, spec_values=()) -> tuple[str, ...]:
    """The trackers of the spec's `track` and every `--track` (repeatable or comma-separated), each once."""
    names = [name.strip() for value in cli_values or () for name in str(value).split(",") if name.strip()]
    for name in names:
        try:
            one_of(TRACKERS)(name)
        except ValueError as exc:
            raise SpecError("--track", name, str(exc)) from None
    return tuple(dict.fromkeys([*spec_values, *names]))


@dataclass(frozen=True)
class RunRecord:
    """What a tracker gets of one run: its id, flat config, curve points and final row."""

    run_id: str
    sweep: str
    config: dict
    curve: list[dict]
    row: dict


def read_record(store: Store, run_id: str, sweep: str) -> RunRecord:
    """A settled run's record from its files (the same files runs.parquet and curves.parquet are built from)."""
    config_path = store.run_dir(run_id) / "config.json"
    config = json.loads(config_path.read_text()) if config_path.is_file() else {}
    row = store.read_row(run_id) or {}
    return RunRecord(run_id, sweep, flatten(config), store.read_curve(run_id), row)


def flatten(table: dict, prefix: str = "") -> dict:
    """{"train": {"lr": 0.01}} -> {"train.lr": 0.01}: trackers show flat keys."""
    flat = {}
    for key, value in table.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def numbers(table: dict) -> dict[str, float]:
    """The entries of a row or point that are numbers (booleans and text left out)."""
    return {
        key: float(value)
        for key, value in table.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value is not None
    }


class TensorBoardLog:
    """One event directory per run: tracking/tensorboard/<sweep>/<run id>; curve scalars by training step."""

    def __init__(self, root: Path):
        from torch.utils.tensorboard import SummaryWriter  # needs the tensorboard package

        self.writer_class = SummaryWriter
        self.root = root / "tensorboard"

    def log(self, record: RunRecord) -> None:
        writer = self.writer_class(log_dir=str(self.root / record.sweep / record.run_id))
        try:
            writer.add_text("config", _markdown(record.config))
            for point in record.curve:
                for key in CURVE_METRICS:
                    if key in point and point[key] is not None:
                        writer.add_scalar(f"curve/{key}", point[key], global_step=point["step"])
            last_step = record.curve[-1]["step"] if record.curve else 0
            for key, value in numbers(record.row).items():
                writer.add_scalar(f"final/{key}", value, global_step=last_step)
            writer.add_text("final", _markdown(record.row))
        finally:
            writer.close()


class WandbLog:
    """One W&B run per run: named by the run id, grouped by the sweep; offline files under tracking/wandb
    when WANDB_MODE=offline (otherwise wherever the user's W&B settings send it)."""

    def __init__(self, root: Path):
        import wandb

        self.wandb = wandb
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)

    def log(self, record: RunRecord) -> None:
        run = self.wandb.init(
            project=os.environ.get("WANDB_PROJECT", "scale"),
            name=record.run_id,
            group=record.sweep,
            job_type="train",
            dir=str(self.root),
            config=record.config,
            settings=self.wandb.Settings(console="off", silent=True, x_disable_stats=True),
        )
        try:
            for point in record.curve:
                run.log({key: point[key] for key in CURVE_METRICS if key in point}, step=int(point["step"]))
            run.summary.update({f"final/{key}": value for key, value in record.row.items() if _plain(value)})
        finally:
            run.finish(exit_code=0 if record.row.get("status") == "done" else 1)


class MlflowLog:
    """One MLflow run per run in the experiment named by the sweep: MLFLOW_TRACKING_URI when set, else a local
    file store under tracking/mlruns."""

    def __init__(self, root: Path):
        from mlflow.tracking import MlflowClient

        uri = os.environ.get("MLFLOW_TRACKING_URI")
        if not uri:
            # MLflow 3 keeps its file store in maintenance mode behind this switch; it is still the one local
            # store that needs no database package.
            os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
            uri = (root / "mlruns").resolve().as_uri()
        self.client = MlflowClient(tracking_uri=uri)

    def log(self, record: RunRecord) -> None:
        from mlflow.entities import Metric, Param, RunTag

        experiment = self.client.get_experiment_by_name(record.sweep)
        experiment_id = experiment.experiment_id if experiment else self.client.create_experiment(record.sweep)
        run = self.client.create_run(experiment_id, run_name=record.run_id, tags={"sweep": record.sweep})
        run_id = run.info.run_id
        stamp = int(run.info.start_time)
        params = [Param(key[:250], str(value)[:6000]) for key, value in record.config.items()]
        metrics = [
            Metric(key, float(point[key]), stamp, int(point["step"]))
            for point in record.curve
            for key in CURVE_METRICS
            if point.get(key) is not None
        ]
        last_step = int(record.curve[-1]["step"]) if record.curve else 0
        metrics += [Metric(f"final.{key}", value, stamp, last_step) for key, value in numbers(record.row).items()]
        tags = [RunTag(f"final.{key}", str(value)) for key, value in record.row.items() if isinstance(value, str)]
        for start in range(0, len(params), 100):  # MLflow takes at most 100 params per batch
            self.client.log_batch(run_id, params=params[start : start + 100])
        for start in range(0, len(metrics), 1000):
            self.client.log_batch(run_id, metrics=metrics[start : start + 1000])
        self.client.log_batch(run_id, tags=tags)
        self.client.set_terminated(run_id, status="FINISHED" if record.row.get("status") == "done" else "FAILED")


LOGGERS = {"tensorboard": TensorBoardLog, "wandb": WandbLog, "mlflow": MlflowLog}


class Tracker:
    """The trackers of one sweep. `wrap(on_event)` passes every sweep event on and logs each settled run."""

    def __init__(self, names, results: Path, sweep: str, on_problem: Callable[[str], None]):
        self.store = Store(results)
        self.sweep = sweep
        self.on_problem = on_problem
        self.loggers: dict[str, object | None] = {}  # None: the tracker could not start
        self.missed = dict.fromkeys(names, 0)  # runs not logged, per tracker
        self.reported: set[str] = set()
        self.tried: set[str] = set()  # run ids this call has handed to the trackers
        self._ledgers: dict[str, set[str]] = {}
        self.root = root = Path(results) / TRACK_DIR
        for name in names:
            try:
                self.loggers[name] = LOGGERS[name](root)
            except ImportError as exc:
                self.loggers[name] = None
                self._problem(name, f"not installed ({exc.name}); pip install 'scaling-cli[{EXTRAS[name]}]'")
            except Exception as exc:  # noqa: BLE001 - a tracker never stops a sweep
                self.loggers[name] = None
                self._problem(name, _one_line(exc))

    def wrap(self, on_event: Callable) -> Callable:
        def events(kind: str, payload) -> None:
            on_event(kind, payload)
            if kind == "run" and self.missed:
                self.log(str(payload["run_id"]))

        return events

    def log(self, run_id: str, names=None) -> int:
        """Log one settled run to every tracker (or those named); a tracker's failure is reported the first time
        only. Returns how many trackers took the run."""
        self.tried.add(run_id)
        try:
            record = read_record(self.store, run_id, self.sweep)
        except Exception as exc:  # noqa: BLE001
            record, unreadable = None, f"run {run_id}: {_one_line(exc)}"
        took = 0
        for name, logger in self.loggers.items():
            if names is not None and name not in names:
                continue
            if logger is None or record is None:
                self.missed[name] += 1
                if record is None:
                    self._problem(name, unreadable)
                continue
            try:
                logger.log(record)
            except Exception as exc:  # noqa: BLE001 - tracking is a copy; the run is recorded in parquet
                self.missed[name] += 1
                self._problem(name, f"run {run_id}: {_one_line(exc)}")
                continue
            took += 1
            self._note_logged(name, run_id)
        return took

    def catch_up(self, run_ids) -> list[str]:
        """Log the settled runs among `run_ids` that this call did not train and a tracker has not logged before
        (a rerun that trains nothing, or a tracker added later); one line per tracker that took any."""
        caught = dict.fromkeys(self.loggers, 0)
        for run_id in run_ids:
            if run_id in self.tried or self.store.read_row(run_id) is None:
                continue
            names = [name for name, logger in self.loggers.items() if run_id not in self.logged(name)]
            if names:
                self.log(run_id, names)
                for name in names:
                    caught[name] += run_id in self.logged(name)
        return [
            f"tracking: {name}: logged {count} run(s) recorded before this call"
            for name, count in caught.items()
            if count
        ]

    def logged(self, name: str) -> set[str]:
        """The run ids this tracker has logged into this results directory, by its ledger."""
        if name not in self._ledgers:
            path = self.root / f"{name}{LEDGER_SUFFIX}"
            self._ledgers[name] = set(path.read_text().split()) if path.is_file() else set()
        return self._ledgers[name]

    def _note_logged(self, name: str, run_id: str) -> None:
        self.logged(name).add(run_id)
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / f"{name}{LEDGER_SUFFIX}", "a") as ledger:
            ledger.write(run_id + "\n")

    def _problem(self, name: str, text: str) -> None:
        if name not in self.reported:
            self.reported.add(name)
            self.on_problem(f"tracking: {name}: {text} (runs are still recorded in runs.parquet)")

    def summary(self) -> list[str]:
        """One line per tracker that missed runs; empty when every run reached every tracker."""
        return [f"tracking: {name} missed {count} run(s)" for name, count in self.missed.items() if count]


def _markdown(table: dict) -> str:
    return "\n".join(f"    {key} = {json.dumps(value)}" for key, value in table.items())


def _plain(value) -> bool:
    return isinstance(value, (str, int, float, bool)) and not (isinstance(value, float) and math.isnan(value))


def _one_line(exc: BaseException) -> str:
    return " | ".join(f"{type(exc).__name__}: {exc}".strip().splitlines())[:300]
