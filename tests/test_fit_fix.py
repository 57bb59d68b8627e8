"""--fix NAME=VALUE holds a parameter of any law: the value is kept, reported under `fixed`, has no interval
and is the same in every bootstrap sample; the other parameters are refitted around it. A name no law (or
not the law named as LAW:NAME) can hold is one line and exit 2, naming the parameters that can be held."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import scale_in_process
from test_fit_approaches import envelope_points, isoflop_table
from test_fit_kaplan import runs_table

from scaling_cli.errors import FitError
from scaling_cli.fit import FitOptions, TableOptions, fit_all
from scaling_cli.fit import law as registry
from scaling_cli.fit.pipeline import parse_fixed


def fitted(path, law: str, fixed: dict, bootstrap: int = 8) -> dict:
    document = fit_all(path, TableOptions(), FitOptions(laws=(law,), bootstrap=bootstrap, fixed=fixed))
    return document["groups"]["all"]["laws"][law]


def assert_held(entry: dict, name: str, value: float, params: dict) -> None:
    assert params[name] == pytest.approx(value, rel=1e-12)
    assert entry["fixed"] == {name: value}
    assert entry["intervals"].get(name) is None


def write(frame: pd.DataFrame, path) -> str:
    frame.rename(columns={"N": "params", "D": "tokens", "C": "flops", "loss": "val_loss"}).to_csv(path, index=False)
    return str(path)


@pytest.mark.parametrize("law,table", [("envelope", envelope_points), ("isoflop", isoflop_table)])
def test_a_size_rule_law_holds_its_exponent(tmp_path, law, table):
    path = write(table(), tmp_path / "runs.csv")
    entry = fitted(path, law, {"a": 0.45})
    assert_held(entry, "a", 0.45, entry["params"])
    assert entry["params"]["b"] == pytest.approx(0.5, abs=0.02)  # the free exponent is still the table's
    samples = np.array(entry["bootstrap"]["samples"])
    assert np.allclose(samples[:, 0], 0.45) and samples[:, 2].std() >= 0
    free = fitted(path, law, {})
    assert free["params"]["a"] == pytest.approx(0.5, abs=1e-6) and free["fixed"] == {}


def test_the_linear_baseline_holds_a_weight(tmp_path):
    rng = np.random.default_rng(0)
    points = pd.DataFrame({"N": rng.uniform(1e6, 1e8, 20), "D": rng.uniform(1e8, 1e10, 20)})
    points["C"] = 6 * points["N"] * points["D"]
    points["loss"] = 4.0 - 1e-8 * points["N"] - 5e-11 * points["D"] + 1e-19 * points["C"]
    entry = fitted(write(points, tmp_path / "runs.csv"), "linear", {"w0": 4.0})
    assert_held(entry, "w0", 4.0, entry["params"])
    assert entry["params"]["wN"] == pytest.approx(-1e-8, rel=1e-4)


def test_kaplan_holds_an_exponent_and_a_scale_in_its_own_law_only(tmp_path):
    path = runs_table(tmp_path / "runs.csv")
    entry = fitted(path, "kaplan", {"alpha_D": 0.25, "N_c": 3e5})
    assert entry["fixed"] == {"alpha_D": 0.25, "N_c": 3e5}
    assert entry["L_D"]["params"]["alpha_D"] == pytest.approx(0.25)
    assert entry["L_N"]["params"]["N_c"] == pytest.approx(3e5, rel=1e-9)
    assert entry["L_D"]["intervals"]["alpha_D"] is None and entry["L_N"]["intervals"]["N_c"] is None
    assert entry["L_N"]["intervals"]["alpha_N"] is not None  # the free ones keep theirs
    free = fitted(path, "kaplan", {})
    assert free["L_D"]["params"]["alpha_D"] != pytest.approx(0.25, abs=1e-3)


def test_a_qualified_name_holds_one_law_and_a_bare_one_every_law_that_has_it():
    options = FitOptions(fixed={"envelope:a": 0.4, "alpha": 0.3})
    laws = registry.registered()
    assert laws["envelope"].held(options) == {"a": 0.4}
    assert laws["isoflop"].held(options) == {}
    assert laws["chinchilla"].held(options) == {"alpha": 0.3} == laws["constrained"].held(options)


@pytest.mark.parametrize(
    "value,expected",
    [
        ("nonsense=1", "choose from chinchilla: E, A, B, alpha, beta; kaplan: alpha_N"),
        ("isoflop:alpha=0.3", "choose from isoflop: a, N0, b, D0"),
        ("kaplan:N0=2", "choose from kaplan: alpha_N, N_c, L_N.E"),
    ],
)
def test_a_name_no_law_holds_names_the_parameters(value, expected):
    with pytest.raises(FitError, match=expected.replace(".", r"\.")):
        parse_fixed([value])


def test_an_unknown_fix_is_one_line_and_exit_2(tmp_path):
    path = write(isoflop_table(), tmp_path / "runs.csv")
    result = scale_in_process("fit", path, "--law", "isoflop", "--fix", "isoflop:alpha=0.3", "--bootstrap", "0")
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "isoflop:alpha" in result.stderr and "a, N0, b, D0" in result.stderr
