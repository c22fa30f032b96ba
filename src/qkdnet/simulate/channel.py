"""The qubit in the fibre: polarisation drift on the Poincaré sphere, its compensation, and
time-bin interferometer visibility.

A polarisation state is a Stokes vector on the Poincaré sphere; a fibre acts as a rotation R
(SO(3)) of the sphere, and the probability that a photon prepared along Stokes vector s is found
in the outcome along m is (1 + m·R s)/2. Alice prepares X = ±S1 (H/V) and Z = ±S2 (D/A); Bob
measures along S1 or S2. Temperature and stress make R wander: we model it as an isotropic random
walk, R(t + Δt) = exp(σ √Δt · [ξ]×) R(t) with ξ ~ N(0, I₃) and σ the drift rate in rad/√s
(polarisation in installed fibre drifts as a random walk on the sphere: Karlsson et al., J.
Lightwave Technol. 18, 941 (2000); Ding et al., Opt. Express 25, 27923 (2017) for QKD).

The compensation loop spends a fraction of the pulses as reference states (H and D) that Bob
sends to a three-axis polarimeter; every period it estimates the rotation from their clicks,
orthonormalises the estimate and applies its inverse in front of Bob's analyser.

Time-bin encoding is insensitive to polarisation: the time basis has only the optical error, the
phase basis also the interferometer's visibility V, error (1 − V)/2 (transfer factor V).
"""

from __future__ import annotations

import numpy as np

ENCODINGS: tuple[str, ...] = ("polarisation", "time-bin")


def _rotation(omega: np.ndarray) -> np.ndarray:
    """exp([ω]×) by Rodrigues' formula."""
    theta = float(np.linalg.norm(omega))
    if theta == 0.0:
        return np.eye(3)
    k = omega / theta
    kx = np.array([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
    return np.eye(3) + np.sin(theta) * kx + (1.0 - np.cos(theta)) * (kx @ kx)


class PolarisationDrift:
    """Random walk of the fibre's rotation, sampled at segment boundaries (one R per segment)."""

    def __init__(self, rate_rad_per_sqrt_s: float, segment_s: float) -> None:
        self.sigma_step = rate_rad_per_sqrt_s * np.sqrt(segment_s)
        self.rotation = np.eye(3)
        self.segment = 0

    def rotations(self, first_seg: int, n_seg: int, rng: np.random.Generator) -> np.ndarray:
        """R for segments first_seg .. first_seg + n_seg − 1 (segments are visited in order)."""
        out = np.empty((n_seg, 3, 3))
        for j in range(n_seg):
            target = first_seg + j
            while self.segment < target:
                step = rng.standard_normal(3) * self.sigma_step
                self.rotation = _rotation(step) @ self.rotation
                self.segment += 1
            out[j] = self.rotation
        return out


class Compensation:
    """Reference-state feedback: estimate the effective rotation, apply its inverse.

    ``correction`` is the rotation Bob applies (identity at start). The estimate uses the clicks
    of reference states H (S1) and D (S2) on the analyser axes S1, S2, S3:
    E[(n₊ − n₋)/(n₊ + n₋)] = (1 − 2e_d) R_eff[axis, state].
    """

    def __init__(self, optical_error: float) -> None:
        self.correction = np.eye(3)
        self.contrast = 1.0 - 2.0 * optical_error
        self.updates = 0

    def update(self, state: np.ndarray, axis: np.ndarray, outcome: np.ndarray) -> None:
        """Update from single-click reference events (state 0/1, axis 0/1/2, outcome ±1)."""
        est = np.zeros((3, 2))
        for s in (0, 1):
            for i in (0, 1, 2):
                sel = (state == s) & (axis == i)
                n = int(sel.sum())
                if n == 0:
                    return  # not enough references in this period: keep the correction
                est[i, s] = outcome[sel].sum() / n / self.contrast
        c1 = est[:, 0] / np.linalg.norm(est[:, 0])
        c2 = est[:, 1] - np.dot(est[:, 1], c1) * c1
        norm2 = np.linalg.norm(c2)
        if not np.isfinite(norm2) or norm2 == 0.0:
            return
        c2 /= norm2
        r_eff = np.column_stack([c1, c2, np.cross(c1, c2)])
        self.correction = r_eff.T @ self.correction
        self.updates += 1


def time_bin_transfer(visibility: float) -> np.ndarray:
    """Transfer matrix of a time-bin link: time basis perfect, phase basis scaled by V."""
    return np.diag([1.0, visibility, visibility])[None, :, :]
