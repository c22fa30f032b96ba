"""Key blocks of a running network's link from the link engine (simulation + post-processing).

:class:`LinkEngineBlocks` wraps :class:`qkdnet.link.LinkEngine` for one scenario link: every
block is the event simulation of ``block_pulses`` pulses of the link (its protocol, hardware
preset and total loss, extra loss included as the planner counts it) followed by the full
post-processing (sifting, Lim 2014 finite-size estimation, Cascade, verification, Toeplitz
privacy amplification over a Wegman–Carter-authenticated channel). The block's device time is
the simulator's (``block_pulses / source rate``), so a worker's key rate in bits per device
second is the engine's whatever the wall-clock speed.

:func:`engine_block_pulses` chooses the pulses per block of a link: the scenario's
``block_size`` unless a block of that size would take much more than a second of one core
(the post-processing time grows with the detections), in which case the largest smaller
1-3-10 size under :data:`DETECTIONS_PER_BLOCK` whose finite-size key (planner's closed form)
is positive. The runtime plans each link at this same size, so measured and planned finite-size
rates compare like for like.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np

from qkdnet.link import (
    AbortedBlock,
    KeyBlockPair,
    LinkEngine,
    operating_point,
    party_randomness,
)
from qkdnet.network.scenario import LinkSpec
from qkdnet.physics.hardware import get_preset
from qkdnet.postprocess.channel import channel_pair, local_pair
from qkdnet.postprocess.pipeline import Alice, Bob, PostprocessConfig
from qkdnet.simulate import run as simulate_run

ENGINE_LINK = "link engine: simulate + post-process"
#: Protocols the link engine runs (simulator + post-processing pipeline).
ENGINE_PROTOCOLS = ("decoy-bb84", "sps-bb84", "bbm92")
#: Expected detections per block that post-process in about a second on one core (measured:
#: ~3e6 detections in 2.3 s, decoy-1550-spad at 1.9 dB, 10^8 pulses; loaded 2-core machine).
DETECTIONS_PER_BLOCK = 1.5e6
#: Simulator attack of each scenario attack kind ("noise" has none: not simulated).
SIM_ATTACKS = {
    "intercept-resend": "intercept-resend:{f}",
    "pns": "pns",
    "detector-blinding": "blinding",
}
#: Pulses simulated in total by a worker's engine (effectively unbounded).
ENGINE_RUN_PULSES = 10**18


def engine_distance_km(link: LinkSpec) -> float:
    """Fibre length with the same total loss as the link (extra loss as equivalent fibre)."""
    return link.length_km + link.extra_loss_db / max(link.attenuation_db_per_km, 1e-9)


def _detection_prob(link: LinkSpec) -> float:
    """Rough detections per pulse: mean photons × channel × receiver × detector efficiency."""
    preset = get_preset(link.hardware)
    src = preset.source
    photons = float(getattr(src, "mu", None) or getattr(src, "brightness", None) or 0.1)
    det = preset.detector
    return photons * 10 ** (-link.loss_db / 10) * preset.bob_transmittance * det.efficiency


def _ladder_below(n: int) -> list[int]:
    """``n`` then the 1-3-10 sizes below it, down to 10^6."""
    out = [n]
    k = 10 ** math.floor(math.log10(n))
    for size in (3 * k, k, 3 * k // 10, k // 10, 3 * k // 100, k // 100):
        if 10**6 <= size < n:
            out.append(size)
    return sorted(set(out), reverse=True)


def engine_block_pulses(link: LinkSpec) -> int:
    """Pulses per block for ``link`` (see module docstring)."""
    if link.protocol not in ENGINE_PROTOCOLS:
        return link.block_size
    from qkdnet.network.planner import link_key_rate

    if link.protocol == "bbm92":
        # entangled pairs at 780 nm: so few coincidences per pulse that a block's key only
        # clears its fixed authentication cost (1,280 bits) at ~30x the scenario's block.
        # Measured on Milan's unimib--aria (80 MHz): 1e9 pulses -> aborted (380-bit key),
        # 3e9 -> 1,008 bit/s, 1e10 -> 1,669 bit/s (asymptotic plan: 1,692) in 4.4 s of CPU
        return 100 * link.block_size
    budget = DETECTIONS_PER_BLOCK * (1.0 if link.protocol == "decoy-bb84" else 0.3)
    p = max(_detection_prob(link), 1e-12)
    sizes = _ladder_below(link.block_size)
    fast = [n for n in sizes if n * p <= budget]
    if not fast or link.protocol != "decoy-bb84":
        return fast[0] if fast else sizes[-1]
    for n in fast:  # largest fast size with a positive finite-size key
        if link_key_rate(replace(link, block_size=n)).key_rate_bps > 0:
            return n
    return link.block_size


class _Engine(LinkEngine):
    """:class:`LinkEngine` with extra simulator settings (BBM92 source position)."""

    def __init__(
        self,
        protocol: str,
        distance_km: float,
        block_pulses: int,
        *,
        seed: int,
        preset: str,
        sim_kwargs: dict[str, Any],
        live: bool = False,
    ) -> None:
        settings, kwargs = operating_point(protocol, distance_km, block_pulses, preset)
        self.config = PostprocessConfig(settings, live=live)
        sim_rng, self._alice_rng, self._bob_rng, preshared = party_randomness(seed, live)
        kwargs.update(sim_kwargs, block_pulses=block_pulses)
        self._blocks = simulate_run(
            protocol, distance_km, ENGINE_RUN_PULSES, sim_rng, preset=preset, **kwargs
        )
        ca, cb = channel_pair(local_pair(), preshared)
        self.alice = Alice(ca, self.config)
        self.bob = Bob(cb, self.config)


class LinkEngineBlocks:
    """Block source of a runtime link worker backed by the link engine.

    ``next_block()`` returns a :class:`KeyBlockPair` (Alice's and Bob's keys under one key id)
    or an :class:`AbortedBlock`; ``qber`` is the block's QBER from the engine's report.
    """

    engine = ENGINE_LINK
    qber_source = "link engine"

    def __init__(
        self, link: LinkSpec, seed: int, block_pulses: int | None = None, live: bool = False
    ) -> None:
        if link.protocol not in ENGINE_PROTOCOLS:
            raise ValueError(f"the link engine cannot run protocol {link.protocol!r}")
        self.link = link
        self.seed = int(seed)
        self.live = live  # parties' choices and the initial auth key from os.urandom
        self.block_pulses = int(block_pulses or engine_block_pulses(link))
        self.block_device_s = self.block_pulses / get_preset(link.hardware).source.rate_hz
        self._engine = self._make(None)
        self.attack_applied = False
        self.qber = 0.0

    def _make(self, attack: str | None) -> _Engine:
        sim_kwargs: dict[str, Any] = {}
        if self.link.protocol == "bbm92":
            pos = "alice" if self.link.entangled_source == "a" else "middle"
            sim_kwargs["source_position"] = pos
        if attack:
            sim_kwargs["attack"] = attack
        return _Engine(
            self.link.protocol,
            engine_distance_km(self.link),
            self.block_pulses,
            seed=self.seed + (1 if attack else 0),
            preset=self.link.hardware,
            sim_kwargs=sim_kwargs,
            live=self.live,
        )

    def next_block(self, device_time_s: float = 0.0) -> KeyBlockPair | AbortedBlock:
        """The block starting at ``device_time_s``; from the scenario's attack start on, the
        simulator runs the attack (intercept-resend, PNS, blinding)."""
        attack = self.link.attack
        if attack is not None and not self.attack_applied and device_time_s >= attack.start_s:
            self.attack_applied = True
            spec = SIM_ATTACKS.get(attack.kind)
            if spec is not None:
                self._engine = self._make(spec.format(f=attack.fraction))
        block = self._engine.next_block()
        if block is None:  # ENGINE_RUN_PULSES is never reached in practice
            return AbortedBlock("link engine run finished", 0.0, {})
        self.qber = block_qber(block.report)
        return block


def block_qber(report: dict[str, Any]) -> float:
    """The block's QBER from the engine's report: the error-corrected key's (``qber``), or,
    for a block aborted before error correction, the estimate on the sample."""
    for key in ("qber", "qber_sample", "qber_z"):
        value = float(report.get(key) or 0.0)
        if value > 0.0 and np.isfinite(value):
            return value
    return 0.0
