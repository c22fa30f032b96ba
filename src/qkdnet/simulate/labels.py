"""Event labels: everything the simulator needs to know about one detection, as one small integer.

A prepare-and-measure pulse is described by its *cell* (reference or key pulse, intensity class,
Alice's basis and bit, Bob's basis) plus what Eve learnt and each detector's state. All pulses
of a cell are alike, so the probability that a pulse produces a given label is a number known in
closed form (``simulate.outcomes``); the sampler draws labels of clicked pulses only.

The label table is rebuilt whenever the channel changes (polarisation drift): ``probs`` has one
row per time segment. ``noclick`` holds, per cell, the probability that a pulse of that cell does
not click: it gives the pulses per intensity class and Alice's settings in slots where only an
afterpulse fires.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from qkdnet.simulate.attacks import Attack
from qkdnet.simulate.outcomes import DARK, NONE, PHOTON, forced_outcome, pair_outcomes

KEY, REFERENCE = 0, 1
EVE_NONE = 2


@dataclass(frozen=True)
class LabelTable:
    """Attributes per label (index = label) and their per-pulse probabilities per segment."""

    kind: np.ndarray  # uint8: 0 key pulse, 1 reference pulse (compensation loop)
    intensity: np.ndarray  # uint8 class
    alice_basis: np.ndarray  # uint8 (reference pulses: 0 = H, 1 = D)
    alice_bit: np.ndarray  # uint8
    bob_basis: np.ndarray  # uint8 (reference pulses: analyser 0/1/2 = S1/S2/S3)
    eve_bit: np.ndarray  # uint8: 0/1 = Eve's bit, 2 = Eve knows nothing
    det: np.ndarray  # (L, n_detectors) uint8 states
    probs: np.ndarray  # (n_seg, L): P(this label and a click) per pulse
    noclick: np.ndarray  # (L,): P(this cell and no click) per pulse; zero for clicking labels

    @property
    def click_prob(self) -> float:
        """Probability that a pulse gives at least one click (the same in every segment)."""
        return float(self.probs[0].sum())


@dataclass(frozen=True)
class PrepareMeasureModel:
    """Per-pulse physics of a prepare-and-measure link (decoy BB84 or single-photon BB84).

    ``photon_probs[k]``: photon-number distribution of intensity class k; ``eta``: fibre ×
    Bob's efficiency; ``eta_bob``: Bob's efficiency alone (what a lossless line would leave);
    ``optical_error``: e_d; ``reference_fraction``: share of pulses spent as reference states.
    """

    photon_probs: tuple[np.ndarray, ...]
    class_probs: tuple[float, ...]
    basis_prob_x: float
    eta: float
    eta_bob: float
    dark_prob: float
    optical_error: float
    attack: Attack | None = None
    reference_fraction: float = 0.0

    def transfer_probability(self, transfer: np.ndarray, prep: int, analyser: int) -> np.ndarray:
        """P(Bob's outcome equals the prepared bit) per segment.

        ``transfer`` (n_seg, 3, 3) maps Alice's Stokes axes to Bob's (identity for a perfect
        channel); the optical error acts as a depolarising factor 1 − 2e_d.
        """
        return 0.5 * (1.0 + (1.0 - 2.0 * self.optical_error) * transfer[:, analyser, prep])

    def pns_transmission(self) -> tuple[float, float]:
        """(s1, s2): share of single and multi-photon pulses Eve forwards so that the signal
        gain matches the honest one (Brassard et al. 2000); s2 < 1 only if s1 = 0 is not enough."""
        probs = self.photon_probs[0]
        n = np.arange(probs.size)
        y0 = 1.0 - (1.0 - self.dark_prob) ** 2
        honest = float(np.dot(probs, 1.0 - (1.0 - y0) * (1.0 - self.eta) ** n))
        bob = 1.0 - (1.0 - y0) * (1.0 - self.eta_bob) ** np.maximum(n - 1, 0)
        multi = float(np.dot(probs[2:], bob[2:]))
        multi_weight = float(probs[2:].sum())
        single_gain = 1.0 - (1.0 - y0) * (1.0 - self.eta_bob)
        base = y0 * (probs[0] + probs[1])
        s1 = (honest - base - multi) / (probs[1] * (single_gain - y0)) if probs[1] > 0 else 0.0
        if s1 >= 0.0:
            return min(s1, 1.0), 1.0
        s2 = (honest - y0 * (probs[0] + probs[1] + multi_weight)) / (multi - y0 * multi_weight)
        return 0.0, float(np.clip(s2, 0.0, 1.0))

    def blinding_trigger_prob(self) -> float:
        """Share of detected pulses Eve converts into triggers so Bob's signal gain looks honest."""
        probs = self.photon_probs[0]
        n = np.arange(probs.size)
        y0 = 1.0 - (1.0 - self.dark_prob) ** 2
        honest = float(np.dot(probs, 1.0 - (1.0 - y0) * (1.0 - self.eta) ** n))
        q = self.attack.eve_basis_prob_x if self.attack else 0.5
        match = q * self.basis_prob_x + (1.0 - q) * (1.0 - self.basis_prob_x)
        detect = 1.0 - probs[0]
        return float(min(1.0, honest / (detect * match))) if detect * match > 0 else 0.0

    def _branches(self, k: int, a: int, b: int, transfer: np.ndarray):
        """Yield (eve_bit relative: 0 same as Alice's, 1 flipped, 2 none; outcome (n_seg,3,3)
        in the frame (detector of Alice's bit, other detector), relative to ``eve``'s bit)."""
        probs = self.photon_probs[k]
        n_seg = transfer.shape[0]
        attack = self.attack
        honest_p = self.transfer_probability(transfer, a, b)
        if attack is None or attack.name == "intercept-resend":
            keep = 1.0 if attack is None else 1.0 - attack.fraction
            if keep > 0.0:
                yield EVE_NONE, pair_outcomes(probs * keep, self.eta, honest_p, self.dark_prob)
            if attack is None or attack.fraction == 0.0:
                return
            f = attack.fraction
            for beta, q in ((0, attack.eve_basis_prob_x), (1, 1.0 - attack.eve_basis_prob_x)):
                if q == 0.0:
                    continue
                yield (
                    EVE_NONE,
                    pair_outcomes(np.array([f * q * probs[0]]), self.eta, honest_p, self.dark_prob),
                )
                detect = f * q * (1.0 - probs[0])
                p_eve = self.transfer_probability(transfer, beta, b)
                one = np.array([0.0, 1.0])
                if beta == a:
                    yield 0, pair_outcomes(one * detect, self.eta, p_eve, self.dark_prob)
                else:
                    half = pair_outcomes(one * detect * 0.5, self.eta, p_eve, self.dark_prob)
                    yield 0, half
                    yield 1, half.transpose(0, 2, 1)  # Eve's bit is the other detector
            return
        if attack.name == "pns":
            s1, s2 = self.pns_transmission()
            head = np.zeros(2)
            head[0] = probs[0] + probs[1] * (1.0 - s1)
            head[1] = probs[1] * s1
            yield EVE_NONE, pair_outcomes(head, self.eta_bob, honest_p, self.dark_prob)
            multi = np.zeros(probs.size)
            multi[1:-1] = probs[2:] * s2  # n photons sent, Eve keeps one: n - 1 forwarded
            multi[0] = probs[2:].sum() * (1.0 - s2)
            yield 0, pair_outcomes(multi, self.eta_bob, honest_p, self.dark_prob)
            return
        # blinding: detectors in linear mode, no dark counts; Eve's trigger clicks the detector
        # of her result only when Bob measures in her basis.
        trigger = self.blinding_trigger_prob()
        detect = 1.0 - probs[0]
        yield EVE_NONE, forced_outcome(n_seg, probs[0], NONE, NONE)
        for beta, q in ((0, attack.eve_basis_prob_x), (1, 1.0 - attack.eve_basis_prob_x)):
            if q == 0.0:
                continue
            fire = trigger if beta == b else 0.0
            results = ((0, 1.0),) if beta == a else ((0, 0.5), (1, 0.5))
            for rel, share in results:
                w = q * detect * share
                out = forced_outcome(n_seg, w * (1.0 - fire), NONE, NONE)
                if rel == 0:
                    out[:, PHOTON, NONE] += w * fire
                else:
                    out[:, NONE, PHOTON] += w * fire
                yield rel, out

    def table(self, transfer: np.ndarray) -> LabelTable:
        """The label table for channel transfer matrices ``transfer`` (n_seg, 3, 3)."""
        acc: dict[tuple[int, ...], np.ndarray] = {}
        noclick: dict[tuple[int, ...], float] = {}
        px = self.basis_prob_x
        basis_p = (px, 1.0 - px)
        key_share = 1.0 - self.reference_fraction
        for k, pk in enumerate(self.class_probs):
            for a in (0, 1):
                for b in (0, 1):
                    weight = key_share * pk * basis_p[a] * basis_p[b] * 0.5
                    if weight == 0.0:
                        continue
                    for eve_rel, out in self._branches(k, a, b, transfer):
                        for s in (0, 1):
                            eve = EVE_NONE if eve_rel == EVE_NONE else s ^ eve_rel
                            _accumulate(acc, noclick, (KEY, k, a, s, b, eve), s, weight * out)
        if self.reference_fraction > 0.0:
            probs = self.photon_probs[0]
            for x in (0, 1):
                for analyser in (0, 1, 2):
                    weight = self.reference_fraction * 0.5 / 3.0
                    p = self.transfer_probability(transfer, x, analyser)
                    out = pair_outcomes(probs, self.eta, p, self.dark_prob)
                    _accumulate(
                        acc, noclick, (REFERENCE, 0, x, 0, analyser, EVE_NONE), 0, weight * out
                    )
        return _assemble(acc, noclick, transfer.shape[0])


def _accumulate(acc, noclick, cell: tuple[int, ...], bit: int, out: np.ndarray) -> None:
    """Add a branch's outcome probabilities (frame: Alice's-bit detector, other) to the labels."""
    for c_state in (NONE, PHOTON, DARK):
        for w_state in (NONE, PHOTON, DARK):
            p = out[:, c_state, w_state]
            if c_state == NONE and w_state == NONE:
                key = (*cell[:5], EVE_NONE)
                noclick[key] = noclick.get(key, 0.0) + float(p[0])
                continue
            if not p.any():
                continue
            det = (c_state, w_state) if bit == 0 else (w_state, c_state)
            key = (*cell, *det)
            if key in acc:
                acc[key] = acc[key] + p
            else:
                acc[key] = p.copy()


def _assemble(acc, noclick, n_seg: int) -> LabelTable:
    keys = list(acc)
    quiet = [(*cell, NONE, NONE) for cell in noclick]
    attrs = np.array(keys + quiet, dtype=np.uint8).reshape(-1, 8)
    probs = np.zeros((n_seg, len(keys) + len(quiet)))
    for j, key in enumerate(keys):
        probs[:, j] = acc[key]
    nc = np.zeros(len(keys) + len(quiet))
    nc[len(keys) :] = list(noclick.values())
    return LabelTable(
        kind=attrs[:, 0].copy(),
        intensity=attrs[:, 1].copy(),
        alice_basis=attrs[:, 2].copy(),
        alice_bit=attrs[:, 3].copy(),
        bob_basis=attrs[:, 4].copy(),
        eve_bit=attrs[:, 5].copy(),
        det=attrs[:, 6:8].copy(),
        probs=probs,
        noclick=nc,
    )
