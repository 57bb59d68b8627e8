"""What the trainer tests share: a first-order Markov data set, a training subprocess to kill with -9 and resume,
and the curve a run writes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch

from scaling_cli.data import DataOptions, PreparedData, prepare
from scaling_cli.model import ModelConfig
from scaling_cli.train import CHECKPOINT_NAME, CURVE_NAME, TrainConfig, train_run

# One run in a process of its own, so that it can be killed: its result lands in run_dir/result.json.
DRIVER = """
import json, sys
from pathlib import Path
from dataclasses import asdict
from scaling_cli.data import open_prepared
from scaling_cli.model import ModelConfig
from scaling_cli.train import TrainConfig, train_run

args = json.loads(sys.argv[1])
result = train_run(ModelConfig(**args["model"]), TrainConfig(**args["train"]), open_prepared(args["data"]),
                   Path(args["run_dir"]))
Path(args["run_dir"], "result.json").write_text(json.dumps(asdict(result)))
"""


def first_order_markov(tmp_path_factory, markov_bytes: int) -> PreparedData:
    """A first-order chain over 16 symbols in a fresh cache: a tiny model gets close to its entropy rate quickly."""
    options = DataOptions(markov_bytes=markov_bytes, markov_alphabet=16, markov_order=1)
    return prepare("markov", options, cache_dir=tmp_path_factory.mktemp("data"))


def read_curve(run_dir: Path) -> list[dict]:
    """A run's curve, one dict per evaluation."""
    return [json.loads(line) for line in (run_dir / CURVE_NAME).read_text().splitlines()]


def start_driver(model: ModelConfig, train: TrainConfig, data: PreparedData, run_dir: Path) -> subprocess.Popen:
    """train_run in a subprocess (DRIVER, written next to run_dir); stderr is kept for the failure message."""
    script = Path(run_dir).parent / "driver.py"
    script.write_text(DRIVER)
    args = {"model": asdict(model), "train": asdict(train), "data": str(data.path), "run_dir": str(run_dir)}
    return subprocess.Popen([sys.executable, str(script), json.dumps(args)], stderr=subprocess.PIPE)


def killed_and_resumed(model: ModelConfig, train: TrainConfig, data: PreparedData, work: Path) -> tuple[dict, int]:
    """Train once killed with -9 in a process of its own after a checkpoint, then resumed (work/interrupted),
    and once without a break (work/reference); check both end with the same result. Returns that result and the
    step the killed run's checkpoint held. Only the killed run needs a process of its own: the reference and the
    resumed run train in this one (the run's thread count is `train`'s, so the arithmetic is the same)."""
    victim_dir = work / "interrupted"
    kill_once_checkpointed(start_driver(model, train, data, victim_dir), victim_dir)
    assert not (victim_dir / "result.json").exists()
    killed_at = torch.load(victim_dir / CHECKPOINT_NAME, weights_only=True)["step"]
    threads = torch.get_num_threads()
    try:
        expected = asdict(train_run(model, train, data, work / "reference"))
        got = asdict(train_run(model, train, data, victim_dir))
    finally:
        torch.set_num_threads(threads)  # train_run sets the process's thread count
    for key in ("status", "steps", "tokens", "train_loss", "val_loss", "val_bpb", "flops", "flops_6nd"):
        assert got[key] == expected[key], key
    return got, killed_at


def kill_once_checkpointed(victim: subprocess.Popen, run_dir: Path, points: int = 3) -> None:
    """kill -9 a driver once its checkpoint exists and its curve has `points` points, past the checkpoint, so
    that resuming must drop some."""
    curve = Path(run_dir) / CURVE_NAME

    def far_enough() -> bool:
        return (run_dir / CHECKPOINT_NAME).exists() and curve.exists() and len(curve.read_text().splitlines()) >= points

    deadline = time.monotonic() + 120
    while not far_enough():
        assert victim.poll() is None, "the run finished before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.005)
    os.kill(victim.pid, signal.SIGKILL)
    assert victim.wait(timeout=30) == -signal.SIGKILL
