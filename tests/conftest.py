"""Shared test fixtures: the `scale` executable, a subprocess runner, and an isolated data cache."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
SCALE = str(Path(sys.executable).with_name("scale"))


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
