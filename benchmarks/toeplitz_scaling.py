"""Privacy amplification throughput vs input size: carry-less GF(2) product vs float64 FFT.

    python benchmarks/toeplitz_scaling.py                 # n = 1e5 … 2e7, m = n/2
    python benchmarks/toeplitz_scaling.py 1e6 1e7 0.6     # chosen sizes, m = 0.6 n
    QKDNET_CLMUL=256 python benchmarks/toeplitz_scaling.py  # as on a CPU without AVX-512

Both methods on the same inputs in the same run, alternating; each figure is the best of 3 by
CPU time of this process (one core), in Mbit/s of input. The outputs are compared bit for bit.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from qkdnet.postprocess.amplification import seed_length, toeplitz_hash
from qkdnet.postprocess.clmul import CLMUL_LANES, HAS_CLMUL
from qkdnet.postprocess.toeplitz_gf2 import plan


def _best_cpu(fn, reps: int = 3) -> float:
    best = float("inf")
    for _ in range(reps):
        start = time.process_time()
        fn()
        best = min(best, time.process_time() - start)
    return best


def main() -> None:
    args = sys.argv[1:]
    ratio = 0.5
    if args and float(args[-1]) < 1:
        ratio = float(args.pop())
    sizes = [int(float(a)) for a in args] or [10**5, 3 * 10**5, 10**6, 3 * 10**6, 10**7, 2 * 10**7]
    if not HAS_CLMUL:
        sys.exit("this CPU has no carry-less multiply (PCLMULQDQ): only the FFT path runs here")
    print(f"carry-less multiply: {CLMUL_LANES} words per load (8: VPCLMULQDQ on 512-bit "
          f"registers, 4: on 256-bit, 1: scalar); m = {ratio} n; Mbit/s of input, best of 3, "
          "CPU time")  # fmt: skip
    print("| n | m | plan (W words, leaf, row × column blocks) | GF(2) | FFT | ratio |")
    print("|---|---|---|---|---|---|")
    rng = np.random.default_rng(1)
    for n in sizes:
        m = int(ratio * n)
        x = rng.integers(0, 2, n, dtype=np.uint8)
        seed = rng.integers(0, 2, seed_length(n, m), dtype=np.uint8)
        small = seed[: seed_length(64, 64)]
        for method in ("gf2", "fft"):  # compile / load the kernels
            toeplitz_hash(x[:64], small, 64, method)
        if not np.array_equal(toeplitz_hash(x, seed, m, "gf2"), toeplitz_hash(x, seed, m, "fft")):
            sys.exit(f"GF(2) and FFT results differ at n = {n}")
        gf2, fft = (n / _best_cpu(lambda k=k: toeplitz_hash(x, seed, m, k)) / 1e6  # noqa: B023
                    for k in ("gf2", "fft"))  # fmt: skip
        w, leaf, rows, cols = plan(n, m)
        print(f"| {n:.0e} | {m:.1e} | {w}, {leaf}, {rows} × {cols} | {gf2:.0f} | {fft:.1f} "
              f"| {gf2 / fft:.1f}× |")  # fmt: skip


if __name__ == "__main__":
    main()
