"""A QKD link: device model + protocol (simulated) + post-processing, producing key blocks for
the two end KMEs.

``LinkEngine(protocol, distance_km, pulses, seed=...).next_block()`` simulates the next block of
pulses, runs Alice and Bob over an authenticated channel and returns a :class:`KeyBlockPair`
(the same key id and bytes at both ends) or an :class:`AbortedBlock` saying why there is no key.
``run_link`` drives a whole run and returns the report of ``qkdnet link``; with
``transport="tcp"`` Alice runs in a second process connected over loopback TCP, re-creating her
records from the shared simulation seed (she never sees Bob's).
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from qkdnet.postprocess.amplification import PA_FAMILIES
from qkdnet.postprocess.channel import (
    ChannelEnd,
    TcpTransport,
    channel_pair,
    local_pair,
    split_preshared,
)
from qkdnet.postprocess.estimation import DecoySettings
from qkdnet.postprocess.pipeline import Alice, BlockResult, Bob, PostprocessConfig, run_pair
from qkdnet.simulate import resolve_preset
from qkdnet.simulate import run as simulate_run
from qkdnet.simulate.records import SimulationBlock

PRESHARED_BYTES = 1 << 16
TRANSPORTS = ("memory", "tcp")


DEFAULT_BLOCK_PULSES = 10**9


def decoy_settings(protocol: str, preset: Any = None) -> DecoySettings:
    """The public intensity classes of ``protocol`` on ``preset`` (one class without decoys)."""
    hw = resolve_preset(protocol, preset)
    if protocol == "decoy-bb84":
        return DecoySettings(tuple(hw.source.intensities), tuple(hw.source.intensity_probs))
    return DecoySettings((0.0,), (1.0,))


def operating_point(
    protocol: str, distance_km: float, block_pulses: int, preset: Any
) -> tuple[DecoySettings, dict[str, Any]]:
    """Intensities, their probabilities and the basis probability that maximise the
    finite-size key rate of a block (``qkdnet.keyrate.key_rate``, Lim et al. 2014), as a real
    system is configured; returns the public settings and the simulator's keyword arguments."""
    if protocol != "decoy-bb84":
        return decoy_settings(protocol, preset), {}
    from qkdnet.keyrate.rate import key_rate

    params = key_rate(protocol, distance_km, preset, block_size=float(block_pulses)).params
    if "intensities" not in params or not params.get("q_x"):
        return decoy_settings(protocol, preset), {}
    mu, nu, omega = (float(x) for x in params["intensities"])
    probs = tuple(float(p) for p in params["probs"])
    kwargs = {
        "mu": mu,
        "nu": nu,
        "omega": omega,
        "intensity_probs": probs,
        "basis_prob_x": float(params["q_x"]),
    }
    return DecoySettings((mu, nu, omega), probs), kwargs


@dataclass(frozen=True)
class KeyBlockPair:
    """One secret key block, identical at both ends (``key_bytes`` packs the key bits)."""

    key_id: str
    alice_key: bytes
    bob_key: bytes
    bits: int
    device_time_s: float
    report: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AbortedBlock:
    """A block that produced no key, and why."""

    reason: str
    device_time_s: float
    report: dict[str, Any] = field(default_factory=dict)


def _rngs(seed: int) -> tuple[np.random.Generator, np.random.Generator, np.random.Generator]:
    return (
        np.random.default_rng(seed),
        np.random.default_rng([seed, 1]),
        np.random.default_rng([seed, 2]),
    )


def _preshared(seed: int) -> bytes:
    """Initial authentication key (simulation: from the seed; a deployment installs one)."""
    return np.random.default_rng([seed, 3]).bytes(PRESHARED_BYTES)


def party_randomness(seed: int, live: bool) -> tuple[np.random.Generator, Any, Any, bytes]:
    """(simulator rng, Alice's, Bob's, initial authentication key).

    Simulation mode: all four from ``seed`` (reproducible). Live mode: the parties' choices and
    the pre-installed authentication key come from ``os.urandom``
    (:class:`~qkdnet.postprocess.randomness.SystemRandomness`; ``PostprocessConfig.live``
    switches LDPC's private values to it too); the simulated devices still draw from a
    generator seeded with ``seed`` (pass one from ``secrets``), as a hardware QRNG would feed a
    real device.
    """
    if not live:
        return (*_rngs(seed), _preshared(seed))
    import os

    from qkdnet.postprocess.randomness import SystemRandomness

    return (
        np.random.default_rng(seed),
        SystemRandomness(),
        SystemRandomness(),
        os.urandom(PRESHARED_BYTES),
    )


class LinkEngine:
    """Simulated link producing key blocks; both parties in this process (memory transport)."""

    def __init__(
        self,
        protocol: str,
        distance_km: float,
        pulses: int,
        *,
        seed: int = 1,
        preset: Any = None,
        reconciliation: str = "cascade",
        block_pulses: int | None = None,
        config: PostprocessConfig | None = None,
        ldpc_codes: str = "efficient",
        detector_effects: bool = True,
        live: bool = False,
        privacy_amplification: str = PA_FAMILIES[0],
    ) -> None:
        block_pulses = int(block_pulses or min(int(pulses), DEFAULT_BLOCK_PULSES))
        settings, kwargs = operating_point(protocol, distance_km, block_pulses, preset)
        self.config = config or PostprocessConfig(
            settings, reconciliation=reconciliation, ldpc_codes=ldpc_codes,
            privacy_amplification=privacy_amplification,
        )  # fmt: skip
        if live:
            self.config = dataclasses.replace(self.config, live=True)
        sim_rng, self._alice_rng, self._bob_rng, preshared = party_randomness(seed, live)
        kwargs["block_pulses"] = block_pulses
        if not detector_effects:
            kwargs.update(dead_time=False, afterpulses=False)
        self._blocks: Iterator[SimulationBlock] = simulate_run(
            protocol, distance_km, int(pulses), sim_rng, preset=preset, **kwargs
        )
        ca, cb = channel_pair(local_pair(), preshared)
        self.alice = Alice(ca, self.config)
        self.bob = Bob(cb, self.config)

    def next_block(self) -> KeyBlockPair | AbortedBlock | None:
        """Simulate and post-process the next block; None when the run is over."""
        block = next(self._blocks, None)
        if block is None:
            return None
        ra, rb = run_pair(
            self.alice, self.bob, block.alice, block.bob, self._alice_rng, self._bob_rng
        )
        return _pair(ra, rb, block.device_time_s)


def _pair(ra: BlockResult, rb: BlockResult, device_time_s: float) -> KeyBlockPair | AbortedBlock:
    report = rb.summary()
    if ra.aborted or rb.aborted or ra.key is None or rb.key is None:
        reason = rb.abort_reason or ra.abort_reason or "aborted"
        return AbortedBlock(reason, device_time_s, report)
    if not np.array_equal(ra.key, rb.key):  # verification makes this (ε_cor-)impossible
        return AbortedBlock("final keys differ", device_time_s, report)
    return KeyBlockPair(
        key_id=str(uuid.uuid4()),
        alice_key=np.packbits(ra.key).tobytes(),
        bob_key=np.packbits(rb.key).tobytes(),
        bits=int(ra.key.size),
        device_time_s=device_time_s,
        report=report,
    )


def _tcp_settings(args: dict[str, Any]) -> tuple[PostprocessConfig, dict[str, Any]]:
    """The public settings both processes of a TCP run derive alike from the run's arguments."""
    settings, kwargs = operating_point(
        args["protocol"], args["distance_km"], int(args["block_pulses"]), args["preset"]
    )
    config = PostprocessConfig(
        settings, reconciliation=args["reconciliation"], ldpc_codes=args["ldpc_codes"],
        privacy_amplification=args["privacy_amplification"],
    )  # fmt: skip
    kwargs["block_pulses"] = int(args["block_pulses"])
    if not args["detector_effects"]:
        kwargs.update(dead_time=False, afterpulses=False)
    return config, kwargs


def _alice_process(port: int, args: dict[str, Any]) -> None:
    """Alice's process for the TCP transport: re-simulate her records, serve Bob."""
    seed = int(args["seed"])
    sim_rng, alice_rng, _ = _rngs(seed)
    config, kwargs = _tcp_settings(args)
    ab, ba = split_preshared(_preshared(seed))
    channel = ChannelEnd("alice", "bob", TcpTransport.connect("127.0.0.1", port), ab, ba)
    alice = Alice(channel, config)
    for block in simulate_run(
        args["protocol"], args["distance_km"], int(args["pulses"]), sim_rng,
        preset=args["preset"], **kwargs,
    ):  # fmt: skip
        alice.process(block.alice, alice_rng)
    channel.transport.close()


def _tcp_blocks(args: dict[str, Any]) -> Iterator[tuple[BlockResult, float]]:
    """Bob's side of a TCP run; Alice in a spawned process."""
    seed = int(args["seed"])
    sim_rng, _, bob_rng = _rngs(seed)
    config, kwargs = _tcp_settings(args)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    proc = multiprocessing.get_context("spawn").Process(
        target=_alice_process, args=(port, args), name="qkdnet-alice", daemon=True
    )
    proc.start()
    listener.settimeout(120)
    conn, _ = listener.accept()
    listener.close()
    ab, ba = split_preshared(_preshared(seed))
    bob = Bob(ChannelEnd("bob", "alice", TcpTransport(conn), ba, ab), config)
    try:
        for block in simulate_run(
            args["protocol"], args["distance_km"], int(args["pulses"]), sim_rng,
            preset=args["preset"], **kwargs,
        ):  # fmt: skip
            yield bob.process(block.bob, bob_rng), block.device_time_s
    finally:
        bob.channel.transport.close()
        proc.join(timeout=30)


def run_link(
    protocol: str,
    distance_km: float,
    pulses: int,
    *,
    seed: int = 1,
    preset: Any = None,
    reconciliation: str = "cascade",
    transport: str = "memory",
    block_pulses: int | None = None,
    detector_effects: bool = True,
    ldpc_codes: str = "efficient",
    privacy_amplification: str = PA_FAMILIES[0],
) -> dict[str, Any]:
    """Simulate and post-process a whole run; the report of ``qkdnet link``.

    ``detector_effects=False`` switches off dead time and afterpulses, the detector model of
    the closed-form key rate (for end-to-end comparisons with it)."""
    if transport not in TRANSPORTS:
        raise ValueError(f"transport must be one of {', '.join(TRANSPORTS)} (got {transport!r})")
    start = time.perf_counter()
    results: list[tuple[BlockResult, float]] = []
    if transport == "memory":
        engine = LinkEngine(
            protocol, distance_km, pulses, seed=seed, preset=preset,
            reconciliation=reconciliation, block_pulses=block_pulses,
            detector_effects=detector_effects, ldpc_codes=ldpc_codes,
            privacy_amplification=privacy_amplification,
        )  # fmt: skip
        while True:
            block = next(engine._blocks, None)
            if block is None:
                break
            ra, rb = run_pair(
                engine.alice, engine.bob, block.alice, block.bob, engine._alice_rng,
                engine._bob_rng,
            )  # fmt: skip
            if not ra.aborted and not rb.aborted and not np.array_equal(ra.key, rb.key):
                rb.aborted, rb.abort_reason = True, "final keys differ"
            results.append((rb, block.device_time_s))
    else:
        block_pulses = int(block_pulses or min(int(pulses), DEFAULT_BLOCK_PULSES))
        args = {
            "protocol": protocol, "distance_km": distance_km, "pulses": pulses, "seed": seed,
            "preset": preset, "reconciliation": reconciliation, "block_pulses": block_pulses,
            "detector_effects": detector_effects, "ldpc_codes": ldpc_codes,
            "privacy_amplification": privacy_amplification,
        }  # fmt: skip
        results = list(_tcp_blocks(args))
    return summarise(results, time.perf_counter() - start)


def summarise(results: list[tuple[BlockResult, float]], wall_s: float) -> dict[str, Any]:
    """Aggregate block results into the ``qkdnet link`` JSON keys."""
    device_s = sum(t for _, t in results)
    done = [r for r, _ in results if not r.aborted]
    key_in = sum(r.key_bits_before_ec for r in done)
    errors = sum(r.qber * r.key_bits_before_ec for r in done)
    disclosed = sum(r.disclosed_bits for r in done)
    qber = errors / key_in if key_in else (results[-1][0].qber_sample if results else 0.0)
    from qkdnet.keyrate.entropy import binary_entropy

    h = float(binary_entropy(qber)) if 0.0 < qber < 1.0 else 0.0
    final = sum(r.final_key_bits for r in done)
    reasons = [r.abort_reason for r, _ in results if r.aborted]
    return {
        "blocks": len(results),
        "blocks_aborted": len(reasons),
        "sifted_bits": sum(r.sifted_bits for r, _ in results),
        "qber": qber,
        "disclosed_bits": disclosed,
        "efficiency": disclosed / (key_in * h) if key_in and h else None,
        "final_key_bits": final,
        "secret_key_rate_bps": final / device_s if device_s else 0.0,
        "device_time_s": device_s,
        "auth_key_bits": sum(r.auth_key_bits for r, _ in results),
        "aborted": bool(results) and not done,
        "abort_reason": reasons[0]
        if reasons and not done
        else ("; ".join(sorted(set(reasons))) if reasons else ""),
        "wall_s": wall_s,
    }
