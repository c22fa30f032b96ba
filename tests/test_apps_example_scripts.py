"""The ready examples in examples/ run end to end as a newcomer runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("script", ["health_record.py", "payment_batch.py", "admin_document.py"])
def test_example_script_transfers_and_verifies_every_part(script: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / script), "--json"],
        capture_output=True, text=True, timeout=180, env=env, check=True,
    )  # fmt: skip
    summary = json.loads(out.stdout)
    assert summary["parts"] and all(part["verified"] for part in summary["parts"])
    assert all(part["keys_used"] >= 1 for part in summary["parts"])
