"""The CPUs of the process: how many it may use, how an ``n_jobs`` argument asks for
them, and BLAS held to one thread while many small products run in threads.

Every core function that runs threads resolves its ``n_jobs`` here, so "all the CPUs"
means the same everywhere: the process's affinity mask, not the machine's count.
"""

from __future__ import annotations

import contextlib
import os

import numpy as np

#: What an ``n_jobs`` below 1 means, one convention per caller (see :func:`resolve_n_jobs`).
BELOW_ONE = ("refuse", "count_back", "one")


def available_cpus() -> int:
    """The number of CPUs this process may run on (its affinity mask, not the machine's
    count: a batch job given 4 of 64 cores gets 4)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def resolve_n_jobs(n_jobs: int | None, *, below_one: str = "refuse") -> int:
    """The number of threads an ``n_jobs`` argument asks for.

    Parameters
    ----------
    n_jobs : int or None
        None: every CPU available (:func:`available_cpus`); a positive count: that many.
    below_one : {"refuse", "count_back", "one"}
        What a value below 1 means. ``"refuse"`` (``extract_features``): -1 is every
        CPU, any other value a ValueError. ``"count_back"`` (the searchlight, joblib's
        convention): -k is every CPU but k - 1, at least one, and 0 a ValueError.
        ``"one"`` (the sign-flip tests): one thread.

    Returns
    -------
    int
        At least 1.
    """
    if below_one not in BELOW_ONE:
        raise ValueError(f"below_one must be one of {list(BELOW_ONE)}; got {below_one!r}")
    if n_jobs is None:
        return available_cpus()
    n = int(n_jobs)
    if n >= 1:
        return n
    if below_one == "one":
        return 1
    if below_one == "count_back":
        if n == 0:
            raise ValueError(f"n_jobs must be a positive number or negative (all cores); got {n}")
        return max(1, available_cpus() + 1 + n)
    if n == -1:
        return available_cpus()
    raise ValueError(f"n_jobs must be a positive integer, -1 or None; got {n_jobs!r}")


def single_threaded_blas(xp):
    """Keep BLAS to one thread for the block (numpy only; a no-op for CuPy).

    The products of the searchlight and the bootstrap are many and small: BLAS threads
    gain nothing on them and slow down badly when the cores are shared, so parallelism
    comes from the callers' own threads.
    """
    if xp is not np:
        return contextlib.nullcontext()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


def blas_threads() -> int | None:
    """The threads BLAS uses in this process (the largest count of the BLAS libraries
    threadpoolctl finds; None when it finds none)."""
    from threadpoolctl import threadpool_info

    counts = [i["num_threads"] for i in threadpool_info() if i.get("user_api") == "blas"]
    return max(counts) if counts else None


__all__ = [
    "BELOW_ONE",
    "available_cpus",
    "blas_threads",
    "resolve_n_jobs",
    "single_threaded_blas",
]
