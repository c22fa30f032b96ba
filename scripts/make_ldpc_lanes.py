"""Write ``src/qkdnet/postprocess/ldpc_lanes.py``: the per-lane kernels of the LDPC decoder.

The frame-parallel decoder (:mod:`qkdnet.postprocess.ldpc_decoder`) updates LANES frames at
once. numba leaves LLVM's SLP vectoriser off by default and its loops over a few lanes do not
vectorise (their loads and stores interleave through arrays LLVM cannot prove distinct), so each
kernel is written out lane by lane: all loads first, then the arithmetic, then all stores —
straight-line code that the SLP vectoriser (switched on while these compile) turns into SIMD.
Usage: ``python scripts/make_ldpc_lanes.py [--check]`` (``--check``: fail if the file differs).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

LANES = 16
TARGET = Path(__file__).resolve().parents[1] / "src/qkdnet/postprocess/ldpc_lanes.py"

HEADER = '''"""Per-lane kernels of the frame-parallel LDPC decoder (GENERATED: do not edit).

Written by ``scripts/make_ldpc_lanes.py``: each function updates LANES interleaved frames with
straight-line code (loads, arithmetic, stores) so that LLVM's SLP vectoriser makes it SIMD; see
:mod:`qkdnet.postprocess.ldpc_decoder` for the decoder that calls them.
"""

from __future__ import annotations

import math

import numpy as np

from qkdnet.postprocess.ldpc_jit import njit_slp

LANES = {lanes}
'''


def _lines(fmt: str, lanes: int) -> list[str]:
    return ["    " + fmt.format(l=lane) for lane in range(lanes)]


def _func(sig: str, doc: str, loads: list[str], body: list[str], stores: list[str], L: int) -> str:
    out = ["", "", "@njit_slp", f"def {sig}:", f'    """{doc}"""']
    for part in (loads, body, stores):
        for fmt in part:
            out += _lines(fmt, L)
    return "\n".join(out)


#: ln(1 + e^−z) ≈ max(0, c₁ + d₁z, c₂ + d₂z): the two lines that minimise the largest error on
#: z ≥ 0 (error ≤ 0.026, as small as three tangents at z = 0.4, 1.4, 2.75 gave, for 2 fewer ops).
LINES = ((0.6694, -0.3444), (0.3261, -0.0892))


def _correction(out: str, z: str) -> list[str]:
    (c1, d1), (c2, d2) = LINES
    return [
        f"{out}1_{{l}} = np.float32({c1}) + np.float32({d1}) * {z}_{{l}}",
        f"{out}2_{{l}} = np.float32({c2}) + np.float32({d2}) * {z}_{{l}}",
        f"{out}_{{l}} = max(max({out}1_{{l}}, {out}2_{{l}}), np.float32(0.0))",
    ]


def _boxplus(out: str, a: str, b: str) -> list[str]:
    """out = |a ⊞ b| from the magnitudes a = |x|, b = |y|: min(a, b) + ln(1 + e^−(a+b)) −
    ln(1 + e^−|a−b|) (Hagenauer, Offer and Papke, IEEE Trans. Inf. Theory 42, 429 (1996),
    Eq. 14; the sign of x ⊞ y is sgn(x)·sgn(y) and is kept apart), with the correction terms
    piecewise linear and the result clamped at 0 (the approximation may dip below it)."""
    t = f"{out}x"
    return [
        f"{t}u_{{l}} = {a}_{{l}} + {b}_{{l}}",
        f"{t}v_{{l}} = abs({a}_{{l}} - {b}_{{l}})",
        *_correction(f"{t}cu", f"{t}u"),
        *_correction(f"{t}cv", f"{t}v"),
        f"{t}m_{{l}} = min({a}_{{l}}, {b}_{{l}}) + {t}cu_{{l}} - {t}cv_{{l}}",
        f"{out}_{{l}} = max({t}m_{{l}}, np.float32(0.0))",
    ]


def source(lanes: int = LANES) -> str:
    """The module text."""
    L = lanes
    one = "np.float32(1.0)"
    parts = [HEADER.format(lanes=L).rstrip("\n")]
    parts.append(
        _func(
            "bp_in(prow, mrow, qrow, fprev, fnext, sgn)",
            "q = posterior − old message; forward box-plus of magnitudes fnext = fprev ⊞ |q|; "
            "the running sign product sgn·sgn(q).",
            ["p_{l} = prow[{l}]", "m_{l} = mrow[{l}]", "a_{l} = fprev[{l}]", "g_{l} = sgn[{l}]"],
            ["x_{l} = p_{l} - m_{l}", "ax_{l} = abs(x_{l})", *_boxplus("o", "a", "ax")],
            [
                "qrow[{l}] = x_{l}",
                "fnext[{l}] = o_{l}",
                f"sgn[{{l}}] = math.copysign({one}, g_{{l}} * x_{{l}})",
            ],
            L,
        )
    )
    parts.append(
        _func(
            "bp_out(prow, mrow, qrow, fprev, back, sgn, par)",
            "Message |forward ⊞ backward| with the extrinsic sign sgn·sgn(q) (sgn: product of "
            "the syndrome sign and every q's); posterior = q + message; backward box-plus back "
            "= back ⊞ |q|; the running parity sign of the new hard decisions.",
            [
                "x_{l} = qrow[{l}]",
                "a_{l} = fprev[{l}]",
                "b_{l} = back[{l}]",
                "g_{l} = sgn[{l}]",
                "s_{l} = par[{l}]",
            ],
            [
                "ax_{l} = abs(x_{l})",
                *_boxplus("e", "a", "b"),
                "r_{l} = math.copysign(e_{l}, g_{l} * x_{l})",
                "y_{l} = x_{l} + r_{l}",
                *_boxplus("z", "b", "ax"),
            ],
            [
                "mrow[{l}] = r_{l}",
                "prow[{l}] = y_{l}",
                "back[{l}] = z_{l}",
                "par[{l}] = -s_{l} if y_{l} < 0 else s_{l}",
            ],
            L,
        )
    )
    parts.append(
        _func(
            "ms_in(prow, mrow, qrow, m1, m2, arg, neg, k)",
            "q = posterior − old message; the two smallest |q|, the argmin, the sign product.",
            [
                "p_{l} = prow[{l}]",
                "m_{l} = mrow[{l}]",
                "a_{l} = m1[{l}]",
                "b_{l} = m2[{l}]",
                "i_{l} = arg[{l}]",
                "n_{l} = neg[{l}]",
            ],
            ["x_{l} = p_{l} - m_{l}", "y_{l} = abs(x_{l})", "lo_{l} = y_{l} < a_{l}"],
            [
                "qrow[{l}] = x_{l}",
                "m2[{l}] = a_{l} if lo_{l} else min(b_{l}, y_{l})",
                "arg[{l}] = k if lo_{l} else i_{l}",
                "m1[{l}] = y_{l} if lo_{l} else a_{l}",
                f"neg[{{l}}] = n_{{l}} * math.copysign({one}, x_{{l}})",
            ],
            L,
        )
    )
    parts.append(
        _func(
            "ms_out(prow, mrow, qrow, m1, m2, arg, neg, k, alpha, par)",
            "Normalised min-sum message α·min over the others with the extrinsic sign; the "
            "running parity sign of the new hard decisions.",
            [
                "x_{l} = qrow[{l}]",
                "a_{l} = m1[{l}]",
                "b_{l} = m2[{l}]",
                "i_{l} = arg[{l}]",
                "n_{l} = neg[{l}]",
                "s_{l} = par[{l}]",
            ],
            [
                "g_{l} = alpha * (b_{l} if i_{l} == k else a_{l})",
                f"r_{{l}} = g_{{l}} * (n_{{l}} * math.copysign({one}, x_{{l}}))",
                "y_{l} = x_{l} + r_{l}",
            ],
            ["mrow[{l}] = r_{l}", "prow[{l}] = y_{l}", "par[{l}] = -s_{l} if y_{l} < 0 else s_{l}"],
            L,
        )
    )
    parts.append(
        _func(
            "parity(prow, par)",
            "Flip the running parity sign of every lane whose posterior is negative (bit 1).",
            ["p_{l} = prow[{l}]", "s_{l} = par[{l}]"],
            [],
            ["par[{l}] = -s_{l} if p_{l} < 0 else s_{l}"],
            L,
        )
    )
    parts.append(
        _func(
            "tally(par, unsat)",
            "Count one more unsatisfied check in every lane whose parity sign is negative.",
            ["s_{l} = par[{l}]", "u_{l} = unsat[{l}]"],
            [],
            ["unsat[{l}] = u_{l} + np.float32(1.0) if s_{l} < 0 else u_{l}"],
            L,
        )
    )
    return "\n".join(parts) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    text = source()
    if args.check:
        if TARGET.read_text() != text:
            sys.exit(f"{TARGET} is out of date: run scripts/make_ldpc_lanes.py")
        return
    TARGET.write_text(text)
    print(f"wrote {TARGET}")


if __name__ == "__main__":
    main()
