"""Benchmark of the event-level simulator (area ``simulate``).

At 25 km with the SPAD preset (decoy BB84, 1 GHz, dead time and afterpulses on), on one core:
emitted pulses simulated per wall second and detection events generated per second by
:func:`qkdnet.simulate.run`, each against the dense per-pulse reference
(:mod:`qkdnet.simulate.reference`) timed in the same run; and the peak resident memory of a
streamed run (measured in a fresh subprocess, ``VmHWM`` of ``/proc/self/status``) against the same
subprocess that only imports the package.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np

from qkdnet.bench import Figure
from qkdnet.physics import get_preset
from qkdnet.simulate import run as simulate_run
from qkdnet.simulate.reference import dense_block

DISTANCE_KM = 25.0
PRESET = "decoy-1550-spad"

_PEAK_SCRIPT = """
import json, sys
import numpy as np
from qkdnet.simulate import run
pulses = int(sys.argv[1])
n = 0
if pulses:
    for block in run("decoy-bb84", 25.0, pulses, np.random.default_rng(1)):
        n += len(block.bob)
# VmHWM is the peak RSS of this process image (ru_maxrss would inherit the parent's peak)
hwm = [line for line in open("/proc/self/status") if line.startswith("VmHWM")][0]
print(json.dumps({"maxrss_kib": int(hwm.split()[1]), "n": n}))
"""


def _peak_rss_mib(pulses: int) -> float:
    out = subprocess.run(
        [sys.executable, "-c", _PEAK_SCRIPT, str(pulses)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)["maxrss_kib"] / 1024.0


def run(quick: bool) -> list[Figure]:
    """Measure the figures; ``quick`` uses smaller sizes for a smoke run."""
    hw = get_preset(PRESET)
    fast_pulses = 2 * 10**8 if quick else 4 * 10**9
    dense_pulses = 2 * 10**5 if quick else 2 * 10**6
    # warm up (numba compiles or loads its cache)
    for _ in simulate_run("decoy-bb84", DISTANCE_KM, 10**6, np.random.default_rng(0)):
        pass
    start = time.perf_counter()
    events = 0
    for block in simulate_run("decoy-bb84", DISTANCE_KM, fast_pulses, np.random.default_rng(1)):
        events += int(block.diagnostics["raw_clicks"])
    fast_s = time.perf_counter() - start
    start = time.perf_counter()
    dense = dense_block(hw, DISTANCE_KM, dense_pulses, np.random.default_rng(1))
    dense_s = time.perf_counter() - start
    dense_events = int(dense.truth["cause"].any(axis=1).sum())
    peak_pulses = 10**9 if quick else 10**10
    idle_mib = _peak_rss_mib(0)
    peak_mib = _peak_rss_mib(peak_pulses)
    return [
        Figure(
            "simulate",
            f"pulses/s, 25 km SPAD, one core ({fast_pulses:.0e} pulses)",
            fast_pulses / fast_s,
            "pulses/s",
            "dense per-pulse reference",
            dense_pulses / dense_s,
            goal=">= 1e9 pulses/s",
        ),
        Figure(
            "simulate",
            "detection events/s (clicks drawn, before dead time), 25 km SPAD",
            events / fast_s,
            "events/s",
            "dense per-pulse reference",
            dense_events / dense_s,
            goal=">= 1e7 events/s",
        ),
        Figure(
            "simulate",
            f"peak RSS, streamed run of {peak_pulses:.0e} pulses",
            peak_mib,
            "MiB",
            "peak RSS after importing qkdnet only",
            idle_mib,
            goal="< 2048 MiB at 1e11 pulses",
        ),
    ]
