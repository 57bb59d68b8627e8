"""Train one data-parallel run: start its ranks as processes on this machine and return rank 0's result."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from pathlib import Path

import torch

from scaling_cli.data import PreparedData, open_prepared
from scaling_cli.model import ModelConfig
from scaling_cli.train.config import TrainConfig
from scaling_cli.train.distributed import Ranks, launch
from scaling_cli.train.loop import RunResult, train_run

RESULT_NAME = "rank0_result.json"
Branch = tuple[Sequence[int], Path | None]  # the steps a trunk saves its state at; the state a branch starts from


def train_data_parallel(
    model_cfg: ModelConfig, train_cfg: TrainConfig, data: PreparedData, run_dir: Path, branch: Branch = ((), None)
) -> RunResult:
    """train_run on `train_cfg.data_parallel` ranks (gloo on CPU, NCCL on CUDA). On a CPU each rank gets
    an equal share of the usable cores unless the config sets its threads. `branch`: train_run's
    (trunk_saves, start_from)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    world = train_cfg.data_parallel
    if not torch.cuda.is_available():  # the run's threads (or the usable cores) shared between its ranks
        threads = train_cfg.threads or len(os.sched_getaffinity(0))
        train_cfg = dataclasses.replace(train_cfg, threads=max(1, threads // world))
    result_path = run_dir / RESULT_NAME
    result_path.unlink(missing_ok=True)
    trunk_saves, start_from = branch
    args = (model_cfg, train_cfg, str(data.path), str(run_dir), tuple(trunk_saves), start_from)
    launch(world, _rank, args, run_dir)
    result = RunResult(**json.loads(result_path.read_text()))
    result_path.unlink()
    return result


def _rank(ranks: Ranks, model_cfg, train_cfg, data_path, run_dir, trunk_saves, start_from) -> None:
    result = train_run(
        model_cfg, train_cfg, open_prepared(data_path), Path(run_dir), trunk_saves=trunk_saves,
        start_from=start_from, ranks=ranks,
    )  # fmt: skip
    if ranks.writer:
        (Path(run_dir) / RESULT_NAME).write_text(json.dumps(dataclasses.asdict(result)))
