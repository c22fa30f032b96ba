"""Carry-less multiplication of 64-bit words (GF(2)[z] products) for numba kernels.

x86 has had a carry-less multiply since 2010 (PCLMULQDQ: one 64 × 64 → 128-bit product of
binary polynomials); processors with VPCLMULQDQ do two per instruction on 256-bit registers
(AMD Zen 3, Intel Alder Lake, ...) and four on 512-bit ones (AVX-512: Ice Lake, Zen 4, ...).
numba does not expose them, so this module emits the LLVM intrinsics (``llvm.x86.pclmulqdq``,
``llvm.x86.pclmulqdq.256`` and ``.512``) from numba ``@intrinsic`` functions:

* :func:`clmul` — one product, ``(lo, hi)`` words;
* :func:`clmul_dot` — ``XOR_k clmul(a[i + k], b[j + k])`` over ``k < count`` (count a multiple of
  8), the inner loop of a schoolbook polynomial product, on the widest registers
  (:data:`CLMUL_LANES` words per load);
* :func:`clmul_diagonals` — a run of consecutive product diagonals ``⊕_j a[p − j] ⊗ v[j]``,
  one diagonal per 64-bit lane (operand scanning: each ``v[j]`` is broadcast against a vector of
  ``a``), so no horizontal reduction is needed; only where VPCLMULQDQ is (``None`` elsewhere).

They compile only where the CPU numba compiles for has the instruction: :data:`HAS_CLMUL` says
whether the GF(2) kernels can run here at all (callers fall back to another method when it is
False — on ARM, say, or with ``NUMBA_CPU_NAME=generic``). ``QKDNET_CLMUL`` caps the width for
tests and comparisons: ``256`` (no 512-bit registers), ``scalar`` (one product per
instruction), ``off`` (no carry-less multiply at all); read at import. Kernels built on a forced
choice are not cached on disk (:data:`CACHE_KERNELS`), so a cached build of another choice is
never loaded for it.
"""

from __future__ import annotations

import os

import numba as nb
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic


def _target_features() -> set[str]:
    """CPU features numba generates code for: the host's, unless NUMBA_CPU_NAME overrides."""
    if nb.config.CPU_NAME:
        spec = nb.config.CPU_FEATURES or ""
        return {f[1:] for f in spec.split(",") if f.startswith("+")}
    try:
        import llvmlite.binding as llvm

        return {name for name, on in llvm.get_host_cpu_features().items() if on}
    except RuntimeError:  # not available on this platform
        return set()


_FEATURES = _target_features()
_MODE = os.environ.get("QKDNET_CLMUL", "auto")
#: whether kernels calling these may use numba's on-disk cache (not under a forced mode).
CACHE_KERNELS = _MODE == "auto"
_MODES = ("auto", "256", "scalar", "off")
if _MODE not in _MODES:
    raise ValueError(f"QKDNET_CLMUL must be one of {', '.join(_MODES)} (got {_MODE!r})")
#: one carry-less product per instruction (PCLMULQDQ): the GF(2) kernels can run.
HAS_CLMUL = "pclmul" in _FEATURES and _MODE != "off"
#: words per vector load of :func:`clmul_dot`: 8 (VPCLMULQDQ on 512-bit registers), 4 (on
#: 256-bit registers), 1 (scalar PCLMULQDQ), 0 (none).
CLMUL_LANES = (
    0 if not HAS_CLMUL
    else 8 if _MODE == "auto" and {"vpclmulqdq", "avx512f"} <= _FEATURES
    else 4 if _MODE in ("auto", "256") and {"vpclmulqdq", "avx"} <= _FEATURES
    else 1
)  # fmt: skip
#: several carry-less products per instruction (VPCLMULQDQ).
HAS_VCLMUL = CLMUL_LANES >= 4

_I64 = ir.IntType(64)
_I32 = ir.IntType(32)
_I8 = ir.IntType(8)


@intrinsic
def clmul(typingctx, a, b):
    """(lo, hi) words of the carry-less product a ⊗ b of two uint64 words."""
    sig = types.UniTuple(types.uint64, 2)(types.uint64, types.uint64)

    def codegen(context, builder, signature, args):
        v2 = ir.VectorType(_I64, 2)
        fn = builder.module.declare_intrinsic(
            "llvm.x86.pclmulqdq", fnty=ir.FunctionType(v2, [v2, v2, _I8])
        )
        zero = ir.Constant(v2, None)
        va = builder.insert_element(zero, args[0], ir.Constant(_I32, 0))
        vb = builder.insert_element(zero, args[1], ir.Constant(_I32, 0))
        r = builder.call(fn, [va, vb, ir.Constant(_I8, 0)])
        lo = builder.extract_element(r, ir.Constant(_I32, 0))
        hi = builder.extract_element(r, ir.Constant(_I32, 1))
        return context.make_tuple(builder, signature.return_type, (lo, hi))

    return sig, codegen


def _vector_dot(lanes: int):
    """An intrinsic XOR over k < count of a[i + k] ⊗ b[j + k] with VPCLMULQDQ on registers of
    ``lanes`` words (4 or 8); count a multiple of ``lanes``."""
    name = {4: "llvm.x86.pclmulqdq.256", 8: "llvm.x86.pclmulqdq.512"}[lanes]

    @intrinsic
    def dot(typingctx, a, i, b, j, count):
        sig = types.UniTuple(types.uint64, 2)(a, i, b, j, count)

        def codegen(context, builder, signature, args):
            a_ty, _, b_ty, _, _ = signature.args
            pa = builder.gep(context.make_array(a_ty)(context, builder, args[0]).data, [args[1]])
            pb = builder.gep(context.make_array(b_ty)(context, builder, args[2]).data, [args[3]])
            vec = ir.VectorType(_I64, lanes)
            fn = builder.module.declare_intrinsic(name, fnty=ir.FunctionType(vec, [vec, vec, _I8]))
            acc = cgutils.alloca_once_value(builder, ir.Constant(vec, None))
            steps = builder.sdiv(args[4], ir.Constant(args[4].type, lanes))
            with cgutils.for_range(builder, steps) as loop:
                off = builder.mul(loop.index, ir.Constant(loop.index.type, lanes))
                ptr_a = builder.bitcast(builder.gep(pa, [off]), vec.as_pointer())
                ptr_b = builder.bitcast(builder.gep(pb, [off]), vec.as_pointer())
                wa, wb = builder.load(ptr_a, align=8), builder.load(ptr_b, align=8)
                # 0x00: even words of each 128-bit lane, 0x11: odd words — `lanes` products
                even = builder.call(fn, [wa, wb, ir.Constant(_I8, 0x00)])
                odd = builder.call(fn, [wa, wb, ir.Constant(_I8, 0x11)])
                builder.store(builder.xor(builder.load(acc), builder.xor(even, odd)), acc)
            total = builder.load(acc)
            w = [builder.extract_element(total, ir.Constant(_I32, k)) for k in range(lanes)]
            lo, hi = w[0], w[1]
            for k in range(2, lanes, 2):
                lo, hi = builder.xor(lo, w[k]), builder.xor(hi, w[k + 1])
            return context.make_tuple(builder, signature.return_type, (lo, hi))

        return sig, codegen

    return dot


_clmul_dot_256 = _vector_dot(4)
_clmul_dot_512 = _vector_dot(8)


@nb.njit(inline="always")
def _clmul_dot_scalar(a, i, b, j, count):
    lo = np.uint64(0)
    hi = np.uint64(0)
    for k in range(count):
        p, q = clmul(a[i + k], b[j + k])
        lo ^= p
        hi ^= q
    return lo, hi


#: XOR over k < count of a[i + k] ⊗ b[j + k] → (lo, hi); count a multiple of 8.
clmul_dot = {8: _clmul_dot_512, 4: _clmul_dot_256}.get(CLMUL_LANES, _clmul_dot_scalar)


def _vector_diagonals(lanes: int, n_vec: int):
    """An intrinsic ``(a, i, v, jv, count, out, o)`` writing the D = n_vec·lanes diagonals
    d(p) = ⊕_{j < count} a[i + p − j] ⊗ v[jv + j], p < D, as (lo, hi) word pairs to
    ``out[o + 2p], out[o + 2p + 1]``.

    ``n_vec`` vectors of ``a`` (words i − j … i − j + D − 1) meet the broadcast v[j]:
    VPCLMULQDQ with selector 0x00 multiplies the even words (diagonals p even), 0x01 the odd
    ones, each product staying in its own 128-bit lane, so the accumulators never mix
    diagonals. It reads ``a`` from index i − count + 1 to i + D − 1; callers keep those words
    readable."""
    name = {4: "llvm.x86.pclmulqdq.256", 8: "llvm.x86.pclmulqdq.512"}[lanes]

    @intrinsic
    def diagonals(typingctx, a, i, v, jv, count, out, o):
        sig = types.void(a, i, v, jv, count, out, o)

        def codegen(context, builder, signature, args):
            a_ty, _, v_ty, _, _, out_ty, _ = signature.args
            pa = builder.gep(context.make_array(a_ty)(context, builder, args[0]).data, [args[1]])
            pv = builder.gep(context.make_array(v_ty)(context, builder, args[2]).data, [args[3]])
            po = builder.gep(context.make_array(out_ty)(context, builder, args[5]).data, [args[6]])
            vec = ir.VectorType(_I64, lanes)
            fn = builder.module.declare_intrinsic(name, fnty=ir.FunctionType(vec, [vec, vec, _I8]))
            zero = ir.Constant(vec, None)
            accs = [cgutils.alloca_once_value(builder, zero) for _ in range(2 * n_vec)]
            with cgutils.for_range(builder, args[4]) as loop:
                j = loop.index
                word = builder.load(builder.gep(pv, [j]))
                bcast = builder.shuffle_vector(
                    builder.insert_element(zero, word, ir.Constant(_I32, 0)), zero,
                    ir.Constant(ir.VectorType(_I32, lanes), [0] * lanes),
                )  # fmt: skip
                base = builder.gep(pa, [builder.neg(j)])
                for half in range(n_vec):
                    ptr = builder.bitcast(builder.gep(base, [ir.Constant(_I64, half * lanes)]),
                                          vec.as_pointer())  # fmt: skip
                    wa = builder.load(ptr, align=8)
                    for sel in range(2):
                        prod = builder.call(fn, [wa, bcast, ir.Constant(_I8, sel)])
                        acc = accs[2 * half + sel]
                        builder.store(builder.xor(builder.load(acc), prod), acc)
            # natural order: even lane t holds d(2t), odd lane t holds d(2t + 1)
            for half in range(n_vec):
                even, odd = builder.load(accs[2 * half]), builder.load(accs[2 * half + 1])
                for part in range(2):
                    mask = []
                    for t in range(part * lanes // 4, (part + 1) * lanes // 4):
                        mask += [2 * t, 2 * t + 1, lanes + 2 * t, lanes + 2 * t + 1]
                    mixed = builder.shuffle_vector(
                        even, odd, ir.Constant(ir.VectorType(_I32, lanes), mask)
                    )
                    off = ir.Constant(_I64, 2 * half * lanes + part * lanes)
                    ptr = builder.bitcast(builder.gep(po, [off]), vec.as_pointer())
                    builder.store(mixed, ptr, align=8)
            return context.get_dummy_value()

        return sig, codegen

    return diagonals


#: 2·:data:`CLMUL_LANES` consecutive product diagonals per call (see
#: :func:`_vector_diagonals`; more vectors per call measured no faster); ``None`` without
#: VPCLMULQDQ.
clmul_diagonals = _vector_diagonals(CLMUL_LANES, 2) if HAS_VCLMUL else None
#: the same for :data:`CLMUL_LANES` diagonals (a run's short tail).
clmul_diagonals_short = _vector_diagonals(CLMUL_LANES, 1) if HAS_VCLMUL else None
