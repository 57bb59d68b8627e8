"""Fitting runs with one BLAS thread: its arrays are a few thousand numbers, too small for threads to pay.

numpy's and scipy's OpenBLAS wake a thread per core for each call, and scipy's L-BFGS-B calls BLAS several times
an iteration on 5-parameter vectors: waking and joining those threads costs several times the work itself, far
more on a busy machine (docs/benchmarks.md has the measurement). threadpoolctl sets the pools' size while a fit
runs, whatever imported numpy first, and restores it after.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

from threadpoolctl import threadpool_limits

Result = TypeVar("Result")


def one_blas_thread(function: Callable[..., Result]) -> Callable[..., Result]:
    """Run `function` with every loaded BLAS library limited to one thread (torch's OpenMP pool untouched)."""

    @functools.wraps(function)
    def limited(*args, **kwargs) -> Result:
        with threadpool_limits(limits=1, user_api="blas"):
            return function(*args, **kwargs)

    return limited
