"""Figures are checked for content: axes labels, scales, the series drawn and their data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from qkdnet.plots import (
    QberSeries,
    RateCurve,
    capacity_matrix_figure,
    key_rate_figure,
    qber_time_figure,
    save_figure,
    sweep_figure,
)
from qkdnet.plots.keyrate import key_rate_curves
from qkdnet.plots.qber import Span


def _lines(fig) -> dict[str, object]:
    return {line.get_label(): line for line in fig.axes[0].get_lines()}


def test_key_rate_figure_draws_protocols_presets_and_plob(tmp_path: Path) -> None:
    distances = np.linspace(0, 150, 16)
    setups = [
        ("decoy-bb84", "decoy-1550-spad"),
        ("decoy-bb84", "decoy-1550-snspd"),
        ("sps-bb84", None),
        ("bbm92", None),
    ]
    curves, bounds = key_rate_curves(setups, distances)
    fig = key_rate_figure(curves, bounds)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "Fibre length (km)"
    assert ax.get_ylabel() == "Secret key rate (bits per pulse)"
    assert ax.get_yscale() == "log"
    lines = _lines(fig)
    assert set(lines) == {
        "decoy-bb84 (decoy-1550-spad)",
        "decoy-bb84 (decoy-1550-snspd)",
        "sps-bb84 (qd-sps-1550)",
        "bbm92 (qd-entangled-1550)",
        "PLOB bound (0.2 dB/km)",
    }
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert set(legend) == set(lines)
    plob = lines["PLOB bound (0.2 dB/km)"]
    # PLOB -log2(1 - eta) at 50 km, 0.2 dB/km: eta = 0.1 -> 0.152 bits per use (Pirandola 2017).
    x, y = plob.get_xdata(), plob.get_ydata()
    assert y[np.argmin(abs(x - 50))] == pytest.approx(-np.log2(0.9), rel=1e-9)
    for label, line in lines.items():
        if label.startswith("PLOB"):
            continue
        xs, ys = line.get_xdata(), line.get_ydata()
        assert len(xs) >= 3 and np.all(ys > 0)
        assert np.all(np.diff(ys) < 0)  # rate falls with distance
        assert np.all(ys < np.interp(xs, x, y))  # and stays under the PLOB bound
    # SNSPDs reach further than InGaAs SPADs on the same channel
    assert len(lines["decoy-bb84 (decoy-1550-snspd)"].get_xdata()) >= len(
        lines["decoy-bb84 (decoy-1550-spad)"].get_xdata()
    )
    out = save_figure(fig, tmp_path / "rate.png")
    assert out.read_bytes()[:4] == b"\x89PNG"


def test_key_rate_figure_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="at least one curve"):
        key_rate_figure([])
    with pytest.raises(ValueError, match="same length"):
        RateCurve("x", np.arange(3), np.arange(4))
    with pytest.raises(ValueError, match="unit must be one of"):
        key_rate_figure([RateCurve("x", np.arange(3), np.ones(3))], unit="hour")


def test_qber_time_figure_shows_series_threshold_and_attack_span() -> None:
    t = np.arange(0, 60, 1.0)
    drift = 0.01 + 0.0015 * t
    compensated = 0.01 + 0.0015 * (t % 10)
    attacked = np.where((t >= 40) & (t < 50), 0.25, compensated)
    fig = qber_time_figure(
        [QberSeries("drift", t, drift), QberSeries("compensated", t, attacked)],
        spans=[Span("intercept-resend", 40, 50)],
    )
    ax = fig.axes[0]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("Time (s)", "QBER (%)")
    lines = _lines(fig)
    assert {"drift", "compensated", "abort threshold 11 %"} <= set(lines)
    np.testing.assert_allclose(lines["drift"].get_ydata(), 100 * drift)
    assert list(lines["abort threshold 11 %"].get_ydata()) == [11.0, 11.0]
    legend = {t.get_text() for t in ax.get_legend().get_texts()}
    assert "intercept-resend" in legend
    assert len(ax.patches) == 1  # the attack span


def test_capacity_matrix_figure_labels_sites_and_values() -> None:
    sites = ["lab", "hub", "bank", "hospital"]
    cap = np.array(
        [[0, 5e6, 2e6, 0], [5e6, 0, 2e6, 3e5], [2e6, 2e6, 0, 3e5], [0, 3e5, 3e5, 0]], dtype=float
    )
    fig = capacity_matrix_figure(sites, cap)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == sites
    assert [t.get_text() for t in ax.get_yticklabels()] == sites
    assert fig.axes[1].get_ylabel() == "Secret-key capacity (bit/s)"
    texts = [t.get_text() for t in ax.texts]
    assert texts.count("5M") == 2 and texts.count("300k") == 4 and texts.count("–") == 2
    image = ax.get_images()[0].get_array()
    assert image[0, 1] == 5e6 and np.ma.is_masked(image[0, 0])
    with pytest.raises(ValueError, match="must be 4x4"):
        capacity_matrix_figure(sites, cap[:3, :3])


def test_sweep_figure_groups_rows_into_lines() -> None:
    table = pd.DataFrame(
        {
            "distance_km": [0, 10, 20] * 2,
            "preset": ["a"] * 3 + ["b"] * 3,
            "key_rate_bps": [1e6, 1e5, 1e4, 2e6, 2e5, 0.0],
        }
    )
    fig = sweep_figure(table, "distance_km", "key_rate_bps", group=["preset"])
    ax = fig.axes[0]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("distance (km)", "key rate (bit/s)")
    assert ax.get_yscale() == "log"
    lines = _lines(fig)
    assert set(lines) == {"preset=a", "preset=b"}
    assert list(lines["preset=b"].get_ydata()) == [2e6, 2e5]  # the zero is not drawn on log
    with pytest.raises(ValueError, match="column 'qber' is not in the results"):
        sweep_figure(table, "distance_km", "qber")


def test_capacity_matrix_of_a_real_plan() -> None:
    """The planner's capacity matrix (max-flow through trusted nodes) drawn for 4 sites."""
    from dashboard_network import SCENARIO
    from qkdnet.network import parse_scenario
    from qkdnet.network.planner import plan
    from qkdnet.network.plots import capacity_matrix

    the_plan = plan(parse_scenario(SCENARIO, "four-sites.yaml"))
    sites, matrix = capacity_matrix(the_plan)
    fig = capacity_matrix_figure(sites, matrix, title="four-sites")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == sites
    image = ax.get_images()[0].get_array()
    i, j = sites.index("lab"), sites.index("hospital")
    assert image[i, j] == pytest.approx(matrix[i, j]) and matrix[i, j] > 0  # relayed via hub
    # lab reaches the rest only through its one link: its capacity bounds every lab pair
    lab_hub = matrix[i, sites.index("hub")]
    assert all(matrix[i, k] <= lab_hub * (1 + 1e-9) for k in range(4) if k != i)
    assert len(ax.texts) == 12 and ax.get_title() == "four-sites"
