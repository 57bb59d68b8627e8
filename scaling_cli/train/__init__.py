"""Training one run: `train_run(model_cfg, train_cfg, data, run_dir) -> RunResult`.

Everything a step depends on is a pure function of (config, step): the batch comes from
`data.get_batch(tokens, seq_len, batch_size, seed, step)` and the learning rate from the step number.
So a run resumed from its checkpoint, or a WSD cooldown branch started from a trunk's saved state,
retraces exactly the steps an uninterrupted run would take (bit for bit on CPU).

Modules: `config` (TrainConfig, step plan, schedule; no torch), `runtime` (device, dtype, threads, compile,
clock), `checkpoint` (atomic state files, restore, trunk states, the curve file) and `loop` (the loop and
its evaluation). Files in `run_dir`: `curve.jsonl` (one JSON object per evaluation, appended as training
goes), `checkpoint.pt` (the latest complete training state, replaced atomically) and `trunk/step_<k>.pt`
(states saved for cooldown branches).
"""

from scaling_cli.train.checkpoint import CHECKPOINT_NAME, CURVE_NAME, TRUNK_DIR, load_payload, save_state
from scaling_cli.train.config import StepPlan, TrainConfig, lr_at, plan_steps, wsd_branch_step
from scaling_cli.train.loop import EVAL_BATCH_SIZE, RunResult, bits_per_byte, evaluate, train_run, validation_windows
from scaling_cli.train.runtime import resolve_device

__all__ = [
    "CHECKPOINT_NAME",
    "CURVE_NAME",
    "EVAL_BATCH_SIZE",
    "TRUNK_DIR",
    "RunResult",
    "StepPlan",
    "TrainConfig",
    "bits_per_byte",
    "evaluate",
    "load_payload",
    "lr_at",
    "plan_steps",
    "resolve_device",
    "save_state",
    "train_run",
    "validation_windows",
    "wsd_branch_step",
]
