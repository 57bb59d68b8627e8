"""Every spec the repository ships in sweeps/ plans without error, and each CPU spec, shrunk to its first two
widths, budgets, learning rates and data sets, trains, fits and plots through `scale` without a traceback."""

from __future__ import annotations

import re
import tomllib

import pytest
import torch
from conftest import REPO, run_scale

SPECS = sorted((REPO / "sweeps").glob("*.toml"))
CPU_SPECS = [spec for spec in SPECS if tomllib.loads(spec.read_text()).get("device", "cpu") == "cpu"]
# The axes whose lists are cut to their first two values; every other key of the spec stays as shipped.
SHRUNK_AXES = ("d_model", "tokens", "lr", "dataset")
LIST_VALUE = re.compile(rf"(?m)^({'|'.join(SHRUNK_AXES)})(\s*=\s*)\[([^\]]*)\]")


def shrink(text: str) -> str:
    """The spec with each list of SHRUNK_AXES cut to its first two values (comments and other keys kept)."""
    return LIST_VALUE.sub(lambda m: f"{m[1]}{m[2]}[{','.join(m[3].split(',')[:2]).strip()}]", text)


def test_shrink_keeps_keys_and_cuts_lists():
    spec = tomllib.loads((REPO / "sweeps" / "data-quality.toml").read_text())
    shrunk = tomllib.loads(shrink((REPO / "sweeps" / "data-quality.toml").read_text()))
    assert shrunk["model"]["d_model"] == spec["model"]["d_model"][:2]
    assert shrunk["train"]["tokens"] == spec["train"]["tokens"][:2]
    assert shrunk["dataset"] == spec["dataset"][:2]
    assert {k: v for k, v in shrunk["train"].items() if k != "tokens"} == {
        k: v for k, v in spec["train"].items() if k != "tokens"
    }


def _no_traceback(result, what: str) -> None:
    assert "Traceback" not in result.stderr + result.stdout, f"{what}:\n{result.stderr}"
    assert result.returncode == 0, f"{what} exited {result.returncode}:\n{result.stderr}"


@pytest.mark.parametrize("spec", SPECS, ids=[spec.stem for spec in SPECS])
def test_every_shipped_spec_plans(spec, tmp_path):
    result = run_scale("sweep", spec, "--dry-run", "--out", tmp_path / "out")
    device = tomllib.loads(spec.read_text()).get("device", "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        # Refused as bad input: one line, exit 2, nothing stored.
        assert result.returncode == 2, result.stderr
        assert result.stderr.splitlines() == [result.stderr.strip()]
        assert result.stderr.startswith(f"error: {spec}: device: 'cuda' is not available")
        assert "Traceback" not in result.stderr and not (tmp_path / "out").exists()
        return
    _no_traceback(result, f"scale sweep {spec.name} --dry-run")
    assert "compute:" in result.stdout or "remaining:" in result.stdout


@pytest.mark.slow
@pytest.mark.parametrize("spec", CPU_SPECS, ids=[spec.stem for spec in CPU_SPECS])
def test_shrunk_cpu_spec_trains_fits_and_plots(spec, tmp_path):
    shrunk = tmp_path / spec.name
    shrunk.write_text(shrink(spec.read_text()))
    out = tmp_path / "out"
    _no_traceback(run_scale("sweep", shrunk, "--out", out), f"scale sweep {spec.name} (shrunk)")
    _no_traceback(run_scale("fit", out, "--bootstrap", "10"), f"scale fit {spec.name} (shrunk)")
    assert (out / "fit.json").is_file()
    _no_traceback(run_scale("plot", out, "--out", tmp_path / "figures"), f"scale plot {spec.name} (shrunk)")
    assert list((tmp_path / "figures").glob("*.png"))
