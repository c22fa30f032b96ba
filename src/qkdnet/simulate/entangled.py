"""BBM92 with an entangled-pair source: both parties measure, records are the coincidences.

The source sits halfway (``source_position="middle"``, each photon crosses L/2 of fibre) or in
Alice's lab (``"alice"``), as in ``qkdnet.keyrate.bbm92.arm_transmittances``. Per trigger the source emits n pairs with the source's pair-number distribution
(quantum dot: g2(0)-driven multi-pair part; SPDC: thermal). For one pair measured in equal bases
the outcomes agree with probability (1 + V(1 − 2e_d))/2 — V the two-photon visibility, giving the
intrinsic QBER (1 − V)/2 (Bennett, Brassard, Mermin, Phys. Rev. Lett. 68, 557 (1992)); in
different bases they are independent. Several pairs in one trigger act independently, and each
party's two threshold detectors record which of them saw at least one photon, plus dark counts.

Detectors 0/1 are Alice's, 2/3 Bob's; a record is a slot where both parties registered a click
(double clicks get a random bit, as in prepare-and-measure).
"""

from __future__ import annotations

import itertools

import numpy as np

from qkdnet.physics import HardwarePreset
from qkdnet.simulate.outcomes import DARK, NONE, PHOTON
from qkdnet.simulate.records import AliceRecords, BobRecords, SimulationBlock
from qkdnet.simulate.sampler import build_alias, simulate_chunk

_NEVER = -(2**62)


def _pair_masks(eta_a: float, eta_b: float, correlation: float) -> np.ndarray:
    """P(Alice's detector mask, Bob's mask) for one pair; mask bit x = detector x hit."""
    single = np.zeros((4, 4))
    single[0, 0] = (1 - eta_a) * (1 - eta_b)
    for x in (0, 1):
        single[1 << x, 0] += eta_a * (1 - eta_b) / 2
        single[0, 1 << x] += (1 - eta_a) * eta_b / 2
        for y in (0, 1):
            same = 1.0 + correlation if x == y else 1.0 - correlation
            single[1 << x, 1 << y] += eta_a * eta_b * same / 4
    return single


def _or_convolve(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    out = np.zeros((4, 4))
    for a1, b1, a2, b2 in itertools.product(range(4), repeat=4):
        out[a1 | a2, b1 | b2] += p[a1, b1] * q[a2, b2]
    return out


def arm_efficiencies(hw: HardwarePreset, distance_km: float, position: str) -> tuple[float, float]:
    """(η_A, η_B): each arm's fibre share times its receiver's efficiency."""
    t = hw.fibre(distance_km).transmittance
    if position == "middle":
        return hw.eta_bob * float(np.sqrt(t)), hw.eta_bob * float(np.sqrt(t))
    if position == "alice":
        return hw.eta_bob, hw.eta_bob * t
    raise ValueError(f"source_position must be 'middle' or 'alice' (got {position!r})")


def label_table(
    hw: HardwarePreset, distance_km: float, basis_prob_x: float, dark: float, position: str
):
    """(detector states (L, 4), Alice basis, Bob basis, probabilities (1, L), no-click (L,))."""
    eta_a, eta_b = arm_efficiencies(hw, distance_km, position)
    n_probs = hw.source.pair_number_probs(n_max=40 if hw.source.source_kind == "spdc" else 2)
    rows: list[tuple[int, int, int, int, int, int]] = []
    probs: list[float] = []
    quiet: list[float] = []
    basis_p = (basis_prob_x, 1.0 - basis_prob_x)
    for a, b in itertools.product((0, 1), repeat=2):
        corr = hw.source.visibility * (1.0 - 2.0 * hw.optical_error) if a == b else 0.0
        single = _pair_masks(eta_a, eta_b, corr)
        masks = np.zeros((4, 4))
        current = np.zeros((4, 4))
        current[0, 0] = 1.0
        for p_n in n_probs:
            masks += p_n * current
            current = _or_convolve(current, single)
        weight = basis_p[a] * basis_p[b]
        cell: dict[tuple[int, ...], float] = {}
        for ma, mb in itertools.product(range(4), repeat=2):
            hit = ((ma >> 0) & 1, (ma >> 1) & 1, (mb >> 0) & 1, (mb >> 1) & 1)
            choices = [((PHOTON, 1.0),) if h else ((NONE, 1 - dark), (DARK, dark)) for h in hit]
            for combo in itertools.product(*choices):
                p = weight * masks[ma, mb] * np.prod([c[1] for c in combo])
                key = tuple(c[0] for c in combo)
                cell[key] = cell.get(key, 0.0) + p
        for key, p in cell.items():
            rows.append((a, b, *key))
            if all(s == NONE for s in key):
                probs.append(0.0)
                quiet.append(p)
            else:
                probs.append(p)
                quiet.append(0.0)
    attrs = np.array(rows, dtype=np.uint8)
    return (
        attrs[:, 2:].copy(),
        attrs[:, 0].copy(),
        attrs[:, 1].copy(),
        np.array([probs]),
        np.array(quiet),
    )


def _bits(det: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    fired = det > 0
    double = fired[:, 0] & fired[:, 1]
    bit = fired[:, 1].astype(np.uint8)
    bit[double] = rng.integers(0, 2, size=int(double.sum()), dtype=np.uint8)
    return bit, double


def run_bbm92(
    hw: HardwarePreset, distance_km: float, pulses: int, rng: np.random.Generator, *,
    block_pulses: int, basis_prob_x: float, attack, dark_counts: bool, dead_time: bool,
    afterpulses: bool, afterpulse_delay_s: float, source_position: str = "middle",
):  # fmt: skip
    """Stream BBM92 blocks (see ``simulate.run``)."""
    if attack is not None:
        raise ValueError("attacks are modelled for prepare-and-measure protocols only, not bbm92")
    rate_hz = hw.source.rate_hz
    dark = hw.detector.dark_count_prob if dark_counts else 0.0
    det_table, a_basis, b_basis, probs, quiet = label_table(
        hw, distance_km, basis_prob_x, dark, source_position
    )
    accept, alias = build_alias(probs)
    q_accept, q_alias = build_alias(quiet[None, :])
    click_prob = float(probs.sum())
    dead_gates = int(np.ceil(hw.detector.dead_time_s * rate_hz - 1e-9)) if dead_time else 0
    ap_prob = hw.detector.afterpulse_prob if afterpulses else 0.0
    ap_gates = max(1.0, afterpulse_delay_s * rate_hz)
    last_click = np.full(4, _NEVER, dtype=np.int64)
    pending = np.full(4, _NEVER, dtype=np.int64)
    for start in range(0, pulses, block_pulses):
        n = min(block_pulses, pulses - start)
        counters = np.zeros(4, dtype=np.int64)
        label_clicks = np.zeros(det_table.shape[0], dtype=np.int64)
        pos, lab, det = simulate_chunk(
            rng, n, click_prob, start, pulses + 1, 0, accept, alias, det_table, dead_gates, ap_prob,
            ap_gates, last_click, pending, q_accept, q_alias, label_clicks, counters,
        )  # fmt: skip
        alice_fired = (det[:, 0] > 0) | (det[:, 1] > 0)
        bob_fired = (det[:, 2] > 0) | (det[:, 3] > 0)
        both = alice_fired & bob_fired
        a_bit, _ = _bits(det[both][:, :2], rng)
        b_bit, b_double = _bits(det[both][:, 2:], rng)
        idx = pos[both]
        alice = AliceRecords(
            pulse_index=idx,
            bit=a_bit,
            basis=a_basis[lab[both]],
            intensity=np.zeros(idx.size, dtype=np.uint8),
            pulses_sent=n,
            pulses_per_class=np.array([n], dtype=np.int64),
        )
        bob = BobRecords(
            pulse_index=idx.copy(),
            bit=b_bit,
            basis=b_basis[lab[both]],
            double_click=b_double,
            click_pattern=det[both][:, 2:] > 0,
        )
        diagnostics = {
            "raw_clicks": float(counters[0]),
            "dead_time_losses": float(counters[1]),
            "afterpulse_clicks": float(counters[2]),
            "afterpulse_only_slots": float(counters[3]),
            "alice_singles": float(alice_fired.sum()),
            "bob_singles": float(bob_fired.sum()),
            "coincidences": float(both.sum()),
            "dark_count_clicks": float((det[both] == DARK).sum()),
            "double_clicks": float(b_double.sum()),
        }
        yield SimulationBlock(
            alice=alice,
            bob=bob,
            first_pulse=start,
            pulses=n,
            device_time_s=n / rate_hz,
            diagnostics=diagnostics,
            truth={"cause": det[both], "eve_bit": np.full(idx.size, 2, dtype=np.uint8)},
        )
