"""LDPC reconciliation wired into the two-party pipeline and ``qkdnet link``."""

import json
import subprocess
import sys

import numpy as np
import pytest

from postprocess_synthetic import SINGLE, bsc_records
from qkdnet.postprocess import pipeline
from qkdnet.postprocess.channel import channel_pair, memory_pair
from qkdnet.postprocess.ldpc import LdpcPlan
from qkdnet.postprocess.pipeline import Alice, Bob, PostprocessConfig, run_pair


def _parties(config: PostprocessConfig):
    ca, cb = channel_pair(memory_pair(timeout_s=60), np.random.default_rng(0).bytes(1 << 15))
    return Alice(ca, config), Bob(cb, config)


def test_random_blocks_give_identical_keys_and_ledger_matches_ldpc_count() -> None:
    """20 blocks at QBER 1–8 % (one or two LDPC frames each): identical keys whenever no abort, and
    the ledger's error-correction disclosure equals the LDPC module's own count, at both ends.
    Bases 50/50 so the Z test bits give the decoder a good QBER estimate."""
    rng = np.random.default_rng(7)
    alice, bob = _parties(PostprocessConfig(SINGLE, reconciliation="ldpc"))
    produced = 0
    for i in range(20):
        qber = float(rng.uniform(0.01, 0.08))
        ar, br = bsc_records(int(rng.integers(226000, 231000)), qber, rng, p_x=0.5)
        ra, rb = run_pair(
            alice, bob, ar, br, np.random.default_rng(i), np.random.default_rng(500 + i)
        )
        assert ra.aborted == rb.aborted
        if rb.reconciliation:
            assert ra.disclosed_bits == rb.disclosed_bits > 0
            assert rb.disclosed_bits == rb.reconciliation["module_disclosed_bits"]
            assert ra.disclosed_bits == ra.reconciliation["module_disclosed_bits"]
            # one frame of the n = 131072 codes at 1-3 %, two of the n = 32768 ones above
            assert (
                rb.reconciliation["frames"]
                == LdpcPlan.derive(rb.key_bits_before_ec, qber).frames
                in (1, 2)
            )
        if not ra.aborted:
            produced += 1
            assert np.array_equal(ra.key, rb.key)
            assert ra.final_key_bits == rb.final_key_bits > 0
            assert abs(rb.qber - qber) < 0.02
            assert rb.reconciliation["failed_frames"] == 0
            assert 1.0 < rb.efficiency < 2.0
        else:
            assert ra.key is None and rb.key is None and rb.abort_reason
    assert produced >= 15  # measured: 20 of 20 on this seed


def test_ldpc_residual_errors_are_caught_by_verification(monkeypatch: pytest.MonkeyPatch) -> None:
    original = pipeline.Bob._ldpc

    def broken(self, key, qber, result):
        out = original(self, key, qber, result).copy()
        out[11] ^= 1
        return out

    monkeypatch.setattr(pipeline.Bob, "_ldpc", broken)
    rng = np.random.default_rng(2)
    ar, br = bsc_records(230000, 0.02, rng, p_x=0.5)
    alice, bob = _parties(PostprocessConfig(SINGLE, reconciliation="ldpc"))
    ra, rb = run_pair(alice, bob, ar, br, np.random.default_rng(1), np.random.default_rng(2))
    assert ra.aborted and rb.aborted and "verification mismatch" in rb.abort_reason


def test_failed_frames_abort_the_block_with_a_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    """A decoder that never converges: every frame fails after all blind rounds → abort."""
    import qkdnet.postprocess.ldpc as ldpc

    original = ldpc.LdpcBob.__init__

    def no_iterations(self, key, plan, **kwargs):
        original(self, key, plan, max_iter=0)

    monkeypatch.setattr(ldpc.LdpcBob, "__init__", no_iterations)
    rng = np.random.default_rng(3)
    ar, br = bsc_records(100000, 0.03, rng, p_x=0.5)
    alice, bob = _parties(PostprocessConfig(SINGLE, reconciliation="ldpc"))
    ra, rb = run_pair(alice, bob, ar, br, np.random.default_rng(1), np.random.default_rng(2))
    assert ra.aborted and rb.aborted
    assert "LDPC decoding failed on 1 frames" in rb.abort_reason
    assert "LDPC decoding failed on 1 frames" in ra.abort_reason


def test_live_mode_punctured_bits_do_not_come_from_the_generator() -> None:
    """Live: the same seeded generator gives different syndromes (os.urandom is used)."""
    from qkdnet.postprocess.ldpc import LdpcAlice

    key = np.random.default_rng(0).integers(0, 2, 20000, dtype=np.uint8)
    plan = LdpcPlan.derive(key.size, 0.03)
    sim = [LdpcAlice(key, plan, np.random.default_rng(9)).syndromes().syndromes for _ in "ab"]
    live = [LdpcAlice(key, plan, None).syndromes().syndromes for _ in "ab"]
    assert np.array_equal(sim[0], sim[1])
    assert not np.array_equal(live[0], live[1])


def test_config_rejects_unknown_reconciliation() -> None:
    with pytest.raises(ValueError, match="cascade, ldpc"):
        PostprocessConfig(SINGLE, reconciliation="turbo")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="efficient, fast"):
        PostprocessConfig(SINGLE, reconciliation="ldpc", ldpc_codes="turbo")


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "qkdnet.cli", "link", "--protocol", "decoy-bb84", "--distance",
         "25", *args],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_cli_link_with_ldpc() -> None:
    out = _cli("--pulses", "3e7", "--reconciliation", "ldpc", "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert not report["aborted"], report["abort_reason"]
    assert report["final_key_bits"] > 0
    for key in ("sifted_bits", "qber", "disclosed_bits", "efficiency", "final_key_bits",
                "secret_key_rate_bps", "aborted", "abort_reason"):  # fmt: skip
        assert key in report
    assert 1.0 < report["efficiency"] < 1.6


def test_cli_link_bad_reconciliation() -> None:
    out = _cli("--pulses", "3e7", "--reconciliation", "turbo")
    assert out.returncode == 2
    assert "--reconciliation" in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    out = _cli("--pulses", "3e7", "--reconciliation", "ldpc", "--ldpc-codes", "turbo")
    assert out.returncode == 2
    assert "--ldpc-codes" in out.stderr and "efficient, fast" in out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_fast_code_set_through_the_pipeline() -> None:
    """Both parties on the "fast" code set (n = 32768 frames): identical keys, and the frames
    are those of the fast plan."""
    rng = np.random.default_rng(11)
    alice, bob = _parties(PostprocessConfig(SINGLE, reconciliation="ldpc", ldpc_codes="fast"))
    ar, br = bsc_records(228000, 0.02, rng, p_x=0.5)
    ra, rb = run_pair(alice, bob, ar, br, np.random.default_rng(1), np.random.default_rng(2))
    assert not ra.aborted, ra.abort_reason
    assert np.array_equal(ra.key, rb.key) and ra.final_key_bits > 0
    plan = LdpcPlan.derive(rb.key_bits_before_ec, rb.qber, codes="fast")
    assert rb.reconciliation["frames"] == plan.frames


def test_a_bad_reveal_request_makes_alice_abort(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bob asking for a position already public (a shortened one): Alice refuses to answer,
    both parties abort with the reason, and no key comes out."""
    from qkdnet.postprocess import ldpc

    monkeypatch.setattr(ldpc, "F_START_LONG", ((0.01, 0.9), (0.08, 0.9)))  # round 1 fails
    monkeypatch.setattr(ldpc, "F_START_POINTS", ((0.01, 0.9), (0.08, 0.9)))
    monkeypatch.setattr(
        ldpc, "least_reliable", lambda magnitudes, unknown, count: np.flatnonzero(~unknown)[:1]
    )
    rng = np.random.default_rng(3)
    alice, bob = _parties(PostprocessConfig(SINGLE, reconciliation="ldpc"))
    ar, br = bsc_records(228000, 0.03, rng, p_x=0.5)
    ra, rb = run_pair(alice, bob, ar, br, np.random.default_rng(1), np.random.default_rng(2))
    assert ra.aborted and rb.aborted and ra.key is None and rb.key is None
    assert "bad LDPC reveal request" in ra.abort_reason
    assert "bad LDPC reveal request" in rb.abort_reason
