"""Compressor baselines: bits per byte of the validation text under standard compressors.

These are the horizontal lines model losses are compared with: a model that cannot beat lzma has not
learned more than repeated substrings. bits per byte = 8 * compressed bytes / raw bytes.
"""

from __future__ import annotations

import bz2
import lzma
import zlib

import lz4.frame

COMPRESSORS = {
    "lz4": ("lz4.frame default (fast)", lambda data: lz4.frame.compress(data)),
    "lz4hc": (
        "lz4.frame compression_level=COMPRESSIONLEVEL_MAX",
        lambda data: lz4.frame.compress(data, compression_level=lz4.frame.COMPRESSIONLEVEL_MAX),
    ),
    "zlib": ("zlib level 9", lambda data: zlib.compress(data, 9)),
    "bz2": ("bz2 level 9", lambda data: bz2.compress(data, 9)),
    "lzma": ("lzma preset 9", lambda data: lzma.compress(data, filters=_lzma9_filters(len(data)))),
}


def _lzma9_filters(n_bytes: int) -> list[dict]:
    """Preset 9 with the dictionary cut to the input's size: the same compressed size, since no match can
    reach further back than the input, without allocating preset 9's 64 MiB dictionary (a tenth of a
    second per call)."""
    dict_size = 1 << max(12, (max(n_bytes, 1) - 1).bit_length())
    return [{"id": lzma.FILTER_LZMA2, "preset": 9, "dict_size": min(dict_size, 64 << 20)}]


def compressed_sizes(data: bytes) -> dict[str, int]:
    """Compressed size in bytes under each compressor."""
    return {name: len(compress(data)) for name, (_, compress) in COMPRESSORS.items()}


def bits_per_byte(data: bytes) -> dict[str, float]:
    """8 * compressed / raw for each compressor (keys lz4, lz4hc, zlib, bz2, lzma)."""
    if not data:
        return {name: float("nan") for name in COMPRESSORS}
    return {name: 8.0 * size / len(data) for name, size in compressed_sizes(data).items()}


def describe() -> dict[str, str]:
    """The settings behind each baseline key, for the manifest."""
    return {name: label for name, (label, _) in COMPRESSORS.items()}
