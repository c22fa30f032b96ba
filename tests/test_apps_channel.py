"""Secure channel over real TCP sockets with an in-memory 014 KME pair (real crypto throughout).

The round trips through real KMEs over mutual TLS are in ``test_apps_kme.py``; here the KME is a
fake with 014 semantics so that tampering, replay, shortage and logging can be exercised quickly.
"""

from __future__ import annotations

import base64
import logging
import os
import socket
import threading
import time

import pytest

from apps_support import FakeLink, FrameRelay
from qkdnet.apps import (
    ChannelError,
    IntegrityError,
    KeyReuseError,
    Mode,
    PoolDepletedError,
    RekeyPolicy,
    ReplayError,
    SecureReceiver,
    SecureSender,
    ShortagePolicy,
)
from qkdnet.apps.frames import Frame, FrameType
from qkdnet.apps.keyschedule import KeyFetcher

ALICE, BOB = "hospital-sae", "lab-sae"


class Session:
    """A responder thread on 127.0.0.1 collecting messages (or the error that stopped it)."""

    def __init__(self, link: FakeLink, modes: tuple[Mode, ...] = tuple(Mode)) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = self.listener.getsockname()
        self.received: list[bytes] = []
        self.error: Exception | None = None
        self.receiver: SecureReceiver | None = None
        self.thread = threading.Thread(target=self._run, args=(link, modes), daemon=True)
        self.thread.start()

    def _run(self, link: FakeLink, modes: tuple[Mode, ...]) -> None:
        conn, _ = self.listener.accept()
        with conn:
            self.receiver = SecureReceiver(conn, link.sae(BOB), BOB, modes=modes)
            try:
                self.receiver.accept()
                for message in self.receiver:
                    self.received.append(message)
            except Exception as exc:
                self.error = exc

    def join(self) -> None:
        self.thread.join(timeout=30)
        self.listener.close()


def send_all(
    link: FakeLink,
    address: tuple[str, int],
    messages: list[bytes],
    mode: Mode,
    rekey: RekeyPolicy | None = None,
    shortage: ShortagePolicy | None = None,
    pause_s: float = 0.0,
):
    with socket.create_connection(address) as sock:
        sender = SecureSender(
            sock, link.sae(ALICE), ALICE, BOB, mode, rekey=rekey, shortage=shortage
        )
        sender.open()
        try:
            for m in messages:
                sender.send(m)
                if pause_s:
                    time.sleep(pause_s)
            return sender.close()
        except Exception:
            sender.abort()
            raise


@pytest.mark.parametrize("mode", list(Mode))
def test_round_trip_every_mode(mode: Mode) -> None:
    link = FakeLink()
    session = Session(link)
    messages = [os.urandom(n) for n in (0, 1, 15, 16, 100, 3000)] * 3
    stats = send_all(link, session.address, messages, mode, RekeyPolicy(max_messages=4))
    session.join()
    assert session.error is None
    assert session.received == messages
    assert session.receiver is not None
    # both sides used the same keys, each once
    assert session.receiver.stats.key_ids == stats.key_ids
    assert len(set(stats.key_ids)) == len(stats.key_ids)
    if mode in (Mode.AES_GCM, Mode.HYBRID):
        assert stats.rekeys == len(messages) // 4 - (len(messages) % 4 == 0)
        assert stats.keys_used == stats.rekeys + 1
    elif mode is Mode.OTP:
        # one-time pad: as many key bits as message bits, plus 256 per tag (END included)
        assert stats.key_bits_used == 8 * sum(map(len, messages)) + 256 * (len(messages) + 1)
    else:
        assert stats.keys_used == len(messages) + 1  # one 256-bit key per tag (END included)


def test_otp_consumes_exactly_the_padded_length() -> None:
    link = FakeLink()
    session = Session(link)
    stats = send_all(link, session.address, [b"x" * 100, b"y" * 2000], Mode.OTP)
    session.join()
    assert session.error is None
    # message bits + 256 bits of Wegman–Carter key per message; END: one 256-bit key
    assert stats.key_bits_used == 8 * (100 + 32) + 8 * (2000 + 32) + 256
    # 2032 bytes exceed the fake KME's 8192-bit maximum: split into two keys
    assert stats.keys_used == 1 + 2 + 1


@pytest.mark.parametrize("mode", list(Mode))
@pytest.mark.parametrize("where", ["body", "tag", "header"])
def test_flipped_bit_is_rejected(mode: Mode, where: str) -> None:
    link = FakeLink()
    target = Session(link)

    def flip(index: int, raw: bytes) -> list[bytes]:
        frame = Frame.decode(raw[4:])
        if frame.type is not FrameType.DATA:
            return [raw]
        data = bytearray(raw)
        if where == "body":
            pos = 4 + len(frame.header)
        elif where == "tag":
            pos = len(data) - 1
        else:
            pos = 4 + 13  # inside the sequence number / session ID part of the header
        data[pos] ^= 0x01
        return [bytes(data)]

    relay = FrameRelay(target.address, flip)
    with pytest.raises(ChannelError):
        send_all(link, relay.address, [b"transfer 1000 EUR to IT60X0542811101000000123456"], mode)
    target.join()
    assert isinstance(target.error, (IntegrityError, ReplayError))
    assert target.received == []


@pytest.mark.parametrize("mode", list(Mode))
def test_replayed_frame_is_rejected(mode: Mode) -> None:
    link = FakeLink()
    target = Session(link)
    seen = {"data": 0}

    def replay(index: int, raw: bytes) -> list[bytes]:
        if Frame.decode(raw[4:]).type is FrameType.DATA:
            seen["data"] += 1
            if seen["data"] == 2:
                return [raw, raw]
        return [raw]

    relay = FrameRelay(target.address, replay)
    with pytest.raises(ChannelError, match="rejected"):
        send_all(link, relay.address, [b"one", b"two", b"three"], mode)
    target.join()
    assert isinstance(target.error, ReplayError)
    assert target.received == [b"one", b"two"]  # the copy was refused, nothing after it accepted


def test_reordered_frames_are_rejected() -> None:
    link = FakeLink()
    target = Session(link)
    held: list[bytes] = []

    def swap(index: int, raw: bytes) -> list[bytes]:
        if Frame.decode(raw[4:]).type is FrameType.DATA and not held and index > 1:
            held.append(raw)
            return []
        if held and len(held) == 1:
            held.append(raw)
            return [raw, held[0]]
        return [raw]

    relay = FrameRelay(target.address, swap)
    with pytest.raises(ChannelError):
        send_all(link, relay.address, [b"a", b"b", b"c"], Mode.AES_GCM)
    target.join()
    assert isinstance(target.error, ReplayError)


def test_key_ids_never_reused_over_many_rekeys() -> None:
    link = FakeLink(keys=400)
    session = Session(link)
    stats = send_all(link, session.address, [b"m"] * 300, Mode.AES_GCM, RekeyPolicy(max_messages=2))
    session.join()
    assert session.error is None
    assert stats.keys_used == 150 and len(set(stats.key_ids)) == 150
    # the KME hands each key to the slave once; a second request for it fails
    fetcher = KeyFetcher(link.sae(BOB), ALICE)
    with pytest.raises(Exception, match="not found"):
        fetcher.get([stats.key_ids[0]])


def test_receiver_refuses_a_key_id_twice() -> None:
    link = FakeLink()
    (key,) = link.sae(ALICE).enc_keys(BOB, 1, 256)
    fetcher = KeyFetcher(link.sae(BOB), ALICE)
    assert fetcher.get([key.key_id])[0].key == key.key
    with pytest.raises(KeyReuseError):
        fetcher.get([key.key_id])


def test_rekey_by_time() -> None:
    link = FakeLink()
    session = Session(link)
    stats = send_all(
        link,
        session.address,
        [b"tick"] * 6,
        Mode.AES_GCM,
        RekeyPolicy(max_messages=10_000, max_seconds=0.05),
        pause_s=0.03,
    )
    session.join()
    assert session.error is None
    assert 2 <= stats.rekeys <= 5


def test_rekey_does_not_wait_for_the_kme_when_the_pool_is_healthy() -> None:
    """With a 3 ms KME, 20 rekeys at >= 20 ms intervals: only the first key is waited for."""
    link = FakeLink(latency_s=0.003)
    session = Session(link)
    stats = send_all(
        link,
        session.address,
        [b"p" * 64] * 200,
        Mode.AES_GCM,
        RekeyPolicy(max_messages=10),
        pause_s=0.002,
    )
    session.join()
    assert session.error is None and session.receiver is not None
    assert stats.rekeys == 19
    assert stats.waits_for_kme == 1  # the session's first key only
    assert session.receiver.stats.waits_for_kme == 1  # every later key was announced and prefetched


def test_depleted_pool_refuse_policy_fails_fast_without_reusing() -> None:
    link = FakeLink(keys=3)
    session = Session(link)
    start = time.monotonic()
    with pytest.raises(PoolDepletedError, match="refuse"):
        send_all(
            link,
            session.address,
            [b"m"] * 10,
            Mode.AES_GCM,
            RekeyPolicy(max_messages=2),
            ShortagePolicy("refuse"),
        )
    assert time.monotonic() - start < 5
    session.join()
    assert session.received == [b"m"] * 6  # three keys, two messages each, then refused


def test_depleted_pool_wait_policy_waits_then_gives_up() -> None:
    link = FakeLink(keys=1)
    session = Session(link)
    start = time.monotonic()
    with pytest.raises(PoolDepletedError, match=r"no key within 0.3 s"):
        send_all(
            link,
            session.address,
            [b"m"] * 3,
            Mode.AES_GCM,
            RekeyPolicy(max_messages=1),
            ShortagePolicy("wait", max_wait_s=0.3),
        )
    assert time.monotonic() - start >= 0.3
    session.join()
    assert session.received == [b"m"]


def test_depleted_pool_wait_policy_resumes_when_keys_arrive() -> None:
    link = FakeLink(keys=1)
    session = Session(link)

    def refill_once_depleted() -> None:
        # keys arrive only after the sender has found the pool empty (no race with a fixed timer)
        if link.depleted.wait(timeout=10):
            time.sleep(0.2)
            link.add_keys(10)

    threading.Thread(target=refill_once_depleted, daemon=True).start()
    stats = send_all(
        link,
        session.address,
        [b"m"] * 3,
        Mode.AES_GCM,
        RekeyPolicy(max_messages=1),
        ShortagePolicy("wait", max_wait_s=5),
    )
    session.join()
    assert session.error is None and session.received == [b"m"] * 3
    assert link.depleted.is_set()
    assert stats.keys_used == 3 and stats.waits_for_kme >= 1


def test_truncated_stream_is_rejected() -> None:
    link = FakeLink()
    target = Session(link)

    def drop_last_data(index: int, raw: bytes) -> list[bytes]:
        frame = Frame.decode(raw[4:])
        return [] if frame.type is FrameType.DATA and frame.seq > 3 else [raw]

    relay = FrameRelay(target.address, drop_last_data)
    with pytest.raises(ChannelError):
        send_all(link, relay.address, [b"a", b"b", b"c", b"d"], Mode.MAC)
    target.join()
    assert isinstance(target.error, (ReplayError, IntegrityError))


@pytest.mark.parametrize("mode", list(Mode))
def test_keys_never_logged(mode: Mode, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    link = FakeLink()
    session = Session(link)
    stats = send_all(link, session.address, [b"hello"] * 5, mode, RekeyPolicy(max_messages=2))
    session.join()
    text = caplog.text + repr(stats) + repr(stats.as_dict())
    assert stats.key_ids[0] in caplog.text  # logging is on and names key IDs
    for key in link.all_keys:
        for form in (key.hex(), key.hex().upper(), base64.b64encode(key).decode(), str(key)):
            assert form not in text
        assert key[:12].hex() not in text


def test_wrong_responder_sae_is_refused() -> None:
    link = FakeLink()
    session = Session(link)
    with socket.create_connection(session.address) as sock:
        sender = SecureSender(sock, link.sae(ALICE), ALICE, "someone-else", Mode.AES_GCM)
        with pytest.raises(ChannelError, match="refused"):
            sender.open()
    session.join()
    assert isinstance(session.error, ChannelError)


def test_prefetch_depth_grows_when_rekeys_outpace_the_kme() -> None:
    """Rekey on every message with a 3 ms KME: the supply fetches further ahead in batches."""
    link = FakeLink(keys=2000, latency_s=0.003)
    session = Session(link)
    stats = send_all(link, session.address, [b"x"] * 300, Mode.AES_GCM, RekeyPolicy(max_messages=1))
    session.join()
    assert session.error is None and session.receiver is not None
    assert stats.keys_used == 300  # one epoch per message; END travels under the last key
    assert stats.waits_for_kme < 75  # a fixed one-ahead prefetch waits on almost every rekey
    assert link.enc_calls < 100  # batched requests, not one per key
    assert stats.keys_discarded <= 300 // 4 + 1  # prefetched, unused: discarded, never reused
    assert session.receiver.stats.waits_for_kme < 75  # announced IDs fetched in batches


def test_mac_frames_announce_later_keys_so_the_responder_prefetches() -> None:
    link = FakeLink(latency_s=0.003)
    session = Session(link)
    stats = send_all(link, session.address, [b"m" * 100] * 100, Mode.MAC, pause_s=0.006)
    session.join()
    assert session.error is None and session.receiver is not None
    assert stats.keys_used == 101
    assert session.receiver.stats.waits_for_kme < 10  # one blocking dec_keys per frame without
