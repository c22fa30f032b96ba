"""A secure channel between two SAEs over TCP, keyed from their KMEs through ETSI GS QKD 014.

The initiator (014 master) takes keys with ``enc_keys`` and names them by ID in each frame header;
the responder (014 slave) fetches the same keys from its own KME with ``dec_keys``. Four modes:

``aes-gcm``  AES-256-GCM; one QKD key per *epoch*, a new epoch every ``max_messages`` messages or
             ``max_seconds`` seconds (:class:`RekeyPolicy`). Nonce = 0^32 || seq (seq is unique in
             the session, the key is fresh per epoch), AAD = frame header (key ID, seq, session).
``hybrid``   as ``aes-gcm`` but the epoch key is CatKDF(QKD key, ML-KEM-768 secret) (``hybrid.py``).
``otp``      one-time pad: the message is XORed with as many key bits as it has, and authenticated
             with a Wegman–Carter tag under 256 more key bits; information-theoretically secure.
``mac``      integrity only: the plaintext travels with a Wegman–Carter tag (256 key bits/message);
             each frame also names the keys already fetched for the next frames.

The next epoch's key is fetched ahead (``keyschedule.KeySupply``) and announced to the responder in
an ANNOUNCE frame so both sides hold it before the rekey: a rekey costs no KME round trip while
the pool is healthy. Every frame carries a sequence number that must be exactly the next one, so
replayed, dropped and reordered frames are rejected; an authenticated END frame carries the counts,
so truncation is detected. Logs name key IDs only, never key material.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import struct
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from enum import StrEnum

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from qkdnet.apps.authentication import KEY_BYTES, TAG_BYTES, TagMismatchError, verify_tag
from qkdnet.apps.authentication import wegman_carter_tag as wc_tag
from qkdnet.apps.frames import Frame, FrameError, FrameType, read_frame, write_frame
from qkdnet.apps.hybrid import HybridInitiator, HybridResponder
from qkdnet.apps.keyschedule import KeyFetcher, KeyReuseError, KeySupply, ShortagePolicy
from qkdnet.apps.keysource import KeySource, KeySourceError, PoolStatus, QuantumKey

log = logging.getLogger("qkdnet.apps")

AES_KEY_BITS = 256


class Mode(StrEnum):
    """Protection applied to each message."""

    AES_GCM = "aes-gcm"
    HYBRID = "hybrid"
    OTP = "otp"
    MAC = "mac"


MODE_CODES = {Mode.AES_GCM: 1, Mode.HYBRID: 2, Mode.OTP: 3, Mode.MAC: 4}
_MODE_BY_CODE = {v: k for k, v in MODE_CODES.items()}


class ChannelError(Exception):
    """The channel failed; the message says why. No unauthenticated plaintext is ever returned."""


class IntegrityError(ChannelError):
    """A frame failed authentication (altered ciphertext, tag or header, or wrong key)."""


class ReplayError(ChannelError):
    """A frame arrived with a sequence number other than the next one (replay or reordering)."""


@dataclass(frozen=True)
class RekeyPolicy:
    """When the AES modes move to a fresh QKD key: after ``max_messages`` or ``max_seconds``."""

    max_messages: int = 1000
    max_seconds: float = 60.0

    def __post_init__(self) -> None:
        if self.max_messages < 1:
            raise ValueError(f"max_messages must be >= 1 (got {self.max_messages})")
        if not self.max_seconds > 0:
            raise ValueError(f"max_seconds must be > 0 (got {self.max_seconds})")


@dataclass
class ChannelStats:
    """What a session moved and what it cost in key material."""

    mode: str
    messages: int = 0
    payload_bytes: int = 0
    keys_used: int = 0
    key_bits_used: int = 0
    rekeys: int = 0
    keys_discarded: int = 0
    waits_for_kme: int = 0  # times traffic waited for the KME (sender: take; receiver: dec_keys)
    key_ids: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        """Plain dict for JSON output."""
        return asdict(self)


def _nonce(seq: int) -> bytes:
    return b"\x00\x00\x00\x00" + seq.to_bytes(8, "big")


def _xor(data: bytes, pad: bytes) -> bytes:
    n = len(data)
    return (int.from_bytes(data, "big") ^ int.from_bytes(pad[:n], "big")).to_bytes(n, "big")


_END = struct.Struct(">QQ")


class SecureSender:
    """The initiator: connects, takes keys via ``enc_keys`` and sends protected messages."""

    def __init__(
        self,
        sock: socket.socket,
        keys: KeySource,
        local_sae_id: str,
        peer_sae_id: str,
        mode: Mode | str = Mode.AES_GCM,
        *,
        rekey: RekeyPolicy | None = None,
        shortage: ShortagePolicy | None = None,
    ) -> None:
        self.mode = Mode(mode)
        self._sock = sock
        self._keys = keys
        self._local = local_sae_id
        self._peer = peer_sae_id
        self._rekey = rekey or RekeyPolicy()
        self._shortage = shortage or ShortagePolicy()
        self._key_bytes = AES_KEY_BITS // 8
        self._status: PoolStatus | None = None
        self._session = os.urandom(16)
        self._seq = 0
        self._supply: KeySupply | None = None
        self._hybrid: HybridInitiator | None = None
        self._aead: AESGCM | None = None
        self._epoch_key_id = ""
        self._epoch_messages = 0
        self._epoch_start = 0.0
        self._announced: set[str] = set()  # queued key IDs already announced to the responder
        self._used: set[str] = set()
        self.stats = ChannelStats(mode=self.mode.value)

    # -- framing ---------------------------------------------------------------------------
    def _frame(self, ftype: FrameType, key_ids: tuple[str, ...], body: bytes = b"") -> Frame:
        self._seq += 1
        return Frame(ftype, MODE_CODES[self.mode], self._seq, self._session, key_ids, body)

    def _send_sealed(self, ftype: FrameType, plaintext: bytes) -> None:
        """Send under the current epoch key (AES modes)."""
        assert self._aead is not None
        frame = self._frame(ftype, (self._epoch_key_id,))
        body = self._aead.encrypt(_nonce(frame.seq), plaintext, frame.header)
        write_frame(self._sock, _with_body(frame, body))

    def _account(self, keys: list[QuantumKey], sizes: list[int]) -> list[QuantumKey]:
        """Check sizes and first use of each key, and count the key material taken."""
        for key, size in zip(keys, sizes, strict=True):
            if key.key_id in self._used:
                raise KeyReuseError(f"key ID {key.key_id} offered twice; refusing to reuse a key")
            if 8 * len(key.key) != size:
                raise KeySourceError(
                    f"the KME delivered a {8 * len(key.key)}-bit key, {size} bits requested"
                )
            self._used.add(key.key_id)
            self.stats.key_ids.append(key.key_id)
        bits = sum(sizes)
        self.stats.keys_used += len(keys)
        self.stats.key_bits_used += bits
        log.debug(
            "took %d key(s) (%d bits): %s", len(keys), bits, ", ".join(k.key_id for k in keys)
        )
        return keys

    def _take(self, n: int) -> list[QuantumKey]:
        """``n`` prefetched 256-bit keys."""
        assert self._supply is not None
        return self._account(self._supply.take(n), [8 * self._key_bytes] * n)

    def _take_bits(self, bits: int) -> list[QuantumKey]:
        """Keys holding at least ``bits`` bits, sized to waste as little as the KME allows."""
        assert self._supply is not None and self._status is not None
        st = self._status
        top = st.max_key_size - st.max_key_size % 8
        bottom = max(8, st.min_key_size + (-st.min_key_size) % 8)
        sizes = [top] * (bits // top)
        rest = bits - top * len(sizes)
        if rest:
            sizes.append(min(top, max(bottom, rest + (-rest) % 8)))
        keys: list[QuantumKey] = []
        requested: list[int] = []
        per = max(1, st.max_key_per_request)
        for size in sorted(set(sizes), reverse=True):
            count = sizes.count(size)
            for start in range(0, count, per):
                number = min(per, count - start)
                keys += self._supply.fetch_now(number, size)
                requested += [size] * number
        if len(keys) != len(requested):
            raise KeySourceError(f"the KME delivered {len(keys)} keys, {len(requested)} requested")
        return self._account(keys, requested)

    # -- session ---------------------------------------------------------------------------
    def open(self) -> None:
        """Check the KME, greet the responder, and start prefetching keys."""
        status = self._status = self._keys.status(self._peer)
        if not status.min_key_size <= AES_KEY_BITS <= status.max_key_size:
            raise ChannelError(
                f"the KME serves keys of {status.min_key_size}..{status.max_key_size} bits; "
                f"the channel needs {AES_KEY_BITS}-bit keys"
            )
        hello = {"mode": self.mode.value, "from": self._local, "to": self._peer}
        code = MODE_CODES[self.mode]
        body = json.dumps(hello).encode()
        write_frame(self._sock, Frame(FrameType.HELLO, code, 0, self._session, (), body))
        ack = read_frame(self._sock)
        if ack.type is FrameType.RESULT:
            raise ChannelError(f"responder refused the session: {_result_message(ack)}")
        if ack.type is not FrameType.HELLO_ACK or ack.session_id != self._session:
            raise ChannelError("the responder did not answer the handshake")
        try:
            info = json.loads(ack.body)
            if not isinstance(info, dict):
                raise ValueError
        except ValueError:
            raise ChannelError("the responder's HELLO_ACK is not a JSON object") from None
        if info.get("sae_id") != self._peer:
            raise ChannelError(f"responder is SAE {info.get('sae_id')!r}, expected {self._peer!r}")
        if self.mode is Mode.HYBRID:
            self._hybrid = HybridInitiator(bytes.fromhex(info["mlkem_public_key"]))
        self._supply = KeySupply(
            self._keys,
            self._peer,
            8 * self._key_bytes,
            depth={Mode.OTP: 0, Mode.MAC: 2}.get(self.mode, 1),
            max_per_request=max(1, status.max_key_per_request),
            policy=self._shortage,
        )
        log.info(
            "session %s: %s channel %s -> %s",
            self._session.hex()[:8],
            self.mode.value,
            self._local,
            self._peer,
        )
        if self.mode in (Mode.AES_GCM, Mode.HYBRID):
            self._new_epoch()

    def _new_epoch(self) -> None:
        (key,) = self._take(1)
        self._announced.discard(key.key_id)
        self._epoch_key_id = key.key_id
        if self._hybrid is not None:
            aes_key, ciphertext = self._hybrid.derive(key.key, key.key_id)
            write_frame(self._sock, self._frame(FrameType.KEM, (key.key_id,), ciphertext))
        else:
            aes_key = key.key
        self._aead = AESGCM(aes_key)
        self._epoch_messages = 0
        self._epoch_start = time.monotonic()
        if self.stats.messages:
            self.stats.rekeys += 1
        log.info("epoch key %s (rekey %d)", key.key_id, self.stats.rekeys)

    def _rekey_due(self) -> bool:
        return (
            self._epoch_messages >= self._rekey.max_messages
            or time.monotonic() - self._epoch_start >= self._rekey.max_seconds
        )

    def send(self, message: bytes) -> None:
        """Protect and send one message (rekeying first when the policy says so)."""
        if self._supply is None:
            raise ChannelError("call open() before send()")
        if self.mode in (Mode.AES_GCM, Mode.HYBRID):
            if self._rekey_due():
                self._new_epoch()
            self._send_sealed(FrameType.DATA, message)
            self._epoch_messages += 1
            fresh = [k for k in self._supply.ready_ids() if k not in self._announced]
            if fresh:  # let the responder fetch them before they are needed
                self._send_sealed(FrameType.ANNOUNCE, b"".join(uuid.UUID(k).bytes for k in fresh))
                self._announced.update(fresh)
        elif self.mode is Mode.OTP:
            keys = self._take_bits(8 * (len(message) + KEY_BYTES))
            material = b"".join(k.key for k in keys)
            frame = self._frame(FrameType.DATA, tuple(k.key_id for k in keys))
            ciphertext = _xor(message, material)
            mac_key = material[len(message) : len(message) + KEY_BYTES]
            tag = wc_tag(frame.header + ciphertext, mac_key)
            write_frame(self._sock, _with_body(frame, ciphertext + tag))
        else:
            (key,) = self._take(1)
            self._announced.discard(key.key_id)
            # name the keys already fetched for the next messages after this one's key: the
            # responder fetches them while this frame is checked (authenticated by its tag)
            upcoming = [k for k in self._supply.ready_ids() if k not in self._announced][:64]
            self._announced.update(upcoming)
            frame = self._frame(FrameType.DATA, (key.key_id, *upcoming))
            tag = wc_tag(frame.header + message, key.key[:KEY_BYTES])
            write_frame(self._sock, _with_body(frame, message + tag))
        self.stats.messages += 1
        self.stats.payload_bytes += len(message)

    def close(self) -> ChannelStats:
        """Send the authenticated END frame and wait for the responder's verdict."""
        if self._supply is None:
            raise ChannelError("call open() before close()")
        counts = _END.pack(self.stats.messages, self.stats.payload_bytes)
        try:
            if self.mode in (Mode.AES_GCM, Mode.HYBRID):
                self._send_sealed(FrameType.END, counts)
            else:
                (key,) = self._take(1) if self.mode is Mode.MAC else self._take_bits(256)
                frame = self._frame(FrameType.END, (key.key_id,))
                write_frame(
                    self._sock,
                    _with_body(frame, counts + wc_tag(frame.header + counts, key.key[:KEY_BYTES])),
                )
            result = read_frame(self._sock)
        finally:
            self.stats.keys_discarded = self._supply.close()
            self.stats.waits_for_kme = self._supply.stalls
        if result.type is not FrameType.RESULT:
            raise ChannelError("the responder did not confirm the end of the stream")
        verdict = json.loads(result.body)
        if not verdict.get("ok"):
            raise ChannelError(f"the responder rejected the stream: {verdict.get('message')}")
        return self.stats

    def abort(self) -> None:
        """Stop prefetching after a failure."""
        if self._supply is not None:
            self.stats.keys_discarded = self._supply.close()


def _with_body(frame: Frame, body: bytes) -> Frame:
    return Frame(frame.type, frame.mode, frame.seq, frame.session_id, frame.key_ids, body)


def _result_message(frame: Frame) -> str:
    try:
        return str(json.loads(frame.body).get("message"))
    except (ValueError, AttributeError):
        return "(unreadable answer)"


class SecureReceiver:
    """The responder: accepts one session, fetches keys by ID via ``dec_keys`` and verifies."""

    def __init__(
        self,
        sock: socket.socket,
        keys: KeySource,
        local_sae_id: str,
        *,
        modes: tuple[Mode, ...] = tuple(Mode),
        expect_peer: str | None = None,
    ) -> None:
        self._sock = sock
        self._keys = keys
        self._local = local_sae_id
        self._modes = tuple(Mode(m) for m in modes)
        self._expect_peer = expect_peer
        self._session = b""
        self._expected_seq = 1
        self.mode: Mode | None = None
        self.peer_sae_id = ""
        self._fetcher: KeyFetcher | None = None
        self._hybrid: HybridResponder | None = None
        self._aead: AESGCM | None = None
        self._epoch_key_id = ""
        self._done = False
        self.stats = ChannelStats(mode="")

    def _refuse(self, message: str) -> None:
        try:
            body = json.dumps({"ok": False, "message": message}).encode()
            write_frame(self._sock, Frame(FrameType.RESULT, 0, 0, self._session, (), body))
        except OSError:
            pass

    def accept(self) -> None:
        """Read HELLO, check mode and SAE IDs, and answer HELLO_ACK."""
        try:
            hello = read_frame(self._sock)
        except FrameError as exc:
            raise ChannelError(f"no valid HELLO from the initiator: {exc}") from None
        self._session = hello.session_id
        if hello.type is not FrameType.HELLO or hello.seq != 0:
            self._refuse("expected HELLO")
            raise ChannelError("the initiator did not start with HELLO")
        try:
            info = json.loads(hello.body)
            if not isinstance(info, dict):
                raise ValueError
        except ValueError:
            self._refuse("HELLO is not a JSON object")
            raise ChannelError("the initiator's HELLO is not a JSON object") from None
        try:
            mode = Mode(info.get("mode"))
        except ValueError:
            self._refuse(f"unknown mode {info.get('mode')!r}")
            raise ChannelError(f"initiator asked for unknown mode {info.get('mode')!r}") from None
        if mode not in self._modes or MODE_CODES[mode] != hello.mode:
            self._refuse(f"mode {mode.value} not accepted here")
            raise ChannelError(
                f"initiator asked for mode {mode.value}, accepted: "
                f"{', '.join(m.value for m in self._modes)}"
            )
        if info.get("to") != self._local:
            self._refuse(f"this is SAE {self._local}, not {info.get('to')}")
            raise ChannelError(
                f"initiator addressed SAE {info.get('to')!r}, this is {self._local!r}"
            )
        peer = str(info.get("from", ""))
        if self._expect_peer is not None and peer != self._expect_peer:
            self._refuse(f"SAE {peer} is not the expected peer")
            raise ChannelError(f"initiator is SAE {peer!r}, expected {self._expect_peer!r}")
        self.mode, self.peer_sae_id = mode, peer
        self.stats.mode = mode.value
        try:
            status = self._keys.status(peer)
        except KeySourceError as exc:
            self._refuse("the responder cannot reach its KME")
            raise ChannelError(f"cannot use the KME: {exc}") from exc
        self._fetcher = KeyFetcher(self._keys, peer, max(1, status.max_key_per_request))
        answer: dict[str, str] = {"sae_id": self._local}
        if mode is Mode.HYBRID:
            self._hybrid = HybridResponder()
            answer["mlkem_public_key"] = self._hybrid.public_bytes.hex()
        write_frame(
            self._sock,
            Frame(
                FrameType.HELLO_ACK, hello.mode, 0, self._session, (), json.dumps(answer).encode()
            ),
        )
        log.info(
            "session %s: accepted %s channel from %s", self._session.hex()[:8], mode.value, peer
        )

    def _fetch(self, key_ids: tuple[str, ...]) -> list[QuantumKey]:
        assert self._fetcher is not None
        keys = self._fetcher.get(key_ids)
        self.stats.keys_used += len(keys)
        self.stats.key_bits_used += sum(8 * len(k.key) for k in keys)
        self.stats.key_ids.extend(key_ids)
        log.debug("fetched %d key(s) by ID: %s", len(keys), ", ".join(key_ids))
        self.stats.waits_for_kme = self._fetcher.blocking_fetches
        return keys

    def _open_sealed(self, frame: Frame) -> bytes:
        if self._aead is None or frame.key_ids != (self._epoch_key_id,):
            raise IntegrityError("frame names a key other than the current epoch key")
        try:
            return self._aead.decrypt(_nonce(frame.seq), frame.body, frame.header)
        except InvalidTag:
            raise IntegrityError(f"frame {frame.seq} failed AES-GCM authentication") from None

    def _start_epoch(self, frame: Frame) -> None:
        if len(frame.key_ids) != 1:
            raise IntegrityError("an epoch frame must name exactly one key")
        (key,) = self._fetch(frame.key_ids)
        if self._hybrid is not None:
            aes_key = self._hybrid.derive(key.key, key.key_id, frame.body)
        else:
            aes_key = key.key
        if len(aes_key) != AES_KEY_BITS // 8:
            raise IntegrityError(f"the epoch key has {8 * len(aes_key)} bits, 256 needed")
        self._aead = AESGCM(aes_key)
        if self._epoch_key_id:
            self.stats.rekeys += 1
        self._epoch_key_id = key.key_id
        log.info("epoch key %s", key.key_id)

    def _check(self, frame: Frame) -> None:
        if frame.session_id != self._session:
            raise IntegrityError("frame belongs to another session")
        if frame.seq != self._expected_seq:
            raise ReplayError(
                f"sequence number {frame.seq} where {self._expected_seq} was expected: "
                "replayed or reordered frame rejected"
            )
        assert self.mode is not None
        if frame.mode != MODE_CODES[self.mode]:
            raise IntegrityError("frame mode differs from the session mode")
        self._expected_seq += 1

    def receive(self) -> bytes | None:
        """The next authentic message, or ``None`` after a verified END. Raises on any failure."""
        if self.mode is None or self._fetcher is None:
            raise ChannelError("call accept() before receive()")
        if self._done:
            return None
        try:
            return self._receive()
        except (ChannelError, KeyReuseError, KeySourceError, FrameError) as exc:
            self._refuse(str(exc))
            self._fetcher.close()
            if isinstance(exc, ChannelError):
                raise
            raise ChannelError(str(exc)) from exc

    def _receive(self) -> bytes | None:
        assert self.mode is not None and self._fetcher is not None
        while True:
            frame = read_frame(self._sock)
            self._check(frame)
            if self.mode in (Mode.AES_GCM, Mode.HYBRID):
                if frame.type is FrameType.KEM and self.mode is Mode.HYBRID:
                    self._start_epoch(frame)
                    continue
                if (
                    self.mode is Mode.AES_GCM
                    and frame.type is FrameType.DATA
                    and frame.key_ids != (self._epoch_key_id,)
                ):
                    self._start_epoch(frame)
                plaintext = self._open_sealed(frame)
                if frame.type is FrameType.ANNOUNCE:
                    ids = [
                        str(uuid.UUID(bytes=plaintext[i : i + 16]))
                        for i in range(0, len(plaintext), 16)
                    ]
                    self._fetcher.prefetch(ids)
                    continue
            else:
                # mac DATA frames name their own key first, then keys announced for later frames
                announced = frame.key_ids[1:] if self.mode is Mode.MAC else ()
                own = frame.key_ids[:1] if self.mode is Mode.MAC else frame.key_ids
                keys = self._fetch(own)
                material = b"".join(k.key for k in keys)
                if len(frame.body) < TAG_BYTES:
                    raise IntegrityError("frame too short for its tag")
                data, tag = frame.body[:-TAG_BYTES], frame.body[-TAG_BYTES:]
                if self.mode is Mode.OTP and frame.type is FrameType.DATA:
                    if len(material) < len(data) + KEY_BYTES:
                        raise IntegrityError("frame names too little key for its length")
                    mac_key = material[len(data) : len(data) + KEY_BYTES]
                else:
                    mac_key = material[:KEY_BYTES]
                try:
                    verify_tag(frame.header + data, tag, mac_key)
                except TagMismatchError:
                    raise IntegrityError(
                        f"frame {frame.seq} failed Wegman–Carter authentication"
                    ) from None
                if announced:
                    self._fetcher.prefetch(announced)
                plaintext = (
                    _xor(data, material)
                    if self.mode is Mode.OTP and frame.type is FrameType.DATA
                    else data
                )
            if frame.type is FrameType.END:
                messages, nbytes = _END.unpack(plaintext)
                if (messages, nbytes) != (self.stats.messages, self.stats.payload_bytes):
                    raise IntegrityError(
                        f"stream truncated: END says {messages} messages/{nbytes} bytes, "
                        f"received {self.stats.messages}/{self.stats.payload_bytes}"
                    )
                self._done = True
                write_frame(
                    self._sock,
                    Frame(
                        FrameType.RESULT, 0, 0, self._session, (), json.dumps({"ok": True}).encode()
                    ),
                )
                self._fetcher.close()
                return None
            if frame.type is not FrameType.DATA:
                raise IntegrityError(f"unexpected {frame.type.name} frame")
            self.stats.messages += 1
            self.stats.payload_bytes += len(plaintext)
            return plaintext

    def __iter__(self) -> Iterator[bytes]:
        """Iterate over authentic messages until the verified END."""
        while (message := self.receive()) is not None:
            yield message
