"""QBER over time from the simulator: the streamed windows, the figure, ``simulate --plot``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from qkdnet.cli import main
from qkdnet.plots.qber import QberWindows, qber_time_figure
from qkdnet.simulate import resolve_preset, run
from qkdnet.simulate.timeseries import qber_time_series


def test_streamed_windows_match_the_simulators_own_time_series() -> None:
    rate = resolve_preset("decoy-bb84", None).source.rate_hz
    pulses, window = 2_000_000, 200_000
    windows = QberWindows(pulses, window, rate)
    for block in windows.passing(
        run("decoy-bb84", 25.0, pulses, np.random.default_rng(5), drift_rad_per_sqrt_s=3.0)
    ):
        assert block is not None
    reference = qber_time_series(
        "decoy-bb84", 25.0, pulses / rate, np.random.default_rng(5),
        window_s=window / rate, drift_rad_per_sqrt_s=3.0,
    )  # fmt: skip
    np.testing.assert_array_equal(windows.sifted, reference.sifted)
    np.testing.assert_array_equal(windows.errors, reference.errors)
    series = windows.series("drifting")
    np.testing.assert_allclose(series.qber, reference.qber[reference.sifted > 0])
    fig = qber_time_figure([series])
    line = fig.axes[0].get_lines()[0]
    assert line.get_label() == "drifting" and len(line.get_xdata()) == 10
    np.testing.assert_allclose(line.get_ydata(), 100 * series.qber)


def test_intercept_resend_shows_on_the_qber_plot(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plot = tmp_path / "qber.png"
    args = ["simulate", "--protocol", "decoy-bb84", "--distance", "10", "--pulses", "1e6"]
    assert main([*args, "--attack", "intercept-resend", "--plot", str(plot), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["plot"] == str(plot) and plot.read_bytes()[:4] == b"\x89PNG"
    # intercept-resend on every pulse gives 25 % QBER (Bennett et al. 1992): far above 11 %.
    assert payload["qber"] == pytest.approx(0.25, abs=0.03)
    assert main([*args, "--plot", str(tmp_path / "q.gif")]) == 2
    assert "invalid value for --plot" in capsys.readouterr().err
