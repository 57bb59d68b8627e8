"""fit.json is the serialisation of typed results: reading a document into a FitResult and writing it back
gives the same document, readers get attributes, and the writer refuses what the reader would refuse."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scaling_cli.errors import FitError
from scaling_cli.fit import write_fit
from scaling_cli.fit.fitdoc import load_fit
from scaling_cli.fit.results import FitResult, LawFit

DEMO = Path(__file__).resolve().parents[1] / "docs" / "figures" / "demo" / "fit.json"


def test_the_demo_fit_json_round_trips_key_for_key():
    document = json.loads(DEMO.read_text())
    fit = FitResult.from_json(document, str(DEMO))
    assert json.dumps(fit.to_json()) == json.dumps(document)  # same keys, same order, same values


def test_readers_get_typed_attributes():
    fit = load_fit(DEMO)
    group = next(iter(fit.groups.values()))
    assert isinstance(fit.compute_convention, dict) and fit.compute_convention["kind"]
    kaplan = group.laws["kaplan"]
    assert isinstance(kaplan, LawFit) and set(kaplan.parts) == {"L_N", "L_D", "L_C"}
    assert kaplan.parts["L_C"].params["alpha_C"] > 0
    envelope = group.laws["envelope"]
    assert envelope.identified and envelope.at_compute["N_opt"] > 0 and envelope.calibration["model"]
    assert all(len(row) == len(envelope.params) for row in envelope.samples)
    assert group.backtest is not None and group.backtest.recommended.law in group.laws


def test_a_law_fit_without_status_or_problems_writes_none_back():
    entry = {"params": {"a": 1.0}, "r2": 0.9}
    law = LawFit.of(entry)
    assert law.identified and law.problems == () and law.to_json() == entry


def test_the_writer_refuses_what_the_reader_refuses(tmp_path):
    document = json.loads(DEMO.read_text())
    law = next(iter(document["groups"].values()))["laws"]["envelope"]
    law["params"]["a"] = None  # a fit that overflowed would be written as null
    with pytest.raises(FitError, match=r"laws\.envelope\.params\.a: must be a finite number, got nothing"):
        write_fit(document, tmp_path / "fit.json")
    assert not (tmp_path / "fit.json").exists()
