"""fit.table: the one column resolver and the honest grouping of runs (average seeds only)."""

from __future__ import annotations

import pytest

from scaling_cli.errors import FitError
from scaling_cli.fit.table import TableOptions, resolve_columns


def test_column_resolver_takes_defaults_explicit_names_and_derives_missing_d_or_c():
    results = ["run_id", "params", "params_nonembed", "tokens", "flops", "flops_6nd", "val_loss"]
    assert resolve_columns(results, None, "t") == {"n": "params", "d": "tokens", "c": "flops", "loss": "val_loss"}
    assert resolve_columns(results, TableOptions(params="params_nonembed", flops="flops_6nd"), "t") == {
        "n": "params_nonembed",
        "d": "tokens",
        "c": "flops_6nd",
        "loss": "val_loss",
    }
    chinchilla = ["Model Size", "Training FLOP", "loss"]
    options = TableOptions(n_col="Model Size", c_col="Training FLOP", loss_col="loss")
    assert resolve_columns(chinchilla, options, "t") == {"n": "Model Size", "d": None, "c": "Training FLOP", "loss": "loss"}
    with pytest.raises(FitError, match="missing column for D or C"):
        resolve_columns(["params", "loss"], None, "t")
    with pytest.raises(FitError, match="Model Size: missing column"):
        resolve_columns(["params", "tokens", "loss"], TableOptions(n_col="Model Size"), "t")
