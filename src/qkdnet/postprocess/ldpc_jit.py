"""numba settings of the LDPC decoder kernels (fast math, no bounds checks, SLP vectoriser)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator

import numba as nb

#: numba's on-disk cache (set QKDNET_NO_NUMBA_CACHE=1 to inspect the generated code).
CACHE = not os.environ.get("QKDNET_NO_NUMBA_CACHE")
JIT_OPTIONS = {"cache": CACHE, "fastmath": True, "boundscheck": False}


def njit_slp(fn: Callable) -> Callable:
    """numba-compile a lane kernel (compiled when its caller is, under :func:`slp_vectorize`)."""
    return nb.njit(**JIT_OPTIONS)(fn)


@contextlib.contextmanager
def slp_vectorize() -> Iterator[None]:
    """Switch on LLVM's SLP vectoriser (off by default in numba) for what compiles inside."""
    old = nb.config.SLP_VECTORIZE
    nb.config.SLP_VECTORIZE = 1
    try:
        yield
    finally:
        nb.config.SLP_VECTORIZE = old
