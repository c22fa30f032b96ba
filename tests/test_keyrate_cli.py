"""``qkdnet keyrate``: the DESIGN.md CLI contract, one-line errors and the plot."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from qkdnet.cli import main
from qkdnet.keyrate.plot import key_rate_figure, rate_curve

CONTRACT_KEYS = {
    "protocol",
    "distance_km",
    "transmittance",
    "qber",
    "key_rate_per_pulse",
    "key_rate_bps",
    "plob_per_pulse",
}


def test_json_has_the_contract_keys(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["keyrate", "--protocol", "decoy-bb84", "--distance", "25", "--json"])
    out = capsys.readouterr().out
    assert code == 0
    assert out.count("\n") == 1
    data = json.loads(out)
    assert data.keys() >= CONTRACT_KEYS
    assert data["protocol"] == "decoy-bb84"
    assert data["distance_km"] == 25.0
    assert 0 < data["key_rate_per_pulse"] < data["plob_per_pulse"]


def test_repeated_protocol_gives_one_result_each(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["keyrate", "--distance", "30", "--json"]
    for p in ("decoy-bb84", "sps-bb84", "bbm92"):
        args += ["--protocol", p]
    assert main(args) == 0
    data = json.loads(capsys.readouterr().out)
    assert [r["protocol"] for r in data["results"]] == ["decoy-bb84", "sps-bb84", "bbm92"]
    assert all(r.keys() >= CONTRACT_KEYS for r in data["results"])


def test_block_size_gives_finite_size_rate(capsys: pytest.CaptureFixture[str]) -> None:
    base = ["keyrate", "--protocol", "decoy-bb84", "--distance", "25", "--json"]
    assert main([*base, "--block-size", "1e9"]) == 0
    finite = json.loads(capsys.readouterr().out)
    assert finite["params"]["model"] == "lim2014"
    assert finite["key_rate_per_pulse"] > 0


def test_table_when_no_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keyrate", "--protocol", "sps-bb84", "--distance", "10"]) == 0
    out = capsys.readouterr().out
    assert "key rate / pulse" in out and "qd-sps-1550" in out and "PLOB" in out


@pytest.mark.parametrize(
    ("extra", "flag", "hint"),
    [
        (["--protocol", "decoy-bb84", "--distance", "-5"], "--distance", ">= 0"),
        (["--protocol", "b92", "--distance", "5"], "--protocol", "decoy-bb84, sps-bb84, bbm92"),
        (
            ["--protocol", "decoy-bb84", "--distance", "5", "--hardware", "x"],
            "--hardware",
            "gys-2004",
        ),
        (
            ["--protocol", "decoy-bb84", "--distance", "5", "--block-size", "0"],
            "--block-size",
            "> 0",
        ),
        (
            ["--protocol", "decoy-bb84", "--distance", "5", "--efficiency", "1.5"],
            "--efficiency",
            "between 0 and 1",
        ),
        (
            ["--protocol", "decoy-bb84", "--distance", "5", "--dark-count-prob", "2"],
            "--dark-count-prob",
            "between 0 and 1",
        ),
        (
            ["--protocol", "bbm92", "--distance", "5", "--hardware", "gys-2004"],
            "--hardware",
            "entangled-pair",
        ),
        (
            ["--protocol", "sps-bb84", "--distance", "5", "--block-size", "1e6"],
            "--block-size",
            "decoy-bb84 only",
        ),
    ],
)
def test_bad_input_is_one_line_exit_2(
    extra: list[str], flag: str, hint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["keyrate", *extra, "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1
    assert flag in lines[0] and hint in lines[0]
    assert "Traceback" not in captured.err


def test_plot_file_is_written(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "rates.png"
    args = ["keyrate", "--protocol", "decoy-bb84", "--protocol", "sps-bb84", "--distance", "25"]
    code = main([*args, "--plot", str(path), "--plot-max-km", "100", "--json"])
    assert code == 0
    assert json.loads(capsys.readouterr().out)["plot"] == str(path)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_finite_size_plot_draws_the_asymptotic_curve_too(tmp_path: Path) -> None:
    path = tmp_path / "finite.png"
    args = ["keyrate", "--protocol", "decoy-bb84", "--distance", "10", "--block-size", "1e9"]
    assert main([*args, "--plot", str(path), "--plot-max-km", "40"]) == 0
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_plot_figure_has_axes_labels_series_and_plob() -> None:
    distances = np.linspace(0, 150, 16)
    curves, attenuations = {}, []
    for protocol in ("decoy-bb84", "bbm92"):
        rates, alpha = rate_curve(protocol, distances)
        curves[protocol] = rates
        attenuations.append(alpha)
    fig = key_rate_figure(distances, curves, attenuations)
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    assert "Distance (km)" in ax.get_xlabel()
    assert "key rate" in ax.get_ylabel().lower()
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert {"decoy-bb84", "bbm92", "PLOB bound (0.2 dB/km)"} <= lines.keys()
    # each series lies below PLOB wherever it is plotted
    plob = lines["PLOB bound (0.2 dB/km)"].get_ydata()
    for name in ("decoy-bb84", "bbm92"):
        y = np.asarray(lines[name].get_ydata(), dtype=float)
        finite = np.isfinite(y) & np.isfinite(plob)
        assert finite.sum() >= 10
        assert np.all(y[finite] < plob[finite])
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "decoy-bb84" in legend and "PLOB bound (0.2 dB/km)" in legend
