"""qkdnet link end to end: simulate + post-process against the finite-size closed form."""

import json
import subprocess
import sys
from dataclasses import replace

import pytest

from qkdnet.keyrate.rate import key_rate
from qkdnet.link import AbortedBlock, KeyBlockPair, LinkEngine, run_link
from qkdnet.simulate import resolve_preset


def test_link_matches_finite_size_closed_form_at_1e8_pulses() -> None:
    """Decoy BB84, 25 km, one block of 10^8 pulses: the secret key rate is within 15 % of
    Lim et al. 2014's bound on the expected counts (qkdnet.keyrate.key_rate, block_size = 10^8,
    f = 1.1). Both use the same detector: the default preset without dead time and
    afterpulsing, whose closed-form treatment and simulation differ (see docs/benchmarks.md)."""
    hw = resolve_preset("decoy-bb84", None)
    plain = replace(hw, detector=replace(hw.detector, dead_time_s=0.0, afterpulse_prob=0.0))
    report = run_link("decoy-bb84", 25.0, 10**8, seed=3, preset=plain)
    closed = key_rate("decoy-bb84", 25.0, plain, block_size=1e8).key_rate_bps
    assert not report["aborted"], report["abort_reason"]
    assert report["efficiency"] < 1.1
    assert abs(report["secret_key_rate_bps"] / closed - 1.0) < 0.15


def test_link_engine_gives_identical_key_blocks() -> None:
    engine = LinkEngine("decoy-bb84", 25.0, 10**8, seed=5, detector_effects=False)
    block = engine.next_block()
    assert isinstance(block, KeyBlockPair | AbortedBlock)
    assert isinstance(block, KeyBlockPair)
    assert block.alice_key == block.bob_key and block.bits > 0
    assert engine.next_block() is None


@pytest.mark.slow
def test_cli_link_over_tcp_two_processes() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "qkdnet.cli", "link", "--protocol", "decoy-bb84", "--distance",
         "25", "--pulses", "1e8", "--transport", "tcp", "--no-detector-effects", "--json",
         "--privacy-amplification", "toeplitz"],
        capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    report = json.loads(out.stdout)  # a family both processes must agree on, or Bob aborts
    assert not report["aborted"] and report["final_key_bits"] > 0
    for key in ("sifted_bits", "qber", "disclosed_bits", "efficiency", "final_key_bits",
                "secret_key_rate_bps", "aborted", "abort_reason"):  # fmt: skip
        assert key in report


def test_cli_link_bad_input() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "qkdnet.cli", "link", "--protocol", "decoy-bb84", "--distance",
         "-5", "--pulses", "1e8"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 2 and "--distance" in out.stderr and "Traceback" not in out.stderr
    out = subprocess.run(
        [sys.executable, "-m", "qkdnet.cli", "link", "--protocol", "decoy-bb84", "--distance",
         "5", "--pulses", "1e8", "--privacy-amplification", "sha256"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 2 and "--privacy-amplification" in out.stderr
    assert "modified-toeplitz, toeplitz" in out.stderr and "Traceback" not in out.stderr
