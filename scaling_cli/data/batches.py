"""Training batches: seeded random windows of seq_len + 1 tokens, a pure function of (seed, step).

The window offsets come from numpy's PCG64 seeded with the pair (seed, step), so a batch does not
depend on what was drawn before it: a resumed run, another worker, or another machine gets the same
batch for the same step.
"""

from __future__ import annotations

import os

import numpy as np

from scaling_cli.errors import DataError


def batch_offsets(n_tokens: int, seq_len: int, batch_size: int, seed: int, step: int) -> np.ndarray:
    """Start positions of the batch's windows."""
    if seq_len < 1 or batch_size < 1:
        raise DataError("batch", "seq_len", f"seq_len and batch_size must be positive, got {seq_len}, {batch_size}")
    if n_tokens < seq_len + 1:
        raise DataError("batch", "seq_len", f"needs at least {seq_len + 1} tokens, the split has {n_tokens}")
    rng = np.random.Generator(np.random.PCG64([int(seed), int(step)]))
    return rng.integers(0, n_tokens - seq_len, size=batch_size, dtype=np.int64)


def get_batch(tokens: np.ndarray, seq_len: int, batch_size: int, seed: int, step: int):
    """(x, y) int64 tensors of shape [batch_size, seq_len]; y is x shifted by one token."""
    import torch  # imported here so that `scale data` commands do not pay for loading torch

    offsets = batch_offsets(len(tokens), seq_len, batch_size, seed, step)
    windows = read_windows(tokens, offsets, seq_len + 1).astype(np.int64)
    data = torch.from_numpy(windows)
    return data[:, :-1].contiguous(), data[:, 1:].contiguous()


def read_windows(tokens: np.ndarray, offsets: np.ndarray, width: int) -> np.ndarray:
    """tokens[o : o + width] for each offset, as one array.

    From a token file opened by `tokenfile.open_tokens` the windows are read with pread rather than through
    the map: the kernel maps whole page-cache folios (up to 2 MB) on a fault, so a few hundred random
    windows would put the whole file in the worker's RSS; pread copies only the window's bytes and still
    shares the page cache with every other worker.
    """
    fd = getattr(tokens, "token_fd", None)
    if fd is None or not hasattr(os, "pread"):  # os.pread is POSIX only
        return np.asarray(tokens)[offsets[:, None] + np.arange(width)]
    itemsize = tokens.dtype.itemsize
    rows = [os.pread(fd, width * itemsize, int(start) * itemsize) for start in offsets]
    return np.frombuffer(b"".join(rows), dtype=tokens.dtype).reshape(len(offsets), width)
