"""MFU per run: achieved Appendix F FLOP/s over the device's peak for the dtype, from the table or the override."""

from __future__ import annotations

import math

import pytest
import torch

from scaling_cli.data import DataOptions, prepare
from scaling_cli.model import ModelConfig, flops_per_token
from scaling_cli.train import TrainConfig, train_run
from scaling_cli.train.mfu import PEAK_ENV, peak_flops, utilisation

TINY = ModelConfig(d_model=32, n_layer=2, n_head=2, seq_len=32)


@pytest.mark.parametrize(
    ("name", "dtype", "tflops"),
    [
        ("NVIDIA H100 80GB HBM3", "bf16", 989.4),
        ("NVIDIA H100 PCIe", "bf16", 756.0),
        ("NVIDIA H200", "fp32", 494.7),
        ("NVIDIA A100-SXM4-40GB", "bf16", 312.0),
        ("NVIDIA L40S", "fp32", 183.0),
        ("NVIDIA L4", "bf16", 121.0),
        ("NVIDIA A10G", "bf16", 125.0),
    ],
)
def test_known_devices_have_their_data_sheet_peak(name, dtype, tflops, monkeypatch):
    monkeypatch.delenv(PEAK_ENV, raising=False)
    assert peak_flops(name, dtype) == pytest.approx(tflops * 1e12)


def test_an_unknown_device_has_no_mfu_unless_its_peak_is_given(monkeypatch):
    monkeypatch.delenv(PEAK_ENV, raising=False)
    assert math.isnan(peak_flops("cpu", "fp32")) and math.isnan(utilisation(1e9, math.nan, 1))
    monkeypatch.setenv(PEAK_ENV, "2e11")
    assert peak_flops("cpu", "fp32") == 2e11 and peak_flops("NVIDIA H100 80GB HBM3", "bf16") == 2e11
    assert utilisation(1e11, 2e11, 2) == 0.25


def test_a_run_records_its_flop_rate_and_mfu(tmp_path, monkeypatch):
    monkeypatch.setenv(PEAK_ENV, "1e11")
    threads = torch.get_num_threads()
    data = prepare("markov", DataOptions(markov_bytes=50_000, markov_alphabet=16), cache_dir=tmp_path / "data")
    config = TrainConfig(
        tokens=6 * 8 * 32, batch_size=8, eval_every=0, eval_batches=1, checkpoint_every=0, device="cpu",
        dtype="fp32", threads=1,
    )  # fmt: skip
    result = train_run(TINY, config, data, tmp_path / "run")
    torch.set_num_threads(threads)
    expected = result.tokens_per_s * flops_per_token(TINY)["chinchilla"]
    assert result.flops_per_s == pytest.approx(expected) and result.flops_per_s > 0
    assert (result.peak_flops, result.mfu) == (1e11, pytest.approx(expected / 1e11))
