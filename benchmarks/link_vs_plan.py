"""Secret key rate of the full link chain vs the closed form and the planner, per block size.

    python benchmarks/link_vs_plan.py 1e7:20 3e7:10 1e8:5 1e9:2

Each argument is ``pulses_per_block:blocks``. For each, runs ``qkdnet.link.run_link`` (event
simulation with dead time and afterpulses, sifting, Lim 2014 estimation, Cascade, verification,
Toeplitz PA) on decoy BB84 over 25 km with ``decoy-1550-spad`` and prints a Markdown table row:
link rate, ``qkdnet.keyrate.key_rate`` at the same block size, the planner's figure (keyrate less
the authentication key a block spends) and the ratios. Optional ``--distance KM``.
"""

from __future__ import annotations

import argparse

from qkdnet.keyrate.rate import key_rate
from qkdnet.link import run_link
from qkdnet.network.planner import net_of_authentication


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="pulses_per_block:blocks, e.g. 1e8:5")
    parser.add_argument("--distance", type=float, default=25.0)
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    print("| N | blocks | link (bit/s) | keyrate (bit/s) | link/keyrate | plan (bit/s) | link/plan "
          "| aborted | link QBER | model QBER | Cascade f |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for run in args.runs:
        n_text, blocks_text = run.split(":")
        n, blocks = int(float(n_text)), int(blocks_text)
        r = run_link("decoy-bb84", args.distance, blocks * n, seed=args.seed, block_pulses=n)
        k = key_rate("decoy-bb84", args.distance, "decoy-1550-spad", block_size=n)
        p = net_of_authentication(k, n)
        rate = r["secret_key_rate_bps"]
        print(
            f"| {n:.0e} | {blocks} | {rate:,.0f} | {k.key_rate_bps:,.0f} | "
            f"{rate / k.key_rate_bps:.3f} | {p.key_rate_bps:,.0f} | {rate / p.key_rate_bps:.3f} | "
            f"{r['blocks_aborted']} | {100 * r['qber']:.2f} % | {100 * k.qber:.2f} % | "
            f"{r['efficiency']:.3f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
