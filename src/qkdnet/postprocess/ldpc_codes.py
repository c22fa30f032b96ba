"""Construction and loading of the irregular LDPC codes used by :mod:`qkdnet.postprocess.ldpc`.

Degree distributions (edge perspective λ(x), ρ(x)) are Table I of Elkouss, Leverrier, Alléaume and
Boutros, "Efficient reconciliation protocol for discrete-variable quantum key distribution",
ISIT 2009 (arXiv:0901.2140): codes optimised for the BSC by differential evolution with
density evolution, thresholds within a few percent of capacity. Check degrees are concentrated
(every check gets ⌊E/m⌋ or ⌈E/m⌉ edges), as the tabulated ρ(x) essentially are. Degree-2
variables lie on a zigzag chain of the checks so that they close no cycle among themselves
(low-weight codewords, i.e. undetected errors); at rates ≥ 0.85 where the table has more of them
than the m − 1 a chain holds, the excess is raised to degree 3.

Parity-check matrices are built by a random socket matching (configuration model) with repeated
edges resolved by local swaps; the modulated positions (punctured or shortened for rate
adaptation, Elkouss, Martinez-Mateo, Martin, QIC 11, 226 (2011)) are chosen by untainted
puncturing (Elkouss, Martinez-Mateo, Martin, IEEE WCL 1, 585 (2012)) and completed at random,
and their columns are checked to be linearly independent over GF(2) so that each private
punctured bit hides exactly one syndrome bit. ``scripts/make_ldpc_codes.py`` writes the shipped
``codes/*.npz``; loading needs only numpy.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numba as nb
import numpy as np

#: Table I's rate-0.7 λ (Elkouss et al. 2009), also the λ of the long rate-0.76 and 0.74 codes.
_TABLE_I_LAMBDA_070: dict[int, float] = {
    2: 0.05343,
    3: 0.29406,
    6: 0.00896,
    9: 0.15571,
    12: 0.12189,
    25: 0.19872,
    46: 0.09572,
    62: 0.02741,
    65: 0.04056,
    73: 0.00354,
}

#: Rate -> (λ as {degree: fraction of edges}, ρ likewise). Table I of Elkouss et al. 2009, plus
#: two intermediate rates (0.79, 0.83) for QBER 3 % and 2 %, where the 0.75 and 0.8 codes had to
#: be punctured heavily (or the 0.8 code shortened): Table I's rate-0.8 λ with the check degree
#: concentrated at the average that gives the rate (ρ from
#: :func:`qkdnet.postprocess.ldpc_design.concentrated_rho`). Measured
#: (docs/benchmarks.md): f 1.165 -> 1.15 at 2 %, 1.15 -> 1.135 at 3 %; λ's designed for these
#: rates by density evolution (:mod:`qkdnet.postprocess.ldpc_design`) decoded worse at n = 32768.
#: Rate 0.91 (QBER 1 %, replacing Table I's 0.9 whose DE threshold 0.0109 is 15 % above capacity
#: in h): λ designed by this package's density evolution + LP (Richardson, Shokrollahi, Urbanke,
#: IEEE Trans. IT 47, 619 (2001), Sec. V) for design QBER 0.0105, checks of degree 70, variable
#: degrees ≤ 30 (``scripts/make_ldpc_codes.py --design 0.0105 70 30 0.9 --steps 30 --heavy 30``),
#: ρ concentrated at the degree (70.06) that gives rate 0.91; DE threshold 0.0105 vs capacity
#: 0.0114 (f 1.07 at the threshold). At n = 32768 it needs f ≈ 1.20 at 1 % (finite-length loss),
#: so it is built with n = 131072 (``CODE_LENGTH``), where it needs ≈ 1.12; d = 8 % of n
#: (``CODE_MODULATED``) since d must stay below m = 9 % of n.
#: Rates 0.845 (QBER 2 %) and 0.785 (QBER 3 %): λ designed the same way for design QBER 0.021
#: with checks of degree 42 (start: the rate-0.83 λ) and 0.0315 with checks of degree 31 (start:
#: the rate-0.79 λ), variable degrees ≤ 30, 30 LP steps; DE thresholds 0.0210 and 0.0315 vs
#: capacities 0.0225 and 0.0341 (f 1.057 and 1.064 at the threshold); n = 131072, d = 10 % of n.
#: Measured with the whole blind protocol (docs/benchmarks.md): a scratch-seeded instance, reveals
#: of d/32, 1000 frames: f 1.144 → 1.104 at 2 %, 1.138 → 1.108 at 3 % against the rate-0.83/0.79
#: codes of n = 32768 on the same bits; the shipped instances, reveals of d/64, 3000 frames,
#: 0 failed: 1.096 at 2 %, 1.101 at 3 %; reveals of d/128 (as shipped): 1.092 and 1.098.
#: Rates 0.895, 0.875, 0.86, 0.825 and 0.77 (session 6): the same design for QBER 0.013, 0.0158,
#: 0.0183, 0.0245 and 0.034 (checks of degree 60, 52, 46, 36, 29; start: the rate-0.91, 0.845,
#: 0.845, 0.845 and 0.785 λ; variable degrees ≤ 30, 30 LP steps, heavy degree 30), ρ
#: concentrated at the degree that gives the shipped rate. Rates 0.76 and 0.74: Table I's
#: rate-0.7 λ with ρ concentrated likewise — the designs for QBER 0.037 and 0.041 (rates 0.755,
#: 0.725) decoded worse at this length (f 1.14 at 3.75 %, 1.15 at 4 %). All n = 131072, d = 10 %
#: of n. They fill the gaps between the long codes' QBERs, where a code punctured beyond a
#: quarter of its modulated positions, or left with under a tenth for the blind rounds, needed f
#: 1.11-1.17 (docs/benchmarks.md, "Session 6").
DISTRIBUTIONS: dict[float, tuple[dict[int, float], dict[int, float]]] = {
    0.895: (
        {
            2: 0.0333,
            3: 0.25815,
            7: 0.01284,
            8: 0.02705,
            9: 0.31726,
            22: 0.05016,
            23: 0.06165,
            24: 0.05974,
            25: 0.02812,
            26: 0.02812,
            27: 0.01479,
            28: 0.00042,
            30: 0.10837,
        },
        {60: 0.33422, 61: 0.66578},
    ),
    0.875: (
        {
            2: 0.03842,
            3: 0.25146,
            8: 0.18056,
            9: 0.12048,
            10: 0.01232,
            26: 0.21593,
            27: 0.04295,
            28: 0.0384,
            29: 0.02005,
            30: 0.07943,
        },
        {51: 0.32445, 52: 0.67555},
    ),
    0.86: (
        {
            2: 0.04343,
            3: 0.25223,
            8: 0.10313,
            9: 0.17903,
            10: 0.05228,
            26: 0.13677,
            29: 0.04921,
            30: 0.18392,
        },
        {45: 0.46704, 46: 0.53296},
    ),
    0.825: (
        {
            2: 0.0555,
            3: 0.2479,
            8: 0.07354,
            9: 0.22734,
            10: 0.03042,
            26: 0.05158,
            29: 0.02577,
            30: 0.28794,
        },
        {35: 0.3568, 36: 0.6432},
    ),
    0.77: (
        {2: 0.0689, 3: 0.21198, 7: 0.08299, 8: 0.15228, 26: 0.04552, 30: 0.43833},
        {28: 0.45522, 29: 0.54478},
    ),
    0.76: (
        _TABLE_I_LAMBDA_070,
        {25: 0.71367, 26: 0.28633},
    ),
    0.74: (
        _TABLE_I_LAMBDA_070,
        {23: 0.65657, 24: 0.34343},
    ),
    0.845: (
        {
            2: 0.04757,
            3: 0.22788,
            6: 0.0714,
            7: 0.04847,
            8: 0.1029,
            9: 0.02438,
            10: 0.01629,
            17: 0.03318,
            26: 0.25531,
            30: 0.17262,
        },
        {42: 0.91188, 43: 0.08812},
    ),
    0.785: (
        {2: 0.06445, 3: 0.21227, 7: 0.09292, 8: 0.1339, 26: 0.13476, 30: 0.3617},
        {30: 0.03913, 31: 0.96087},
    ),
    0.90: (
        {2: 0.07689, 3: 0.28096, 5: 0.08933, 9: 0.19620, 12: 0.30631, 21: 0.05031},
        {50: 0.95025, 51: 0.04975},
    ),
    0.91: (
        {
            2: 0.02854,
            3: 0.26853,
            9: 0.37074,
            10: 0.00582,
            21: 0.01011,
            22: 0.06662,
            23: 0.07534,
            24: 0.05005,
            25: 0.00425,
            30: 0.12,
        },
        {70: 0.94, 71: 0.06},
    ),
    0.85: (
        {
            2: 0.04528,
            3: 0.20537,
            4: 0.05878,
            5: 0.094274,
            6: 0.08454,
            7: 0.01176,
            9: 0.05137,
            21: 0.50015,
        },
        {41: 0.54204, 42: 0.45795},
    ),
    0.80: (
        {2: 0.09420, 3: 0.18088, 6: 0.11972, 7: 0.08550, 8: 0.09816, 17: 0.07194, 26: 0.34960},
        {29: 0.58807, 30: 0.41193},
    ),
    0.83: (
        {2: 0.09420, 3: 0.18088, 6: 0.11972, 7: 0.08550, 8: 0.09816, 17: 0.07194, 26: 0.34960},
        {34: 0.29164, 35: 0.70836},
    ),
    0.79: (
        {2: 0.09420, 3: 0.18088, 6: 0.11972, 7: 0.08550, 8: 0.09816, 17: 0.07194, 26: 0.34960},
        {28: 0.90465, 29: 0.09535},
    ),
    0.75: (
        {
            2: 0.10805,
            3: 0.09511,
            4: 0.01449,
            5: 0.13764,
            6: 0.10667,
            7: 0.05288,
            28: 0.01107,
            31: 0.47408,
        },
        {25: 0.74161, 26: 0.25839},
    ),
    0.70: (
        _TABLE_I_LAMBDA_070,
        {20: 0.76922, 21: 0.23077},
    ),
    0.65: (
        {
            2: 0.10451,
            3: 0.15652,
            4: 0.08057,
            5: 0.00056,
            9: 0.12151,
            13: 0.10485,
            15: 0.10719,
            21: 0.00771,
            51: 0.31656,
        },
        {2: 0.000578, 15: 0.06089, 16: 0.47001, 21: 0.46852},
    ),
    0.60: (
        {
            2: 0.11040,
            3: 0.20804,
            8: 0.14163,
            9: 0.14858,
            26: 0.14438,
            27: 0.08909,
            46: 0.00748,
            71: 0.15038,
        },
        {2: 0.00036, 10: 0.13063, 13: 0.31068, 18: 0.49341, 19: 0.064915},
    ),
    0.55: (
        {
            2: 0.16880,
            3: 0.20994,
            6: 0.18095,
            15: 0.03846,
            16: 0.02635,
            18: 0.23454,
            19: 0.05815,
            31: 0.08280,
        },
        {10: 0.27631, 11: 0.72369},
    ),
    0.50: (
        {
            2: 0.14438,
            3: 0.19026,
            4: 0.01836,
            5: 0.00233,
            6: 0.04697,
            8: 0.053943,
            9: 0.05590,
            10: 0.01290,
            11: 0.00162,
            14: 0.06159,
            15: 0.13115,
            17: 0.01481,
            47: 0.00879,
            49: 0.00650,
            55: 0.00210,
            56: 0.00099,
            57: 0.11178,
            58: 0.06238,
            59: 0.05094,
            66: 0.02230,
        },
        {10: 0.47575, 12: 0.46847, 13: 0.02952, 14: 0.02626},
    ),
}

#: Fraction of each frame whose positions are modulated (punctured or shortened).
MODULATED_FRACTION = 0.1
DEFAULT_N = 32768
DEFAULT_SEED = 20090114
#: Frame length n of the codes that are not DEFAULT_N long (see DISTRIBUTIONS).
LONG_RATES = (0.91, 0.895, 0.875, 0.86, 0.845, 0.825, 0.785, 0.77, 0.76, 0.74)
CODE_LENGTH: dict[float, int] = {rate: 131072 for rate in LONG_RATES}
#: Modulated fraction of the codes whose m is below MODULATED_FRACTION·n (the d modulated
#: columns must be linearly independent, so d < m).
CODE_MODULATED: dict[float, float] = {0.91: 0.08}


#: Rates whose construction also removes every 4-cycle among variables of degree ≤ 3.
NO_LOW_4CYCLES: frozenset[float] = frozenset(LONG_RATES)


def code_length(rate: float) -> int:
    """Frame length n of the shipped code of this rate."""
    return CODE_LENGTH.get(rate, DEFAULT_N)


def modulated_fraction(rate: float) -> float:
    """d / n of the code of this rate."""
    return CODE_MODULATED.get(rate, MODULATED_FRACTION)


@dataclass(frozen=True)
class LdpcCode:
    """One parity-check matrix H (m × n) in CSR form by check, with its modulated positions.

    ``modulated`` lists d variable positions; in a frame with s shortened and p = d − s punctured
    bits, ``modulated[:s]`` are shortened and ``modulated[s:]`` punctured (blind reconciliation
    reveals punctured bits front to back, so the last entries are the best ones to puncture).
    """

    rate: float
    n: int
    m: int
    row_ptr: np.ndarray  # (m + 1,) int64
    cols: np.ndarray  # (E,) int32, variable index of each edge, grouped by check
    modulated: np.ndarray  # (d,) int32

    @property
    def k(self) -> int:
        """Dimension n − m (H has full rank for these codes up to a few dependent rows)."""
        return self.n - self.m

    @property
    def d(self) -> int:
        return int(self.modulated.size)

    @property
    def edges(self) -> int:
        return int(self.cols.size)

    def syndrome(self, x: np.ndarray) -> np.ndarray:
        """H·x over GF(2) for one word (uint8 0/1): XOR-reduce the bits of each check row."""
        bits = x[self.cols].astype(np.uint8)
        return (np.add.reduceat(bits, self.row_ptr[:-1]) & 1).astype(np.uint8)

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            "rate": np.array(self.rate),
            "n": np.array(self.n),
            "m": np.array(self.m),
            "row_ptr": self.row_ptr.astype(np.int32),
            # variable indices fit 16 bits for n <= 65536: halves the shipped size
            "cols": self.cols.astype(np.uint16 if self.n <= 65536 else np.int32),
            "modulated": self.modulated.astype(np.uint16 if self.n <= 65536 else np.int32),
        }


def node_degrees(edge_fractions: dict[int, float], nodes: int) -> np.ndarray:
    """Node degrees realising an edge-perspective distribution on ``nodes`` nodes.

    Node fractions are L_i = (λ_i / i) / Σ_j λ_j / j; counts are rounded by largest remainder.
    """
    degs = np.array(sorted(edge_fractions), dtype=np.int64)
    lam = np.array([edge_fractions[d] for d in degs])
    frac = (lam / degs) / np.sum(lam / degs)
    raw = frac * nodes
    counts = np.floor(raw).astype(np.int64)
    short = nodes - int(counts.sum())
    counts[np.argsort(-(raw - counts))[:short]] += 1
    return np.repeat(degs, counts)


@nb.njit(cache=True)
def _independent_prefix(
    row_ptr: np.ndarray, cols: np.ndarray, m: int, candidates: np.ndarray, d: int
) -> np.ndarray:
    """The first d of ``candidates`` (in order) whose columns of H are linearly independent
    over GF(2) of the ones kept before (incremental Gaussian elimination on packed columns)."""
    n = 0
    for v in candidates:
        n = max(n, v + 1)
    n = max(n, cols.max() + 1)
    words = (m + 63) // 64
    # column vectors of H, packed
    colvec = np.zeros((n, words), dtype=np.uint64)
    for r in range(m):
        for e in range(row_ptr[r], row_ptr[r + 1]):
            colvec[cols[e], r // 64] ^= np.uint64(1) << np.uint64(r % 64)
    basis = np.zeros((d, words), dtype=np.uint64)
    piv_w = np.zeros(d, dtype=np.int64)
    piv_b = np.zeros(d, dtype=np.uint64)
    kept = np.empty(d, dtype=np.int32)
    nk = 0
    vec = np.empty(words, dtype=np.uint64)
    for v in candidates:
        if nk == d:
            break
        vec[:] = colvec[v]
        for i in range(nk):
            if vec[piv_w[i]] & piv_b[i]:
                for w in range(words):
                    vec[w] ^= basis[i, w]
        for w in range(words):
            if vec[w] != 0:
                x = vec[w]
                low = x & (~x + np.uint64(1))
                basis[nk] = vec
                piv_w[nk] = w
                piv_b[nk] = low
                kept[nk] = v
                nk += 1
                break
    return kept[:nk]


def build_code(rate: float, n: int, rng: np.random.Generator) -> LdpcCode:
    """A random irregular code of length n with the distribution of ``rate`` (DISTRIBUTIONS) and
    d = round(modulated_fraction(rate)·n) modulated positions."""
    lam, _rho = DISTRIBUTIONS[rate]
    m = round(n * (1.0 - rate))
    var_deg = rng.permutation(node_degrees(lam, n))
    var_deg = np.minimum(var_deg, m)
    e = int(var_deg.sum()) + max(int(np.count_nonzero(var_deg == 2)) - (m - 1), 0)
    chk_deg = np.full(m, e // m, dtype=np.int64)
    chk_deg[rng.permutation(m)[: e - int(chk_deg.sum())]] += 1
    # degree-2 variables on a zigzag (variable j joins checks j and j + 1), so that they form
    # no cycle among themselves (a random graph's low-weight codewords, the error floor)
    # degree-2 variables beyond m − 1 become degree 3 (a chain of m checks holds m − 1 of them)
    two = np.flatnonzero(var_deg == 2)
    var_deg[two[m - 1 :]] = 3
    two = two[: m - 1]
    zig_v = np.repeat(two, 2)
    zig_c = (np.arange(two.size)[:, None] + np.array([0, 1])).ravel()
    rest_deg = var_deg.copy()
    rest_deg[two] = 0
    var_rand = np.repeat(np.arange(n, dtype=np.int64), rest_deg)
    chk_left = chk_deg - np.bincount(zig_c, minlength=m)
    chk_rand = rng.permutation(np.repeat(np.arange(m, dtype=np.int64), chk_left))
    var_sock = np.concatenate([zig_v, var_rand])
    # resolve repeated (check, variable) pairs by swapping their check with a random edge's
    fixed = zig_v.size
    for _ in range(200):
        chk_sock = np.concatenate([zig_c, chk_rand])
        key = chk_sock * n + var_sock
        order = np.argsort(key, kind="stable")
        dup = order[1:][key[order][1:] == key[order][:-1]]
        dup = np.where(dup >= fixed, dup, order[:-1][key[order][1:] == key[order][:-1]])
        dup = dup[dup >= fixed] - fixed
        if dup.size == 0:
            break
        other = rng.integers(0, chk_rand.size, dup.size)
        for i, j in zip(
            np.unique(dup).tolist(), other.tolist(), strict=False
        ):  # one swap at a time
            chk_rand[i], chk_rand[j] = chk_rand[j], chk_rand[i]
    else:
        raise RuntimeError("could not remove repeated edges")
    if rate in NO_LOW_4CYCLES:
        chk_rand = _break_low_degree_4cycles(zig_c, chk_rand, var_sock, var_deg, n, m, rng)
    chk_sock = np.concatenate([zig_c, chk_rand])
    order = np.lexsort((var_sock, chk_sock))
    cols = var_sock[order].astype(np.int32)
    row_ptr = np.concatenate([[0], np.cumsum(np.bincount(chk_sock, minlength=m))]).astype(np.int64)
    modulated = _untainted_order(row_ptr, cols, n, m, round(modulated_fraction(rate) * n), rng)
    return LdpcCode(rate=rate, n=n, m=m, row_ptr=row_ptr, cols=cols, modulated=modulated)


@nb.njit(cache=True)
def _low_4cycle_sockets(
    chk_sock: np.ndarray, var_sock: np.ndarray, low: np.ndarray, fixed: int, n: int, m: int
) -> np.ndarray:
    """One socket (edge, index ≥ ``fixed``: not on the zigzag) per pair of ``low`` variables that
    share two checks (a 4-cycle), or per repeated edge."""
    ptr = np.zeros(m + 1, dtype=np.int64)
    for t in range(chk_sock.size):
        if low[var_sock[t]]:
            ptr[chk_sock[t] + 1] += 1
    for c in range(m):
        ptr[c + 1] += ptr[c]
    by_chk = np.empty(ptr[m], dtype=np.int64)
    fill = ptr[:-1].copy()
    for t in range(chk_sock.size):
        if low[var_sock[t]]:
            by_chk[fill[chk_sock[t]]] = t
            fill[chk_sock[t]] += 1
    vptr = np.zeros(n + 1, dtype=np.int64)
    for t in range(var_sock.size):
        vptr[var_sock[t] + 1] += 1
    for v in range(n):
        vptr[v + 1] += vptr[v]
    by_var = np.empty(var_sock.size, dtype=np.int64)
    vfill = vptr[:-1].copy()
    for t in range(var_sock.size):
        by_var[vfill[var_sock[t]]] = t
        vfill[var_sock[t]] += 1
    count = np.zeros(n, dtype=np.int64)
    seen = np.empty(n, dtype=np.int64)
    out = np.empty(var_sock.size, dtype=np.int64)
    k = 0
    for v in range(n):
        if not low[v]:
            continue
        ns = 0
        for a in range(vptr[v], vptr[v + 1]):
            s = by_var[a]
            c = chk_sock[s]
            for b in range(ptr[c], ptr[c + 1]):
                t = by_chk[b]
                u = var_sock[t]
                if u < v or t == s:
                    continue
                if count[u] == 0:
                    seen[ns] = u
                    ns += 1
                count[u] += 1
                if count[u] == 2 or u == v:
                    out[k] = s if s >= fixed else t
                    k += 1
        for i in range(ns):
            count[seen[i]] = 0
    return out[:k]


def _break_low_degree_4cycles(
    zig_c: np.ndarray,
    chk_rand: np.ndarray,
    var_sock: np.ndarray,
    var_deg: np.ndarray,
    n: int,
    m: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Re-draw edges until no two variables of degree ≤ 3 share two checks (and no edge is
    repeated): the offending edge's check is swapped with that of a random edge of a variable of
    degree > 3. Small cycles among low-degree variables form the trapping sets that make a frame
    fail however many bits are revealed (docs/benchmarks.md, rate 0.91)."""
    chk_rand = chk_rand.copy()
    fixed = zig_c.size
    low = var_deg <= 3
    heavy = np.flatnonzero(~low[var_sock[fixed:]])
    for _ in range(200):
        chk_sock = np.concatenate([zig_c, chk_rand])
        key = chk_sock * n + var_sock
        order = np.argsort(key, kind="stable")
        repeated = order[1:][key[order][1:] == key[order][:-1]]
        bad = np.concatenate([_low_4cycle_sockets(chk_sock, var_sock, low, fixed, n, m), repeated])
        bad = np.unique(bad) - fixed
        bad = bad[bad >= 0]
        if bad.size == 0:
            return chk_rand
        other = heavy[rng.integers(0, heavy.size, bad.size)]
        for i, j in zip(bad.tolist(), other.tolist(), strict=True):
            chk_rand[i], chk_rand[j] = chk_rand[j], chk_rand[i]
    raise RuntimeError("could not remove the 4-cycles among low-degree variables")


def _untainted_order(
    row_ptr: np.ndarray, cols: np.ndarray, n: int, m: int, d: int, rng: np.random.Generator
) -> np.ndarray:
    """d modulated positions, best-to-puncture last: untainted picks first (each check gets at
    most one punctured neighbour, lowest degree first), then random others."""
    rows = np.repeat(np.arange(m), np.diff(row_ptr))
    by_var = np.argsort(cols, kind="stable")
    var_ptr = np.concatenate([[0], np.cumsum(np.bincount(cols, minlength=n))])
    var_checks = rows[by_var]
    degree = np.diff(var_ptr)
    tainted_chk = np.zeros(m, dtype=bool)
    free = np.ones(n, dtype=bool)
    picked: list[int] = []
    tie = rng.random(n)
    priority = degree + tie  # lowest degree first, random among equals
    for v in np.argsort(priority):
        if len(picked) == d:
            break
        chks = var_checks[var_ptr[v] : var_ptr[v + 1]]
        if not tainted_chk[chks].any():
            picked.append(int(v))
            tainted_chk[chks] = True
            free[v] = False
    rest = rng.permutation(np.flatnonzero(free))
    candidates = np.concatenate([np.array(picked, dtype=np.int64), rest])
    best_first = _independent_prefix(row_ptr, cols.astype(np.int64), m, candidates, d)
    if best_first.size < d:
        raise RuntimeError("not enough independent columns to modulate")
    return best_first[::-1].astype(np.int32).copy()


def code_path(rate: float, directory: Path | None = None) -> Path:
    base = (
        directory
        if directory is not None
        else Path(str(resources.files("qkdnet.postprocess") / "codes"))
    )
    return base / f"ldpc_r{round(rate * 100):03d}_n{code_length(rate)}.npz"


def save_code(code: LdpcCode, path: Path) -> None:
    np.savez_compressed(path, **code.arrays())


def load_code_file(path: Path) -> LdpcCode:
    with np.load(path) as z:
        return LdpcCode(
            rate=float(z["rate"]),
            n=int(z["n"]),
            m=int(z["m"]),
            row_ptr=z["row_ptr"].astype(np.int64),
            cols=z["cols"].astype(np.int32),
            modulated=z["modulated"].astype(np.int32),
        )


@functools.cache
def load_codes() -> tuple[LdpcCode, ...]:
    """The shipped code family, sorted by rate (package data ``codes/*.npz``)."""
    codes = [load_code_file(code_path(r)) for r in sorted(DISTRIBUTIONS)]
    return tuple(codes)
