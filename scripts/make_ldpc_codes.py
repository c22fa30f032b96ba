"""Write the shipped LDPC code family to ``src/qkdnet/postprocess/codes/*.npz``.

Deterministic: the same ``--seed`` and ``--n`` give byte-identical parity-check matrices.
Usage: ``PYTHONPATH=src python scripts/make_ldpc_codes.py [--n N] [--seed 20090114] [--out DIR]``
(default length: each rate's shipped n, ``ldpc_codes.code_length``: 32768 but for the rate-0.91
code).

``--thresholds`` prints instead the density-evolution threshold of every distribution
(:mod:`qkdnet.postprocess.ldpc_design`, a few minutes); ``--design Q DC DMAX R`` runs the
LP-on-density-evolution optimisation of λ for design QBER Q, check degree DC and variable degrees
≤ DMAX, starting from the λ of the rate-R table entry (``--steps``, ``--heavy``: see
``ldpc_design.optimise``). The rate-0.91 λ is ``--design 0.0105 70 30 0.9 --steps 30 --heavy 30``
(then ρ concentrated at the check degree that gives rate 0.91); with DMAX 12 (the default
steps) the designs decoded worse at n = 32768 than Table I's λ, so the shipped rates 0.79 and
0.83 use the latter (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

from qkdnet.postprocess import ldpc_design
from qkdnet.postprocess.ldpc_codes import (
    DEFAULT_SEED,
    DISTRIBUTIONS,
    LdpcCode,
    build_code,
    code_length,
    save_code,
)


def make_codes(n: int | None, seed: int, rates: list[float] | None = None) -> list[LdpcCode]:
    """One code per rate, of length n (None: the rate's shipped length, ``code_length``); rate r
    uses the stream seeded by (seed, round(100 r), n)."""
    out = []
    for rate in rates if rates is not None else sorted(DISTRIBUTIONS):
        length = code_length(rate) if n is None else n
        rng = np.random.Generator(np.random.PCG64([seed, round(rate * 100), length]))
        out.append(build_code(rate, length, rng))
    return out


def capacity_qber(rate: float) -> float:
    """QBER q with 1 − h(q) = rate (bisection)."""
    lo, hi = 1e-9, 0.5
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        h = -mid * math.log2(mid) - (1 - mid) * math.log2(1 - mid)
        lo, hi = (mid, hi) if 1.0 - h > rate else (lo, mid)
    return lo


def print_thresholds() -> None:
    for rate in sorted(DISTRIBUTIONS):
        lam, rho = DISTRIBUTIONS[rate]
        cap = capacity_qber(ldpc_design.rate(lam, rho))
        thr = ldpc_design.threshold(lam, rho, 0.5 * cap, cap)
        print(f"rate {rate}: DE threshold {thr:.5f}, capacity {cap:.5f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--n", type=int, default=None, help="one length for all (default: each rate's)"
    )
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parents[1] / "src/qkdnet/postprocess/codes",
    )
    parser.add_argument("--thresholds", action="store_true")
    parser.add_argument("--design", nargs=4, type=float, metavar=("Q", "DC", "DMAX", "R"))
    parser.add_argument("--steps", type=int, default=12, help="LP steps of --design")
    parser.add_argument("--heavy", type=int, default=12, help="heavy degree of --design's start")
    args = parser.parse_args()
    if args.thresholds:
        print_thresholds()
        return
    if args.design:
        q, dc, dmax, start = args.design
        rho = ldpc_design.concentrated_rho(dc)
        lam = ldpc_design.optimise(
            DISTRIBUTIONS[start][0], rho, q, int(dmax), steps=args.steps, heavy=args.heavy
        )
        print(f"rate {ldpc_design.rate(lam, rho):.4f} λ {lam} ρ {rho}")
        return
    args.out.mkdir(parents=True, exist_ok=True)
    for code in make_codes(args.n, args.seed):
        path = args.out / f"ldpc_r{round(code.rate * 100):03d}_n{code.n}.npz"
        save_code(code, path)
        print(f"{path.name}: n={code.n} m={code.m} edges={code.edges} modulated={code.d}")


if __name__ == "__main__":
    main()
