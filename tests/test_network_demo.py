"""``qkdnet demo``: boots a scenario, runs a hospital→lab exchange across a relay, stops cleanly."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from test_network_runtime import SCENARIO


def test_demo_runs_relayed_exchange_and_stops_cleanly(tmp_path: Path) -> None:
    scenario = tmp_path / "square.yaml"
    scenario.write_text(SCENARIO)
    state = tmp_path / "state"
    cmd = [
        sys.executable, "-m", "qkdnet.cli", "demo", str(scenario), "--duration", "1",
        "--speed", "20", "--state-dir", str(state), "--json",
    ]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    data = json.loads(out.stdout)
    assert data["clean_stop"] is True
    ex = data["exchange"]
    assert (ex["master"], ex["slave"]) == ("hosp-app", "lab-app")
    assert len(ex["planned_route"]) == 3 and ex["identical"] is True
    assert set(data["kmes"]) == {"hosp", "t1", "t2", "lab"}
    assert all(url.startswith("https://127.0.0.1:") for url in data["kmes"].values())
    assert data["links"]["t2--lab"]["down"] and "QBER" in data["links"]["t2--lab"]["reason"]
    assert data["engine"] == "link engine: simulate + post-process"
    assert data["links"]["hosp--t1"]["engine"] == data["engine"]
    assert data["links"]["hosp--t1"]["key_bits"] > 0
    assert all((state / f"kme-{s}.db").exists() for s in ("hosp", "t1", "t2", "lab"))


def test_demo_rejects_bad_flags() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "qkdnet.cli", "demo", "--duration", "-1"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert r.returncode == 2 and "--duration" in r.stderr and "Traceback" not in r.stderr


def test_demo_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    import signal
    import time

    scenario = tmp_path / "square.yaml"
    scenario.write_text(SCENARIO)
    proc = subprocess.Popen(
        [sys.executable, "-m", "qkdnet.cli", "demo", str(scenario), "--speed", "20",
         "--state-dir", str(tmp_path / "state")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    lines = []
    deadline = time.monotonic() + 120
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        lines.append(line)
        if "identical bytes at both ends" in line or not line:
            break
    proc.send_signal(signal.SIGTERM)
    rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, "".join(lines) + rest
    assert "stopped cleanly" in rest
    assert any("https://127.0.0.1:" in x for x in lines)
    assert any("curl" in x and "--cert" in x for x in lines)
