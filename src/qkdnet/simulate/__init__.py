"""Event-level Monte Carlo of one QKD link: what Alice sent and what Bob's detectors saw.

``run(protocol, distance_km, pulses, rng, ...)`` streams :class:`SimulationBlock` objects; the
cost grows with the number of detections, not of emitted pulses (see ``simulate.sampler``).
"""

from qkdnet.simulate.attacks import ATTACKS, Attack
from qkdnet.simulate.engine import (
    DEFAULT_BLOCK_PULSES,
    DEFAULT_PRESETS,
    PROTOCOLS,
    resolve_preset,
    run,
)
from qkdnet.simulate.records import AliceRecords, BobRecords, SimulationBlock

__all__ = [
    "ATTACKS",
    "DEFAULT_BLOCK_PULSES",
    "DEFAULT_PRESETS",
    "PROTOCOLS",
    "AliceRecords",
    "Attack",
    "BobRecords",
    "SimulationBlock",
    "resolve_preset",
    "run",
]
