"""The live progress of a sweep counts FLOPs as they are trained: before its only run finishes, the FLOPs done
and the ETA already follow that run's curve points."""

from __future__ import annotations

import pytest
from conftest import one_run_spec

from scaling_cli.executors.local import LocalExecutor
from scaling_cli.plan import load_sweep
from scaling_cli.sweep import run_sweep

pytestmark = pytest.mark.slow  # real sweeps, polled often


def spec_text(tokens: int | list[int]) -> str:
    return one_run_spec("progress", tokens, every=5, batches=1)


def test_flops_done_and_eta_move_while_the_run_trains(tmp_path):
    spec = tmp_path / "progress.toml"
    spec.write_text(spec_text(100 * 8 * 32))
    events: list[tuple[str, object]] = []
    outcome = run_sweep(
        load_sweep(spec), tmp_path / "out", LocalExecutor(workers=1), retries=0, poll_s=0.05,
        on_event=lambda kind, payload: events.append((kind, payload)),
    )  # fmt: skip
    assert outcome.counts["done"] == 1
    finished_at = next(i for i, (kind, _) in enumerate(events) if kind == "run")
    during = [
        p
        for kind, p in events[:finished_at]
        if kind == "progress" and p.active and 0 < (p.active[0]["seen"] or 0) < p.active[0]["tokens"]
    ]
    assert during, "no progress event saw the run part-way through"
    total = during[-1].flops_total
    assert 0 < during[-1].flops_done < total and during[-1].eta_s is not None
    assert during[-1].flops_done / total == pytest.approx(during[-1].active[0]["seen"] / during[-1].active[0]["tokens"])
    last = next(p for kind, p in events[finished_at:] if kind == "progress")
    assert last.flops_done == total and last.runs_settled == 1


def test_a_poll_reads_only_the_rows_of_running_or_finished_units(tmp_path, monkeypatch):
    """Pending runs' row files are not re-read on every poll: the scheduler watches the units it runs and
    collects, and looks at every other row only every OTHER_PROCESS_SCAN_S (rows of other sweep processes)."""
    from scaling_cli import sweep
    from scaling_cli.store import Store

    budgets = [steps * 256 for steps in (10, 12, 14, 16, 18, 20)]  # six one-run units, trained one at a time
    spec = tmp_path / "progress.toml"
    spec.write_text(spec_text(budgets))
    reads: list[str] = []
    real_read_row = Store.read_row

    def counting_read_row(self, run_id):
        reads.append(run_id)
        return real_read_row(self, run_id)

    monkeypatch.setattr(Store, "read_row", counting_read_row)
    monkeypatch.setattr(sweep, "OTHER_PROCESS_SCAN_S", 3600.0)
    events: list[str] = []
    outcome = run_sweep(
        load_sweep(spec), tmp_path / "out", LocalExecutor(workers=1), retries=0, poll_s=0.05,
        on_event=lambda kind, payload: events.append(kind),
    )  # fmt: skip
    assert outcome.counts["done"] == 6 and events.count("run") == 6
    polls = events.count("progress")
    # Reading every unsettled row each poll costs 4.5 reads a poll here on average (6, 5, ... 1 pending, plus
    # the running unit's progress); watching the running unit costs 2 (its row and its progress).
    assert len(reads) < 3 * polls + 40, (len(reads), polls)
