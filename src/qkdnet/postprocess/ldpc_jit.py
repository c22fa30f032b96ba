"""numba settings of the LDPC decoder kernels (fast math, no bounds checks, SLP vectoriser) and
a cache prefetch hint for them."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator

import numba as nb
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

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


@intrinsic
def prefetch(typingctx, row):
    """Ask the CPU to bring the first cache line of an array (a decoder row: LANES float32 =
    64 bytes) into cache ahead of use (``llvm.prefetch``: a hint, no effect on results)."""
    if not isinstance(row, types.Array):
        return None

    def codegen(context, builder, signature, args):
        data = context.make_array(signature.args[0])(context, builder, args[0]).data
        i8p = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fn = builder.module.declare_intrinsic(
            "llvm.prefetch", fnty=ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
        )
        # read (0), high temporal locality (3), data cache (1)
        builder.call(fn, [builder.bitcast(data, i8p), i32(0), i32(3), i32(1)])
        return context.get_dummy_value()

    return types.void(row), codegen


@nb.njit(**JIT_OPTIONS, inline="always")
def prefetch_check(post, row_ptr, cols, c) -> None:
    """Prefetch the posterior rows of check c (if there is one), for a decoder to fetch the next
    check's posteriors while the current one computes."""
    if c < row_ptr.size - 1:
        for e in range(row_ptr[c], row_ptr[c + 1]):
            prefetch(post[cols[e]])
