"""Click probabilities of a pair of threshold detectors behind a two-outcome analyser.

Each photon reaching Bob's analyser survives with probability η (his optics × detector
efficiency) and lands on the "correct" detector with probability p, the wrong one with 1 − p,
independently. With ``w[m]`` the probability that m photons arrive (a photon-number distribution
restricted to one branch of the physics), the probability that neither/one/both detectors see a
photon follows from the generating function G(z) = Σ w[m] z^m:

    P(correct dark, wrong dark)    = G(1 − η)
    P(correct dark)                = G(1 − ηp)         (every photon misses the correct one)
    P(wrong dark)                  = G(1 − η(1 − p))

(inclusion-exclusion gives the rest). A detector with no photon fires a dark count with
probability p_d. For a Poisson source G(z) = e^{−μ(1 − z)}, which gives the gain
Q = 1 − (1 − p_d)² e^{−ημ} of Ma, Qi, Zhao, Lo, Phys. Rev. A 72, 012326 (2005), eq. 5.

Detector states: 0 = no click, 1 = click caused by a photon, 2 = dark count (3 = afterpulse is
added later, by the time-ordered detector model).
"""

from __future__ import annotations

import numpy as np

NONE, PHOTON, DARK, AFTERPULSE = 0, 1, 2, 3


def pair_outcomes(
    photon_weights: np.ndarray, eta: float, p_correct: np.ndarray, dark_prob: float
) -> np.ndarray:
    """P(correct detector state, wrong detector state), shape (n_seg, 3, 3), states 0/1/2.

    ``photon_weights[m]`` is the probability (not necessarily normalised: a branch weight) that
    m photons reach the analyser; ``p_correct`` has one entry per time segment.
    """
    w = np.asarray(photon_weights, dtype=np.float64)
    p = np.atleast_1d(np.asarray(p_correct, dtype=np.float64))
    m = np.arange(w.size, dtype=np.float64)
    total = w.sum()
    g_miss_correct = (np.power.outer(1.0 - eta * p, m) * w).sum(axis=1)
    g_miss_wrong = (np.power.outer(1.0 - eta * (1.0 - p), m) * w).sum(axis=1)
    g_none = float(np.dot(np.power(1.0 - eta, m), w))
    photons = np.empty((p.size, 2, 2))
    photons[:, 0, 0] = g_none
    photons[:, 1, 0] = g_miss_wrong - g_none
    photons[:, 0, 1] = g_miss_correct - g_none
    photons[:, 1, 1] = total - g_miss_correct - g_miss_wrong + g_none
    np.clip(photons, 0.0, None, out=photons)
    return with_dark_counts(photons, dark_prob)


def with_dark_counts(photons: np.ndarray, dark_prob: float) -> np.ndarray:
    """Extend P(photon at det A?, photon at det B?) (n, 2, 2) to the 3×3 states with dark counts."""
    quiet = np.array([1.0 - dark_prob, 0.0, dark_prob])  # no photon: none / - / dark
    fired = np.array([0.0, 1.0, 0.0])  # photon: always a photon click
    per_state = np.stack([quiet, fired])  # (photon?, state)
    return np.einsum("nij,ia,jb->nab", photons, per_state, per_state)


def forced_outcome(n_seg: int, weight: float, correct_state: int, wrong_state: int) -> np.ndarray:
    """A branch whose detector states are certain (e.g. a blinded detector forced to click)."""
    out = np.zeros((n_seg, 3, 3))
    out[:, correct_state, wrong_state] = weight
    return out
