"""Counts over a stream of blocks: gains, sifted bits and QBER per intensity class and basis.

These are the observed quantities of the decoy method (Ma, Qi, Zhao, Lo, Phys. Rev. A 72,
012326 (2005)): the gain Q_k (detections per pulse of class k, any bases) and the error rate
E_k of the sifted bits (Alice's and Bob's bases equal). The simulation tests compare them with
``qkdnet.keyrate.observables``; ``qkdnet simulate`` prints them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from qkdnet.simulate.records import SimulationBlock


@dataclass
class LinkStatistics:
    """Running totals; ``add`` one block at a time (constant memory)."""

    n_classes: int = 3
    pulses: int = 0
    pulses_per_class: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    detections_per_class: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    sifted: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), dtype=np.int64))
    errors: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), dtype=np.int64))
    eve_correct: float = 0.0
    diagnostics: dict[str, float] = field(default_factory=dict)
    device_time_s: float = 0.0

    def __post_init__(self) -> None:
        k = self.n_classes
        self.pulses_per_class = np.zeros(k, dtype=np.int64)
        self.detections_per_class = np.zeros(k, dtype=np.int64)
        self.sifted = np.zeros((k, 2), dtype=np.int64)
        self.errors = np.zeros((k, 2), dtype=np.int64)

    def add(self, block: SimulationBlock) -> None:
        """Fold one block into the totals."""
        a, b = block.alice, block.bob
        k = self.n_classes
        self.pulses += block.pulses
        self.device_time_s += block.device_time_s
        self.pulses_per_class += np.asarray(a.pulses_per_class[:k], dtype=np.int64)
        self.detections_per_class += np.bincount(a.intensity, minlength=k)[:k]
        match = a.basis == b.basis
        wrong = match & (a.bit != b.bit)
        index = a.intensity.astype(np.int64) * 2 + a.basis
        self.sifted += np.bincount(index[match], minlength=2 * k)[: 2 * k].reshape(k, 2)
        self.errors += np.bincount(index[wrong], minlength=2 * k)[: 2 * k].reshape(k, 2)
        eve = block.truth.get("eve_bit")
        if eve is not None and eve.size:
            known = eve[match] < 2
            self.eve_correct += float(np.count_nonzero(eve[match][known] == b.bit[match][known]))
            self.eve_correct += 0.5 * float(np.count_nonzero(~known))
        for name, value in block.diagnostics.items():
            self.diagnostics[name] = self.diagnostics.get(name, 0.0) + float(value)

    @classmethod
    def of(cls, blocks: Iterable[SimulationBlock], n_classes: int = 3) -> LinkStatistics:
        """Totals of a whole stream."""
        stats = cls(n_classes=n_classes)
        for block in blocks:
            stats.add(block)
        return stats

    @property
    def detections(self) -> int:
        return int(self.detections_per_class.sum())

    @property
    def sifted_bits(self) -> int:
        return int(self.sifted.sum())

    def gains(self) -> np.ndarray:
        """Q_k: detections per pulse of each class."""
        return self.detections_per_class / np.maximum(self.pulses_per_class, 1)

    def qber_per_class(self, basis: int | None = None) -> np.ndarray:
        """E_k over sifted bits of one basis (0 = X key, 1 = Z test) or both (None)."""
        s = self.sifted.sum(axis=1) if basis is None else self.sifted[:, basis]
        e = self.errors.sum(axis=1) if basis is None else self.errors[:, basis]
        return e / np.maximum(s, 1)

    def qber(self, basis: int | None = 0) -> float:
        """QBER of the sifted bits, all classes, key basis X by default."""
        s = self.sifted.sum() if basis is None else self.sifted[:, basis].sum()
        e = self.errors.sum() if basis is None else self.errors[:, basis].sum()
        return float(e / s) if s else 0.0

    def eve_information(self) -> float:
        """Share of sifted bits Eve guesses right (1/2 = no information, 1 = all)."""
        return self.eve_correct / self.sifted_bits if self.sifted_bits else 0.5
