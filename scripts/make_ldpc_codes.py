"""Write the shipped LDPC code family to ``src/qkdnet/postprocess/codes/*.npz``.

Deterministic: the same ``--seed`` and ``--n`` give byte-identical parity-check matrices.
Usage: ``PYTHONPATH=src python scripts/make_ldpc_codes.py [--n 32768] [--seed 20090114] [--out DIR]``
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from qkdnet.postprocess.ldpc_codes import (
    DEFAULT_N,
    DEFAULT_SEED,
    DISTRIBUTIONS,
    LdpcCode,
    build_code,
    save_code,
)


def make_codes(n: int, seed: int, rates: list[float] | None = None) -> list[LdpcCode]:
    """One code per rate; rate r uses the stream seeded by (seed, round(100 r), n)."""
    out = []
    for rate in rates if rates is not None else sorted(DISTRIBUTIONS):
        rng = np.random.Generator(np.random.PCG64([seed, round(rate * 100), n]))
        out.append(build_code(rate, n, rng))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=DEFAULT_N)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parents[1] / "src/qkdnet/postprocess/codes",
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for code in make_codes(args.n, args.seed):
        path = args.out / f"ldpc_r{round(code.rate * 100):03d}_n{code.n}.npz"
        save_code(code, path)
        print(f"{path.name}: n={code.n} m={code.m} edges={code.edges} modulated={code.d}")


if __name__ == "__main__":
    main()
