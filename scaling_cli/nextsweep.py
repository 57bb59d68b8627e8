"""The sweep side of `scale suggest`: candidate runs on a results directory's own shape family, what each
costs, which are already done, and the spec that trains exactly a chosen set of (size, token budget) cells.

Candidates come from the sweep's spec.toml: its widths and the widths its depth and head rule gives beyond
the largest (up to `extension` x its parameters, about sqrt(2) apart in N), times its token budgets and
budgets up to `extension` x the largest; with `below` > 1 also smaller widths and shorter budgets down to
the smallest / `below`. Every other setting (data, tokenizer, parametrisation, learning
rates, seeds, schedule) is the sweep's own, so a candidate has the run id the sweep would give it: a cell
whose runs are all in the results is known, and sweeping the next spec into the same directory is a merge.
The next spec lists its sizes as explicit shapes, each with its own token budgets (`tokens` of a shape), so
any set of cells is one spec; the shapes are the ones the sweep's rule gives, so the run ids are unchanged.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from scaling_cli.errors import FitError, SpecError
from scaling_cli.plan import Sweep, plan_runs
from scaling_cli.spec import parse_spec, tomllib
from scaling_cli.store import NOT_RETRAINED
from scaling_cli.sweep_plan import branch_cost

STEP = math.sqrt(2.0)  # spacing of candidate sizes (in N) and budgets (in D)
DEFAULT_HEAD_DIM = 64  # heads_for_width's default: widths must be multiples of it when the spec gives no head rule


@dataclass(frozen=True)
class CandidateGrid:
    """Sizes x budgets around a sweep. Cells are indexed width-major: cell = i * len(budgets) + j."""

    raw: dict  # the sweep's spec.toml as parsed TOML
    sizes: tuple  # per width, what [model] lists for it (an int d_model, or a shapes table)
    shapes: tuple[dict, ...]  # per width, the shape the sweep's rule gives it: {d_model, n_layer, n_head}
    labels: tuple[str, ...]
    n: np.ndarray  # (W,) N of each size in the fit's convention (params or params_nonembed)
    budgets: np.ndarray  # (T,) token budgets
    cell_flops: np.ndarray  # (W, T) training FLOPs of every run of the cell (lrs, seeds, batch sizes, datasets)
    # (W, T) what the cell's runs add as WSD branches of a longer budget's trunk (sweep_plan.branch_cost):
    # their cooldowns; equal to cell_flops for other schedules, where nothing is shared
    branch_flops: np.ndarray
    known: np.ndarray  # (W, T) every run of the cell is already settled in the results
    seeds: int
    base_width: int | None  # muP: the results' base width, pinned in the next spec so its run ids match
    unique_tokens: float | None = None  # the smallest training split among the results' data sets, if recorded

    def epochs(self, tokens: float) -> float | None:
        """Passes over the training data a run of `tokens` makes (on the smallest data set of the results)."""
        return float(tokens) / self.unique_tokens if self.unique_tokens else None

    @property
    def spent(self) -> float:
        """Compute of the cells already in the results, counted as the sweep plans it."""
        return self.cost_of(np.flatnonzero(self.known.ravel()).tolist())

    @property
    def cells(self) -> tuple[np.ndarray, np.ndarray]:
        """(N, D) of every cell, width-major."""
        n, d = np.meshgrid(self.n, self.budgets, indexing="ij")
        return n.ravel(), d.ravel()

    def cost_of(self, cells) -> float:
        """Compute of training a set of cells as the sweep's plan counts it: per size the largest budget trains
        in full and every smaller one adds its branch cost (with WSD its cooldown only)."""
        flops, branch, per = self.cell_flops.ravel(), self.branch_flops.ravel(), len(self.budgets)
        by_size: dict[int, list[int]] = {}
        for cell in set(cells):
            by_size.setdefault(cell // per, []).append(cell)
        total = 0.0
        for members in by_size.values():
            trunk = max(members, key=lambda cell: self.budgets[cell % per])
            total += float(flops[trunk]) + sum(float(branch[cell]) for cell in members if cell != trunk)
        return total


def read_spec_toml(results: Path) -> tuple[dict, str, Path]:
    path = Path(results) / "spec.toml"
    if not path.is_file():
        raise FitError(str(results), "spec.toml", "not found: a results directory written by `scale sweep` has one")
    text = path.read_text(encoding="utf-8")
    try:
        return tomllib.loads(text), text, path
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(str(path), "toml", f"malformed TOML: {exc}") from None


def candidate_grid(
    results: Path, n_column: str = "params", extension: float = 4.0, below: float = 1.0
) -> CandidateGrid:
    """The candidate grid of a results directory's sweep (see the module docstring)."""
    raw, text, path = read_spec_toml(results)
    source = plan_runs(parse_spec(raw, path=path, text=text))
    ran = _settled_runs(results)
    sizes = _sizes(raw, n_column, extension, path, ran, below)
    budgets = _budgets(source, extension, ran, below)
    grid_raw = with_grid(raw, sizes, budgets)
    sweep = plan_runs(parse_spec(grid_raw, path=path, text=text))
    base_width = source.runs()[0].model.base_width
    grid = _grid(raw, sweep, sizes, budgets, set(ran["run_id"]), n_column, base_width)
    unique = ran["unique_tokens"].dropna()  # absent from results written before it was recorded
    return replace(grid, unique_tokens=float(unique.min()) if len(unique) else None)


def _n_of(run, n_column: str) -> float:
    return float(run.params_nonembed if n_column == "params_nonembed" else run.params)


def _sizes(raw: dict, n_column: str, extension: float, path: Path, ran: pd.DataFrame, below: float = 1.0) -> list:
    """The sizes of the spec and of the runs in the results (a merged sweep's spec.toml holds only the last
    grid), then larger ones on the spec's rule up to `extension` x the largest N, and smaller ones down to
    the smallest N / `below`, >= sqrt(2) apart."""
    model = raw["model"]
    columns = ["d_model", "n_layer", "n_head"]
    if "shapes" in model:  # a shape's own `tokens` (a spec written by suggest) are budgets, not part of the size
        written = [{k: shape[k] for k in columns} for shape in model["shapes"]]
        seen = [dict(zip(columns, map(int, row))) for row in ran[columns].drop_duplicates().to_numpy()]
        written += [s for s in seen if s not in written]
    else:
        written = _as_list(model["d_model"])
        written += sorted({int(w) for w in ran["d_model"]} - {int(w) for w in written})
    largest = max(written, key=lambda s: _width(s))
    n_max = max(n for n in (_size_n(raw, s, path, n_column) for s in written) if n is not None)
    quantum = _width_quantum(model, largest)
    sizes, last_n = list(written), n_max
    width = _width(largest)
    while width < 16 * _width(largest):
        width += quantum
        entry = _scaled(largest, width, quantum)
        n = _size_n(raw, entry, path, n_column)
        if n is None:
            continue
        if n > extension * n_max * 1.0001:
            break
        if n >= last_n * STEP * 0.97:
            sizes.append(entry)
            last_n = n
    return _smaller_sizes(raw, written, n_column, below, path, quantum) + sizes


def _smaller_sizes(raw: dict, written: list, n_column: str, below: float, path: Path, quantum: int) -> list:
    """Widths below the smallest on the same rule (at least one head), down to its N / `below`, smallest first."""
    if below <= 1.0:
        return []
    smallest = min(written, key=_width)
    n_min = _size_n(raw, smallest, path, n_column)
    if n_min is None:
        return []
    found, last_n = [], n_min
    for width in range(_width(smallest) - quantum, quantum - 1, -quantum):
        entry = _scaled(smallest, width, quantum)
        n = _size_n(raw, entry, path, n_column)
        if n is None:
            continue
        if n < n_min / below / 1.0001:
            break
        if n <= last_n / STEP * 1.03:
            found.append(entry)
            last_n = n
    return found[::-1]


def _as_list(value) -> list:
    return list(value) if isinstance(value, list) else [value]


def _width(size) -> int:
    return int(size["d_model"] if isinstance(size, dict) else size)


def _width_quantum(model: dict, largest) -> int:
    if isinstance(largest, dict):
        return int(largest["d_model"] // largest["n_head"])  # keep the largest shape's head size
    if "head_dim" in model:
        return int(model["head_dim"])
    if "n_head" in model:
        return int(model["n_head"])
    return DEFAULT_HEAD_DIM


def _scaled(largest, width: int, quantum: int):
    """A size entry of the given width on the sweep's rule (explicit shapes keep depth and head size)."""
    if isinstance(largest, dict):
        return {"d_model": width, "n_layer": int(largest["n_layer"]), "n_head": width // quantum}
    return width


def _size_n(raw: dict, entry, path: Path, n_column: str) -> float | None:
    """N of one size on the sweep's rules, or None when the rules reject that width."""
    single = with_grid(raw, [entry], [_as_list(raw["train"].get("tokens", [1 << 20]))[-1]])
    try:
        run = plan_runs(parse_spec(single, path=path)).runs()[0]
    except SpecError:
        return None
    return _n_of(run, n_column)


def _budgets(source: Sweep, extension: float, ran: pd.DataFrame, below: float = 1.0) -> list[int]:
    """The token budgets of the spec and of the runs in the results, sqrt(2) steps up to `extension` x the
    largest and down to the smallest / `below` (no shorter than warmup and one step), in whole optimiser
    steps."""
    planned = sorted({run.tokens for run in source.runs()})
    step = max(run.train.batch_size * run.model.seq_len for run in source.runs())
    # runs.parquet holds the tokens trained (whole optimiser steps), not the budget the spec asked for
    others = {int(t) for t in ran["tokens"] if all(abs(int(t) - b) >= step for b in planned)}
    trained = sorted(set(planned) | others)
    largest = trained[-1]
    extra = [largest * STEP**k for k in range(1, int(round(math.log(extension) / math.log(STEP))) + 1)]
    shortest = max(step, max(run.train.warmup_tokens for run in source.runs()) + step)
    lower = [trained[0] / STEP**k for k in range(1, int(math.floor(math.log(below) / math.log(STEP) + 1e-9)) + 1)]
    rounded = [max(step, int(round(t / step)) * step) for t in extra]
    rounded += [int(round(t / step)) * step for t in lower if int(round(t / step)) * step >= shortest]
    return sorted(set(trained) | set(rounded))


def with_grid(raw: dict, sizes, budgets) -> dict:
    """The spec document with its sizes and token budgets replaced (isoFLOP budgets become token budgets)."""
    out = copy.deepcopy(raw)
    model = out["model"]
    if sizes and isinstance(sizes[0], dict):
        model.pop("d_model", None)
        model["shapes"] = [dict(s) for s in sizes]
    else:
        model.pop("shapes", None)
        model["d_model"] = [int(s) for s in sizes]
    out.pop("isoflop", None)
    out["train"]["tokens"] = [int(t) for t in budgets]
    return out


def _settled_runs(results: Path) -> pd.DataFrame:
    """run_id, d_model, n_layer, n_head, tokens and unique_tokens (NaN where not recorded) of the runs done or
    diverged (NOT_RETRAINED: a failed run may still train)."""
    columns = ["run_id", "d_model", "n_layer", "n_head", "tokens", "unique_tokens"]
    runs = Path(results) / "runs.parquet"
    if not runs.is_file():
        return pd.DataFrame(columns=columns)
    frame = pd.read_parquet(runs)
    return frame.loc[frame["status"].isin(NOT_RETRAINED)].reindex(columns=columns)


def _grid(
    raw: dict, sweep: Sweep, sizes: list, budgets: list[int], settled: set[str], n_column: str, base_width
) -> CandidateGrid:
    widths = [_width(s) for s in sizes]
    flops = np.zeros((len(sizes), len(budgets)))
    branch = np.zeros((len(sizes), len(budgets)))
    known = np.ones((len(sizes), len(budgets)), dtype=bool)
    n = np.zeros(len(sizes))
    shapes: list[dict] = [{} for _ in sizes]
    for run in sweep.runs():
        i, j = widths.index(run.model.d_model), budgets.index(run.tokens)
        flops[i, j] += run.flops
        branch[i, j] += branch_cost(run)
        known[i, j] &= run.run_id in settled
        n[i] = _n_of(run, n_column)
        shapes[i] = {"d_model": run.model.d_model, "n_layer": run.model.n_layer, "n_head": run.model.n_head}
    return CandidateGrid(
        raw=raw,
        sizes=tuple(sizes),
        shapes=tuple(shapes),
        labels=tuple(f"d_model {s['d_model']}, {s['n_layer']} layers, {s['n_head']} heads" for s in shapes),
        n=n,
        budgets=np.array(budgets, dtype=float),
        cell_flops=flops,
        branch_flops=branch,
        known=known,
        seeds=len(sweep.spec.seeds),
        base_width=base_width,
    )


# ---- the next spec ----


def next_spec_text(grid: CandidateGrid, cells, header: list[str]) -> str:
    """TOML of the sweep's spec training exactly the chosen cells: one explicit shape per size, with the token
    budgets of its cells (the rule's own depth and heads, and muP's base width pinned, so run ids match)."""
    per = len(grid.budgets)
    by_size: dict[int, list[int]] = {}
    for cell in sorted(cells):
        by_size.setdefault(cell // per, []).append(int(grid.budgets[cell % per]))
    shapes = [{**grid.shapes[i], "tokens": budgets} for i, budgets in sorted(by_size.items())]
    raw = with_grid(grid.raw, shapes, sorted({t for budgets in by_size.values() for t in budgets}))
    model = raw["model"]
    for key in ("n_layer", "n_head", "head_dim"):  # resolved into each shape
        model.pop(key, None)
    if grid.base_width is not None:
        model["base_width"] = int(grid.base_width)
    return "".join(f"# {line}\n" for line in header) + to_toml(raw)


def to_toml(document: dict) -> str:
    """A spec document as TOML: top-level keys, then one [table] per nested table."""
    lines = [f"{key} = {_value(value)}" for key, value in document.items() if not isinstance(value, dict)]
    for key, table in document.items():
        if isinstance(table, dict):
            lines += ["", f"[{key}]"]
            lines += [f"{k} = {_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


def _value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")
