"""The authenticated classical channel between Alice and Bob, and its ledger.

Alice and Bob share nothing but the messages on this channel. Every message is framed (a JSON
header plus raw numpy buffers), carries a per-direction sequence number and the sender's name
(so replayed, reordered or reflected messages fail), and is authenticated with a Wegman–Carter
tag (:mod:`qkdnet.postprocess.authentication`) whose one-time pad comes from a per-direction
pool of shared key. A :class:`Ledger` at each end counts messages, bytes, round trips, the bits
each message discloses about the key (declared by the protocol step that sends it, counted by
both ends) and the authentication key consumed: the finite-size key length uses these counts.

Transports move opaque frames: :func:`local_pair` (both parties as greenlets of one thread,
handing over on every wait), :func:`memory_pair` (for two threads of one process) and
:class:`TcpTransport` (length-prefixed frames over a socket, for two processes).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import queue
import select
import socket
import struct
import weakref
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Protocol

import greenlet
import numpy as np

from qkdnet.postprocess.authentication import (
    TAG_BYTES,
    AuthenticationError,
    AuthKeyPool,
    tag,
    verify,
)


class PeerAborted(Exception):  # noqa: N818
    """The other party aborted the protocol and said why."""


class ChannelClosed(Exception):  # noqa: N818
    """The transport closed or timed out before a message arrived."""


class Transport(Protocol):
    """Moves whole frames between the two parties, in order."""

    def send(self, frame: bytes) -> None: ...

    def recv(self) -> bytes: ...

    def close(self) -> None: ...


class _QueueTransport:
    """One end of an in-memory transport (``SimpleQueue``s; where ``select.poll`` is missing)."""

    def __init__(
        self, outbox: queue.SimpleQueue, inbox: queue.SimpleQueue, timeout_s: float
    ) -> None:
        self._outbox = outbox
        self._inbox = inbox
        self._timeout_s = timeout_s

    def send(self, frame: bytes) -> None:
        self._outbox.put(frame)

    def recv(self) -> bytes:
        try:
            frame = self._inbox.get(timeout=self._timeout_s)
        except queue.Empty as exc:
            raise ChannelClosed(f"no message within {self._timeout_s} s") from exc
        if frame is None:
            raise ChannelClosed("peer closed the channel")
        return frame

    def close(self) -> None:
        self._outbox.put(None)


class _PipeTransport:
    """One end of an in-memory transport: frames go into the peer's deque, and one byte into a
    pipe wakes the peer, which waits in ``poll`` with the timeout.

    A round trip between two threads costs ~10 µs of CPU this way, against ~40 µs for a
    ``SimpleQueue.get`` with a timeout (CPython's timed lock wait; Cascade makes ~10^3 round
    trips per block). Frames of any size never block the sender (the pipe carries one byte
    per frame). The file descriptors close when the end is garbage-collected."""

    def __init__(self, outbox: deque, inbox: deque, wake_fd: int, wait_fd: int,
                 timeout_s: float) -> None:  # fmt: skip
        self._outbox = outbox
        self._inbox = inbox
        self._wake_fd = wake_fd
        self._wait_fd = wait_fd
        self._timeout_s = timeout_s
        self._timeout_ms = max(1, math.ceil(timeout_s * 1000))
        self._poll = select.poll()
        self._poll.register(wait_fd, select.POLLIN)
        weakref.finalize(self, _close_fds, wake_fd, wait_fd)

    def send(self, frame: bytes | None) -> None:
        self._outbox.append(frame)
        try:
            os.write(self._wake_fd, b"\0")
        except OSError as exc:
            raise ChannelClosed("peer closed the channel") from exc

    def recv(self) -> bytes:
        if not self._poll.poll(self._timeout_ms):
            raise ChannelClosed(f"no message within {self._timeout_s} s")
        if not os.read(self._wait_fd, 1) or not self._inbox:
            raise ChannelClosed("peer closed the channel")
        frame = self._inbox.popleft()
        if frame is None:
            raise ChannelClosed("peer closed the channel")
        return frame

    def close(self) -> None:
        with contextlib.suppress(ChannelClosed):
            self.send(None)


def _close_fds(*fds: int) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


def memory_pair(timeout_s: float = 120.0) -> tuple[Transport, Transport]:
    """Two connected in-memory transports (for Alice and Bob running in two threads of one
    process): deques woken through pipes, or ``SimpleQueue``s without ``select.poll``."""
    if not hasattr(select, "poll"):
        a_to_b: queue.SimpleQueue = queue.SimpleQueue()
        b_to_a: queue.SimpleQueue = queue.SimpleQueue()
        return (
            _QueueTransport(a_to_b, b_to_a, timeout_s),
            _QueueTransport(b_to_a, a_to_b, timeout_s),
        )
    to_b: deque = deque()
    to_a: deque = deque()
    wait_a, wake_a = os.pipe()  # Alice waits on wait_a, Bob wakes her through wake_a
    wait_b, wake_b = os.pipe()
    return (
        _PipeTransport(to_b, to_a, wake_b, wait_a, timeout_s),
        _PipeTransport(to_a, to_b, wake_a, wait_b, timeout_s),
    )


class SwitchTransport:
    """One end of a same-thread transport: Alice and Bob run as greenlets of one thread
    (:func:`qkdnet.postprocess.pipeline.run_pair` binds them), a frame goes straight into the
    peer's deque, and a ``recv`` with nothing to read switches to the peer until it has sent.

    A Cascade round trip is then two greenlet switches (~1 µs) instead of two thread wake-ups
    through the kernel (~37 µs of CPU with pipes, more when the threads sit on different idle
    cores of a virtual machine). Waiting for a peer that has finished, or for one that is itself
    waiting on an empty inbox, raises :class:`ChannelClosed` at once (nothing can arrive)."""

    def __init__(self, outbox: deque, inbox: deque) -> None:
        self._outbox = outbox
        self._inbox = inbox
        self.peer: SwitchTransport | None = None
        self.party: greenlet.greenlet | None = None  # set by run_pair for one block
        self.waiting = False

    def send(self, frame: bytes | None) -> None:
        self._outbox.append(frame)

    def recv(self) -> bytes:
        while not self._inbox:
            peer = self.peer
            other = peer.party if peer is not None else None
            if other is None or other.dead or greenlet.getcurrent() is other:
                raise ChannelClosed("peer closed the channel (it is not running)")
            if peer is not None and peer.waiting and not self._outbox:
                raise ChannelClosed("both parties wait for a message (protocol deadlock)")
            self.waiting = True
            try:
                other.switch()
            finally:
                self.waiting = False
        frame = self._inbox.popleft()
        if frame is None:
            raise ChannelClosed("peer closed the channel")
        return frame

    def close(self) -> None:
        self.send(None)


def local_pair() -> tuple[SwitchTransport, SwitchTransport]:
    """Two connected same-thread transports for Alice and Bob run by
    :func:`qkdnet.postprocess.pipeline.run_pair` as greenlets (the fastest local pair)."""
    to_b: deque = deque()
    to_a: deque = deque()
    alice, bob = SwitchTransport(to_b, to_a), SwitchTransport(to_a, to_b)
    alice.peer, bob.peer = bob, alice
    return alice, bob


class TcpTransport:
    """Length-prefixed frames over a connected TCP socket."""

    def __init__(self, sock: socket.socket, timeout_s: float = 120.0) -> None:
        sock.settimeout(timeout_s)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock = sock

    @classmethod
    def connect(cls, host: str, port: int, timeout_s: float = 120.0) -> TcpTransport:
        """Connect to a listening peer."""
        return cls(socket.create_connection((host, port), timeout=timeout_s), timeout_s)

    def send(self, frame: bytes) -> None:
        self._sock.sendall(struct.pack("<Q", len(frame)) + frame)

    def _exact(self, n: int) -> bytes:
        buf = bytearray(n)
        view = memoryview(buf)
        got = 0
        while got < n:
            try:
                k = self._sock.recv_into(view[got:], n - got)
            except TimeoutError as exc:
                raise ChannelClosed("TCP receive timed out") from exc
            if k == 0:
                raise ChannelClosed("peer closed the TCP connection")
            got += k
        return bytes(buf)

    def recv(self) -> bytes:
        (length,) = struct.unpack("<Q", self._exact(8))
        return self._exact(length)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.close()


@dataclass
class Message:
    """One protocol message: a kind, named fields (numpy arrays or JSON scalars), and how many
    bits of information about the key it discloses, under a ledger ``category``."""

    kind: str
    fields: dict[str, Any] = field(default_factory=dict)
    disclosed_bits: int = 0
    category: str = ""

    def __getitem__(self, name: str) -> Any:
        return self.fields[name]


_JSON_OUT = json.JSONEncoder(separators=(",", ":"))
_JSON_IN = json.JSONDecoder()
_HEAD_LEN = struct.Struct("<I")
_DTYPES: dict[str, np.dtype] = {}
_NO_TAG = bytes(TAG_BYTES)  # deferred authentication: the transcript tag comes at settle()


def encode(message: Message, sender: str, seq: int) -> bytes:
    """Frame a message: 4-byte header length, JSON header, then the arrays' raw bytes."""
    scalars: dict[str, Any] = {}
    arrays: list[list[Any]] = []
    buffers: list[Any] = []
    for name, value in message.fields.items():
        if isinstance(value, np.ndarray):
            data = value if value.flags.c_contiguous else np.ascontiguousarray(value)
            arrays.append([name, data.dtype.str, data.shape])
            buffers.append(data)  # bytes.join reads a C-contiguous array's buffer directly
        elif isinstance(value, (bytes, bytearray)):
            arrays.append([name, "bytes", [len(value)]])
            buffers.append(value)
        elif isinstance(value, np.generic):
            scalars[name] = value.item()
        else:
            scalars[name] = value
    header = {
        "kind": message.kind,
        "sender": sender,
        "seq": seq,
        "disclosed": int(message.disclosed_bits),
        "category": message.category,
        "scalars": scalars,
        "arrays": arrays,
    }
    head = _JSON_OUT.encode(header).encode()
    return b"".join([_HEAD_LEN.pack(len(head)), head, *buffers])


def decode(frame: bytes) -> tuple[Message, str, int]:
    """Inverse of :func:`encode`: (message, sender, seq)."""
    (head_len,) = _HEAD_LEN.unpack_from(frame)
    header = _JSON_IN.decode(frame[4 : 4 + head_len].decode())
    fields: dict[str, Any] = dict(header["scalars"])
    offset = 4 + head_len
    for name, dtype, shape in header["arrays"]:
        if dtype == "bytes":
            fields[name] = frame[offset : offset + shape[0]]
            offset += shape[0]
            continue
        dt = _DTYPES.get(dtype)
        if dt is None:
            dt = _DTYPES[dtype] = np.dtype(dtype)
        count = math.prod(shape)
        if count < 0 or offset + count * dt.itemsize > len(frame):
            raise ValueError("malformed frame: array beyond the end")
        array = np.frombuffer(frame, dtype=dt, count=count, offset=offset).copy()
        fields[name] = array if len(shape) == 1 else array.reshape(shape)
        offset += count * dt.itemsize
    if offset != len(frame):
        raise ValueError("malformed frame: trailing bytes")
    msg = Message(header["kind"], fields, header["disclosed"], header["category"])
    return msg, header["sender"], header["seq"]


@dataclass
class Ledger:
    """What crossed the channel, counted identically at both ends.

    ``disclosed_bits`` maps a category (``"ec"``, ``"estimation"``, ``"verification"``, …) to the
    bits about the key that messages in it revealed, whichever party sent them.
    """

    messages: int = 0
    bytes: int = 0
    round_trips: int = 0
    disclosed_bits: Counter = field(default_factory=Counter)
    auth_key_bits: int = 0

    def disclosed(self, *categories: str) -> int:
        """Total disclosed bits in ``categories`` (all categories when none is given)."""
        if not categories:
            return int(sum(self.disclosed_bits.values()))
        return int(sum(self.disclosed_bits[c] for c in categories))

    def as_dict(self) -> dict[str, Any]:
        """Plain dict for reports."""
        return {
            "messages": self.messages,
            "bytes": self.bytes,
            "round_trips": self.round_trips,
            "disclosed_bits": dict(self.disclosed_bits),
            "auth_key_bits": self.auth_key_bits,
        }


class ChannelEnd:
    """One party's end of the authenticated channel.

    ``send_pool`` supplies the pads for this party's messages and ``recv_pool`` those of the
    peer's; the peer holds the same two pools swapped (both start from the pre-shared key).
    """

    def __init__(
        self,
        name: str,
        peer: str,
        transport: Transport,
        send_pool: AuthKeyPool,
        recv_pool: AuthKeyPool,
    ) -> None:
        self.name = name
        self.peer = peer
        self.transport = transport
        self.send_pool = send_pool
        self.recv_pool = recv_pool
        self.ledger = Ledger()
        self._send_seq = 0
        self._recv_seq = 0
        self._last_was_send = False
        self._deferred: tuple[list[bytes], list[bytes]] | None = None
        self._cover_send = b""
        self._cover_recv = b""

    def defer(self) -> None:
        """Start deferred authentication: the following messages go untagged and both ends
        keep their transcripts, until :meth:`settle` tags each direction's transcript once.
        Nothing received meanwhile may be acted on irreversibly (interactive error correction
        only; its result is used after :meth:`settle`), as in the delayed authentication of
        Fung, Ma, Chau, PRA 81, 012318 (2010). Saves one pad per message."""
        self._deferred = ([], [])

    def settle(self) -> None:
        """End deferred authentication: each end sends one authenticated "transcript" message
        whose tag covers every frame it sent while deferred, and checks the peer's against the
        frames it received (:class:`AuthenticationError` on any difference)."""
        if self._deferred is None:
            raise RuntimeError("settle() without defer()")
        sent, received = self._deferred
        self._deferred = None
        self._cover_send = b"".join(sent)
        self.send(Message("transcript", {"n": len(sent)}))
        self._cover_recv = b"".join(received)
        message = self.recv("transcript")
        if int(message["n"]) != len(received):
            raise AuthenticationError("deferred transcripts differ in length")

    def _count(self, message: Message, size: int) -> None:
        self.ledger.messages += 1
        self.ledger.bytes += size
        if message.disclosed_bits:
            self.ledger.disclosed_bits[message.category or "other"] += int(message.disclosed_bits)

    def send(self, message: Message) -> None:
        """Frame, tag and send ``message``."""
        frame = encode(message, self.name, self._send_seq)
        before = self.send_pool.consumed_bits
        if self._deferred is not None:
            self._deferred[0].append(frame)
            wire = frame + _NO_TAG
        else:
            covered = self._cover_send + frame
            self._cover_send = b""
            wire = frame + tag(covered, self.send_pool.hash_key, self.send_pool.next_pad())
        self.ledger.auth_key_bits += self.send_pool.consumed_bits - before
        self._send_seq += 1
        self._count(message, len(wire))
        self._last_was_send = True
        self.transport.send(wire)

    def recv(self, kind: str | None = None) -> Message:
        """Receive the next message, verify its tag, sender and sequence number.

        Raises :class:`AuthenticationError` on a bad tag, :class:`PeerAborted` when the peer
        sent an abort, and :class:`ValueError` when the kind differs from ``kind``.
        """
        wire = self.transport.recv()
        frame, received_tag = wire[:-TAG_BYTES], wire[-TAG_BYTES:]
        before = self.recv_pool.consumed_bits
        if self._deferred is not None:
            self._deferred[1].append(frame)
            ok = len(wire) > TAG_BYTES
        else:
            covered = self._cover_recv + frame
            self._cover_recv = b""
            ok = len(wire) > TAG_BYTES and verify(
                covered, received_tag, self.recv_pool.hash_key, self.recv_pool.next_pad()
            )
        self.ledger.auth_key_bits += self.recv_pool.consumed_bits - before
        if not ok:
            raise AuthenticationError(
                f"message {self._recv_seq} from {self.peer} failed authentication"
            )
        try:
            message, sender, seq = decode(frame)
        except (ValueError, KeyError, TypeError, struct.error) as exc:
            raise AuthenticationError(
                f"malformed message {self._recv_seq} from {self.peer}"
            ) from exc
        if sender != self.peer or seq != self._recv_seq:
            raise AuthenticationError(
                f"message from {sender!r} with sequence {seq} is out of order or reflected "
                f"(expected {self.peer!r}, {self._recv_seq})"
            )
        self._recv_seq += 1
        self._count(message, len(wire))
        if self._last_was_send:
            self.ledger.round_trips += 1
        self._last_was_send = False
        if message.kind == "abort":
            raise PeerAborted(str(message.fields.get("reason", "peer aborted")))
        if kind is not None and message.kind != kind:
            raise ValueError(f"expected a {kind!r} message, got {message.kind!r}")
        return message

    def abort(self, reason: str) -> None:
        """Tell the peer that this party aborts, and why (best effort)."""
        try:
            self.send(Message("abort", {"reason": reason}))
        except (AuthenticationError, ChannelClosed, OSError):
            # No pad left to authenticate the abort: close, so the peer stops waiting.
            self.transport.close()


def channel_pair(
    transports: tuple[Transport, Transport], preshared_key: bytes
) -> tuple[ChannelEnd, ChannelEnd]:
    """Alice's and Bob's channel ends over ``transports`` from one pre-shared key (split into a
    pool per direction)."""
    alice_end, bob_end = transports
    ab, ba = split_preshared(preshared_key)
    ab2, ba2 = split_preshared(preshared_key)
    return (
        ChannelEnd("alice", "bob", alice_end, ab, ba),
        ChannelEnd("bob", "alice", bob_end, ba2, ab2),
    )


def split_preshared(preshared_key: bytes) -> tuple[AuthKeyPool, AuthKeyPool]:
    """(Alice→Bob pool, Bob→Alice pool) from one pre-shared key, each with its own hash key."""
    half = len(preshared_key) // 2
    return (
        AuthKeyPool.from_preshared(preshared_key[:half]),
        AuthKeyPool.from_preshared(preshared_key[half:]),
    )
