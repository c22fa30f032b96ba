"""Word-wise XOR of uint64 arrays on explicit vector registers, for numba kernels.

numba does not tell LLVM that two array views cannot overlap, and LLVM's loop vectoriser then
left the Karatsuba recursion's XOR passes (:mod:`qkdnet.postprocess.toeplitz_gf2`) scalar.
:func:`xor_words` emits the loop on ``<8 x i64>`` vectors itself (LLVM lowers them to whatever
the CPU has: one 512-bit, two 256-bit or four 128-bit operations); with the P0 buffer dropped,
the recursion around the leaves went from 43 to 38 ms at 10^7 bits (docs/benchmarks.md).
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

_LANES = 8
_I64 = ir.IntType(64)


@intrinsic
def xor_words(typingctx, out, o, a, i, b, j, count):
    """out[o + k] = a[i + k] ^ b[j + k] for k < count (no bounds checks; out may be a or b, at
    the same offset)."""
    if not all(isinstance(t, types.Array) and t.dtype == types.uint64 and t.ndim == 1
               and t.layout == "C" for t in (out, a, b)):  # fmt: skip
        return None
    sig = types.void(out, o, a, i, b, j, count)

    def codegen(context, builder, signature, args):
        ptrs = [
            builder.gep(
                context.make_array(signature.args[k])(context, builder, args[k]).data, [args[k + 1]]
            )
            for k in (0, 2, 4)
        ]
        count = args[6]
        vec = ir.VectorType(_I64, _LANES)
        steps = builder.sdiv(count, ir.Constant(count.type, _LANES))
        with cgutils.for_range(builder, steps) as loop:
            off = builder.mul(loop.index, ir.Constant(loop.index.type, _LANES))
            po, pa, pb = (builder.bitcast(builder.gep(p, [off]), vec.as_pointer()) for p in ptrs)
            builder.store(builder.xor(builder.load(pa, align=8), builder.load(pb, align=8)), po,
                          align=8)  # fmt: skip
        done = builder.mul(steps, ir.Constant(count.type, _LANES))
        with cgutils.for_range(builder, builder.sub(count, done)) as loop:
            k = builder.add(done, loop.index)
            po, pa, pb = (builder.gep(p, [k]) for p in ptrs)
            builder.store(builder.xor(builder.load(pa), builder.load(pb)), po)
        return context.get_dummy_value()

    return sig, codegen
