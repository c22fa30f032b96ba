"""``qkdnet sweep``: JSON output, table and plot files, resume, one-line usage errors."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from qkdnet.cli import main

STUDY = """\
target: observables
parameters:
  distance_km: {start: 0, stop: 60, num: 4}
  preset: [decoy-1550-spad, decoy-1550-snspd]
plot: {x: distance_km, y: qber, group: [preset]}
"""


def _study(tmp_path: Path, text: str = STUDY) -> Path:
    path = tmp_path / "study.yaml"
    path.write_text(text)
    return path


def test_sweep_json_table_and_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = _study(tmp_path)
    out, plot = tmp_path / "r.parquet", tmp_path / "r.png"
    assert main(["sweep", str(spec), "--out", str(out), "--plot", str(plot), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert (payload["tasks"], payload["ran"], payload["skipped"]) == (8, 8, 0)
    assert payload["plot"] == str(plot) and plot.stat().st_size > 1000
    table = pd.read_parquet(out)
    assert len(table) == 8 and {"gain", "qber", "preset", "task"} <= set(table.columns)
    # QBER grows with distance as dark counts weigh more (Ma et al. 2005, eq. 7).
    for _, part in table.groupby("preset"):
        assert part.sort_values("distance_km")["qber"].is_monotonic_increasing

    assert main(["sweep", str(spec), "--out", str(out), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert (again["ran"], again["skipped"]) == (0, 8)


def test_sweep_without_out_returns_rows(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["sweep", str(_study(tmp_path)), "--json", "--seed", "3"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["seed"] == 3 and len(payload["rows"]) == 8
    assert all(row["error"] is None for row in payload["rows"])


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--out", "r.xlsx"], "invalid value for --out: must end in .parquet or .csv"),
        (["--plot", "r.gif"], "invalid value for --plot: must end in .png"),
        (["--scheduler", "banana"], "invalid value for --scheduler"),
        (["--workers", "0"], "invalid value for --workers"),
    ],
)
def test_sweep_bad_flags_give_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], needle: str
) -> None:
    assert main(["sweep", str(_study(tmp_path)), *args]) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1


def test_sweep_bad_study_file_names_file_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = _study(tmp_path, "target: observables\nparameters:\n  distance_km: {start: 0}\n")
    assert main(["sweep", str(spec)]) == 2
    err = capsys.readouterr().err
    assert "study.yaml" in err and "parameters" in err and err.count("\n") == 1
    assert main(["sweep", str(tmp_path / "missing.yaml")]) == 2
    assert "cannot read the study file" in capsys.readouterr().err


def test_keyrate_study_plot_has_protocols_presets_and_plob(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rate vs distance for several protocols and presets, with the PLOB bound (issue 7)."""
    import qkdnet.plots as plots

    study = """\
target: keyrate
parameters:
  protocol: decoy-bb84
  preset: [decoy-1550-spad, decoy-1550-snspd, gys-2004]
  distance_km: {start: 0, stop: 100, num: 6}
plot: {x: distance_km, y: key_rate_per_pulse, group: [preset]}
"""
    figures = []
    real = plots.sweep_figure
    monkeypatch.setattr(
        plots, "sweep_figure", lambda *a, **k: figures.append(real(*a, **k)) or figures[-1]
    )
    plot = tmp_path / "rate.png"
    assert main(["sweep", str(_study(tmp_path, study)), "--plot", str(plot), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["failed"] == 0
    ax = figures[0].axes[0]
    labels = {line.get_label() for line in ax.get_lines()}
    assert {"preset=decoy-1550-spad", "preset=decoy-1550-snspd", "preset=gys-2004"} <= labels
    plob = [line for line in ax.get_lines() if line.get_label().startswith("PLOB bound")]
    assert len(plob) == 2  # 0.20 dB/km presets share one PLOB curve, GYS (0.21 dB/km) has its own
    assert ax.get_yscale() == "log" and ax.get_xlabel() == "distance (km)"
    assert plot.read_bytes()[:4] == b"\x89PNG"


def test_link_study_runs_simulation_and_post_processing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The ``link`` target sweeps the full chain (simulate + post-process) per point."""
    study = """\
target: link
parameters:
  protocol: decoy-bb84
  distance_km: [10, 30]
  pulses: 50000000
"""
    out = tmp_path / "link.csv"
    assert main(["sweep", str(_study(tmp_path, study)), "--out", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["failed"] == 0
    import pandas as pd

    table = pd.read_csv(out).sort_values("distance_km")
    assert list(table["distance_km"]) == [10, 30]
    assert (table["final_key_bits"] > 0).all()
    assert table["secret_key_rate_bps"].iloc[0] > table["secret_key_rate_bps"].iloc[1]
