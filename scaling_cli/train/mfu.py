"""Model-FLOP utilisation: a run's achieved Appendix F FLOP/s over its devices' peak for the dtype it trains in."""

from __future__ import annotations

import math
import os

import torch

PEAK_ENV = "SCALE_PEAK_FLOPS"  # FLOP/s of one device, for a device the table lacks (any CPU) or to override it
# Dense peaks in TFLOP/s from the vendors' data sheets (no structured sparsity). "fp32" is TF32, which the
# trainer enables for CUDA matmuls. The first name contained in the device's name wins: specific names first.
PEAK_TFLOPS: tuple[tuple[str, dict[str, float]], ...] = (
    ("H100 PCIe", {"bf16": 756.0, "fp32": 378.0}),
    ("H100", {"bf16": 989.4, "fp32": 494.7}),
    ("H200", {"bf16": 989.4, "fp32": 494.7}),
    ("GH200", {"bf16": 989.4, "fp32": 494.7}),
    ("A100", {"bf16": 312.0, "fp32": 156.0}),
    ("L40S", {"bf16": 362.0, "fp32": 183.0}),
    ("L4", {"bf16": 121.0, "fp32": 60.0}),
    ("A10", {"bf16": 125.0, "fp32": 62.5}),
)


def device_name(device: torch.device) -> str:
    """The device's model name (`NVIDIA H100 80GB HBM3`), or its type where torch gives no name."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return device.type


def peak_flops(name: str, dtype: str) -> float:
    """Peak FLOP/s of one device for `dtype` (`bf16` or `fp32`): SCALE_PEAK_FLOPS when set, else the
    table's entry for the device's name; NaN when neither knows it (a CPU without the variable)."""
    override = os.environ.get(PEAK_ENV)
    if override:
        return float(override)
    for part, peaks in PEAK_TFLOPS:
        if part in name:
            return peaks[dtype] * 1e12
    return math.nan


def utilisation(flops_per_s: float, peak: float, devices: int) -> float:
    """Achieved FLOP/s over the summed peak of the devices that achieved it (NaN when the peak is unknown)."""
    if not peak > 0:
        return math.nan
    return flops_per_s / (peak * devices)
