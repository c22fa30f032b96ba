"""Both parties as greenlets of one thread (``local_pair``): the same blocks as two threads, a
tampered message, and no hang when a party fails or both wait (the other abort paths run on
both kinds of pair in test_postprocess_pipeline.py)."""

from collections import deque
from types import SimpleNamespace

import numpy as np
import pytest

from postprocess_synthetic import SINGLE, bsc_records
from qkdnet.postprocess.channel import (
    ChannelClosed,
    SwitchTransport,
    channel_pair,
    local_pair,
    memory_pair,
)
from qkdnet.postprocess.pipeline import Alice, Bob, PostprocessConfig, run_pair


def _parties(config: PostprocessConfig, transports):
    ca, cb = channel_pair(transports, np.random.default_rng(0).bytes(1 << 15))
    return Alice(ca, config), Bob(cb, config)


def _comparable(result) -> dict:
    out = result.summary()
    out["key"] = None if result.key is None else result.key.tobytes()
    return out


def test_local_pair_gives_the_same_blocks_as_two_threads() -> None:
    """Same seeds, same records: identical keys, reports and ledgers over consecutive blocks
    (the channels' authentication pools carry over from block to block)."""
    config = PostprocessConfig(SINGLE, frame_bits=2048)
    local = _parties(config, local_pair())
    threads = _parties(config, memory_pair(timeout_s=30))
    rng = np.random.default_rng(8)
    produced = 0
    for i in range(30):
        qber = float(rng.uniform(0.01, 0.09))
        ar, br = bsc_records(int(rng.integers(20000, 40000)), qber, rng, p_x=0.5)
        got = [
            run_pair(*parties, ar, br, np.random.default_rng(i), np.random.default_rng(99 + i))
            for parties in (local, threads)
        ]
        for a, b in zip(got[0], got[1], strict=True):
            assert _comparable(a) == _comparable(b)
        produced += not got[0][1].aborted
    assert 5 <= produced < 30  # both outcomes exercised


class _TamperingEnd(SwitchTransport):
    """Flips one payload bit of the k-th frame this end sends."""

    k = 1
    sent = 0

    def send(self, frame: bytes | None) -> None:
        if frame is not None and self.sent == self.k:
            frame = bytearray(frame)
            frame[-20] ^= 0x10  # a payload byte (the last 16 bytes are the tag)
            frame = bytes(frame)
        self.sent += 1
        super().send(frame)


def test_a_tampered_message_aborts_on_a_local_pair() -> None:
    to_b: deque = deque()
    to_a: deque = deque()
    a, b = _TamperingEnd(to_b, to_a), SwitchTransport(to_a, to_b)
    a.peer, b.peer = b, a
    ar, br = bsc_records(30000, 0.02, np.random.default_rng(1))
    alice, bob = _parties(PostprocessConfig(SINGLE), (a, b))
    ra, rb = run_pair(alice, bob, ar, br, np.random.default_rng(1), np.random.default_rng(2))
    assert rb.aborted and "authentication failure" in rb.abort_reason
    assert ra.aborted and ra.key is None


def _stub(transport, process):
    return SimpleNamespace(channel=SimpleNamespace(transport=transport), process=process)


def test_a_failing_party_closes_the_channel_and_its_error_is_raised() -> None:
    ta, tb = local_pair()
    seen: list[str] = []

    def alice_process(records, rng):
        ta.send(b"first")
        raise RuntimeError("alice broke")

    def bob_process(records, rng):
        seen.append(tb.recv().decode())
        try:
            tb.recv()
        except ChannelClosed as exc:
            seen.append(str(exc))
        return "bob done"

    with pytest.raises(RuntimeError, match="alice broke"):
        run_pair(_stub(ta, alice_process), _stub(tb, bob_process), None, None, None, None)
    assert seen[0] == "first" and "peer closed" in seen[1]


def test_both_parties_waiting_is_a_deadlock_error_not_a_hang() -> None:
    ta, tb = local_pair()
    outcome: dict[str, str] = {}

    def waiter(name, transport):
        def process(records, rng):
            try:
                transport.recv()
            except ChannelClosed as exc:
                outcome[name] = str(exc)
            return name

        return process

    got = run_pair(_stub(ta, waiter("a", ta)), _stub(tb, waiter("b", tb)), None, None, None, None)
    assert got == ("a", "b")
    assert "deadlock" in " ".join(outcome.values())
    assert set(outcome) == {"a", "b"}


def test_recv_outside_run_pair_raises_at_once() -> None:
    ta, tb = local_pair()
    ta.send(b"x")
    assert tb.recv() == b"x"
    with pytest.raises(ChannelClosed):
        tb.recv()
