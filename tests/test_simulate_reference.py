"""The fast event sampler against the dense per-pulse reference (``simulate.reference``).

Both are run at small sizes with different seeds; every compared quantity is a proportion, and
the test asserts agreement within 5 combined standard deviations (two-sample z test), and for the
distribution of clicks per window a chi-square test of homogeneity (p > 1e-4).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import chi2_contingency

from qkdnet.physics import get_preset
from qkdnet.simulate import run
from qkdnet.simulate.reference import dense_block
from qkdnet.simulate.statistics import LinkStatistics

Z = 5.0


def _agree(p1: float, n1: int, p2: float, n2: int) -> bool:
    pooled = (p1 * n1 + p2 * n2) / (n1 + n2)
    sigma = math.sqrt(max(pooled * (1 - pooled), 1e-12) * (1 / n1 + 1 / n2))
    return abs(p1 - p2) <= Z * sigma


def _pair(protocol: str, preset: str, km: float, pulses: int, timing: bool, intercept: float = 0.0):
    hw = get_preset(preset)
    dense = dense_block(hw, km, pulses, np.random.default_rng(101), dead_time=timing,
                        afterpulses=timing, intercept_fraction=intercept)  # fmt: skip
    attack = f"intercept-resend:{intercept}" if intercept else None
    fast_blocks = list(run(protocol, km, pulses, np.random.default_rng(202), preset=hw,
                           dead_time=timing, afterpulses=timing, attack=attack))  # fmt: skip
    n_classes = 3 if protocol == "decoy-bb84" else 1
    return (
        dense,
        fast_blocks,
        LinkStatistics.of([dense], n_classes),
        LinkStatistics.of(fast_blocks, n_classes),
    )


@pytest.mark.parametrize(
    ("protocol", "preset", "km", "timing", "intercept"),
    [
        ("decoy-bb84", "decoy-1550-spad", 5.0, False, 0.0),
        ("decoy-bb84", "decoy-1550-spad", 5.0, True, 0.0),
        ("decoy-bb84", "gys-2004", 0.0, True, 1.0),
        ("sps-bb84", "qd-sps-1550", 10.0, True, 0.0),
    ],
)
def test_fast_sampler_matches_dense_reference(protocol, preset, km, timing, intercept) -> None:
    pulses = 2 * 10**6
    dense, fast_blocks, d, f = _pair(protocol, preset, km, pulses, timing, intercept)
    for k in range(d.n_classes):
        assert _agree(d.gains()[k], int(d.pulses_per_class[k]), f.gains()[k],
                      int(f.pulses_per_class[k])), ("gain", k, d.gains(), f.gains())  # fmt: skip
        s_d, s_f = int(d.sifted[k].sum()), int(f.sifted[k].sum())
        if min(s_d, s_f) > 50:
            assert _agree(d.qber_per_class()[k], s_d, f.qber_per_class()[k], s_f), (
                "qber", k, d.qber_per_class(), f.qber_per_class())  # fmt: skip
    n_d, n_f = d.detections, f.detections
    dbl_d = int(dense.bob.double_click.sum())
    dbl_f = sum(int(b.bob.double_click.sum()) for b in fast_blocks)
    assert _agree(dbl_d / n_d, n_d, dbl_f / n_f, n_f)
    # click cause mix (photon / dark / afterpulse) agrees too
    cause_d = np.bincount(dense.truth["cause"].ravel(), minlength=4)[1:]
    cause_f = sum(np.bincount(b.truth["cause"].ravel(), minlength=4)[1:] for b in fast_blocks)
    for c in range(3):
        assert _agree(cause_d[c] / cause_d.sum(), int(cause_d.sum()), cause_f[c] / cause_f.sum(),
                      int(cause_f.sum())), ("cause", cause_d, cause_f)  # fmt: skip
    # distribution of clicks per window of 200 pulses
    window = 200
    hist_d = np.bincount(np.bincount(dense.bob.pulse_index // window, minlength=pulses // window))
    hist_f = np.bincount(
        np.bincount(
            np.concatenate([b.bob.pulse_index for b in fast_blocks]) // window,
            minlength=pulses // window,
        )
    )
    size = max(hist_d.size, hist_f.size)
    table = np.vstack([np.pad(hist_d, (0, size - hist_d.size)),
                       np.pad(hist_f, (0, size - hist_f.size))])  # fmt: skip
    keep = table.sum(axis=0) >= 20  # pool sparse tail bins
    tail = table[:, ~keep].sum(axis=1, keepdims=True)
    table = np.hstack([table[:, keep], tail]) if tail.sum() >= 20 else table[:, keep]
    assert chi2_contingency(table).pvalue > 1e-4


def test_dead_time_matches_non_paralysable_formula() -> None:
    """Registered rate per detector r/(1 + r τ) for Poisson arrivals at rate r (non-paralysable
    dead time, Müller, Nucl. Instrum. Methods 112, 47 (1973)); slotted: τ in gates."""
    hw = get_preset("decoy-1550-spad")
    blocks = list(run("decoy-bb84", 5.0, 2 * 10**7, np.random.default_rng(4), afterpulses=False))
    raw = sum(b.diagnostics["raw_clicks"] for b in blocks)
    clicks = sum(int(b.bob.click_pattern.sum()) for b in blocks)
    per_det = raw / 2 / 2e7  # clicks per gate per detector (double clicks negligible)
    dead = round(hw.detector.dead_time_s * hw.source.rate_hz)  # dead time in gates
    expected = per_det / (1 + per_det * dead) * 2 * 2e7
    assert clicks == pytest.approx(expected, rel=0.02)
    assert dead == 10  # 10 ns at 1 GHz (Yuan et al., Appl. Phys. Lett. 91, 041114 (2007))


def test_afterpulse_rate_per_registered_click() -> None:
    """Every registered click seeds an afterpulse with the detector's probability (2 %, Zhang et
    al., Light Sci. Appl. 4, e286 (2015)) after the hold-off, with a geometric delay of mean τ
    gates; it is lost if the detector registers a new click first (rate r per gate), which
    happens with probability 1 − E[(1 − r)^G] = 1 − (1/τ) / (1 − (1 − 1/τ)(1 − r))."""
    hw = get_preset("decoy-1550-spad")
    blocks = list(run("decoy-bb84", 60.0, 2 * 10**8, np.random.default_rng(8)))
    registered = sum(int(b.bob.click_pattern.sum()) for b in blocks)
    afterpulses = sum(b.diagnostics["afterpulse_clicks"] for b in blocks)
    ratio = afterpulses / registered
    tau = 50.0  # default afterpulse_delay_s = 50 ns at 1 GHz
    r = registered / 2 / 2e8
    survive = (1 / tau) / (1 - (1 - 1 / tau) * (1 - r))
    expected = hw.detector.afterpulse_prob * survive
    assert abs(ratio - expected) < 5 * math.sqrt(expected / registered), ratio
