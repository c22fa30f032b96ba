"""Eavesdropping attacks on a prepare-and-measure link, as branches of the per-pulse physics.

Each attack says, for a pulse of a given intensity class, what reaches Bob and what Eve learns.
The simulator turns the branches into exact click probabilities (``simulate.labels``), so an
attack costs nothing per pulse either. Fingerprints the literature predicts, checked in tests:

* ``intercept-resend`` (fraction ``f`` of the pulses): Eve measures in a random basis and resends
  one photon in the state she found. In BB84 she guesses the basis wrong half the time, and then
  Bob's sifted bit is wrong half the time: QBER = f/4 + the honest errors (Bennett et al.,
  J. Cryptology 5, 3 (1992); Gisin et al., Rev. Mod. Phys. 74, 145 (2002), §VI.A).
* ``pns`` photon-number splitting (Brassard, Lütkenhaus, Mor, Sanders, Phys. Rev. Lett. 85, 1330
  (2000)): Eve counts photons without disturbing them, keeps one photon of every multi-photon
  pulse, sends the rest to Bob over a lossless line and blocks single photons so that the signal
  gain looks honest. The QBER is unchanged, but the decoy intensity's gain no longer follows
  Poisson statistics: the decoy-state single-photon yield bound collapses (Hwang, Phys. Rev.
  Lett. 91, 057901 (2003); Lo, Ma, Chen, Phys. Rev. Lett. 94, 230504 (2005)).
* ``blinding`` (Lydersen et al., Nat. Photon. 4, 686 (2010)): bright light turns Bob's avalanche
  photodiodes into linear detectors; Eve measures every pulse and sends a bright trigger that
  makes Bob's detector for her result click only when Bob picked her basis. Eve knows every
  sifted bit, the QBER falls to zero (below the optical-error floor), dark counts vanish and the
  vacuum-decoy yield drops to zero.
"""

from __future__ import annotations

from dataclasses import dataclass

ATTACKS: tuple[str, ...] = ("intercept-resend", "pns", "blinding")


@dataclass(frozen=True)
class Attack:
    """An attack and its parameters.

    ``fraction``: share of pulses Eve intercepts (intercept-resend; 1 = full).
    ``eve_basis_prob_x``: probability that Eve measures in X (intercept-resend, blinding).
    """

    name: str
    fraction: float = 1.0
    eve_basis_prob_x: float = 0.5

    def __post_init__(self) -> None:
        if self.name not in ATTACKS:
            raise ValueError(f"unknown attack {self.name!r}; choose one of: {', '.join(ATTACKS)}")
        if not 0.0 <= self.fraction <= 1.0:
            raise ValueError(f"attack fraction must be between 0 and 1 (got {self.fraction})")
        if not 0.0 <= self.eve_basis_prob_x <= 1.0:
            raise ValueError(
                f"eve_basis_prob_x must be between 0 and 1 (got {self.eve_basis_prob_x})"
            )


def parse_attack(spec: str | Attack | None) -> Attack | None:
    """``'intercept-resend'``, ``'intercept-resend:0.3'`` (partial) , ``'pns'``, ``'blinding'``."""
    if spec is None or isinstance(spec, Attack):
        return spec
    name, _, arg = spec.partition(":")
    if arg:
        try:
            fraction = float(arg)
        except ValueError:
            raise ValueError(
                f"attack fraction in {spec!r} must be a number between 0 and 1"
            ) from None
        return Attack(name=name, fraction=fraction)
    return Attack(name=name)
