"""Per-class gains and QBER: closed-form channel model (dead time + afterpulses) vs simulator.

    python benchmarks/model_vs_simulator.py 1e8          # settings optimised for 1e8-pulse blocks

Takes the finite-size optimum settings for the given block size (decoy BB84, 25 km,
``decoy-1550-spad``), simulates 4·10^8 pulses at those settings and prints, per intensity
class, the simulated and modelled gain and X-basis QBER.
"""

from __future__ import annotations

import sys

import numpy as np

from qkdnet import simulate
from qkdnet.keyrate.detector_effects import effective_channel
from qkdnet.keyrate.observables import poisson_observables
from qkdnet.link import operating_point
from qkdnet.physics.hardware import get_preset
from qkdnet.simulate.statistics import LinkStatistics


def main() -> None:
    block = float(sys.argv[1]) if len(sys.argv) > 1 else 1e8
    distance = float(sys.argv[2]) if len(sys.argv) > 2 else 25.0
    preset = get_preset("decoy-1550-spad")
    _, kw = operating_point("decoy-bb84", distance, int(block), preset)
    levels = [kw["mu"], kw["nu"], kw["omega"]]
    eta = preset.fibre(distance).transmittance * preset.eta_bob
    eff = effective_channel(
        eta, preset.background_yield, preset, float(np.dot(kw["intensity_probs"], levels))
    )
    stats = LinkStatistics(n_classes=3)
    for b in simulate.run(
        "decoy-bb84", distance, 4 * 10**8, np.random.default_rng(5), preset=preset, **kw
    ):
        stats.add(b)
    gains, qber = stats.gains(), stats.qber_per_class(0)
    print("| class | intensity | gain sim | gain model | ratio | X QBER sim | X QBER model |")
    print("|---|---|---|---|---|---|---|")
    for k, mu in enumerate(levels):
        m = poisson_observables(mu, eff.eta, eff.background_yield, preset.optical_error)
        print(
            f"| {k} | {mu:.4f} | {gains[k]:.4e} | {m.gain:.4e} | {m.gain / gains[k]:.3f} | "
            f"{100 * qber[k]:.2f} % | {100 * m.qber:.2f} % |"
        )


if __name__ == "__main__":
    main()
