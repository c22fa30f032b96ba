"""The wire format of the secure channel: length-prefixed frames whose header is authenticated.

Layout (big-endian)::

    u32 length of the rest | header | body
    header = b"QK" | u8 version | u8 type | u8 mode | u8 reserved | u64 seq | 16 B session ID
             | u16 number of key IDs | 16 B per key ID (binary UUID)

The whole header is the AAD of AES-GCM (or the prefix of the Wegman–Carter message), so the key IDs,
the sequence number, the session and the mode are bound to the ciphertext: a frame moved to another
position, session or key fails authentication. The receiver also requires ``seq`` to be exactly the
next expected value, so a replayed, dropped or reordered frame is rejected before decryption.
"""

from __future__ import annotations

import socket
import struct
import uuid
from dataclasses import dataclass
from enum import IntEnum

MAGIC = b"QK"
VERSION = 1
_FIXED = struct.Struct(">2sBBBBQ16sH")
_LENGTH = struct.Struct(">I")
MAX_FRAME_BYTES = 64 * 1024 * 1024  # refuse absurd lengths before allocating


class FrameType(IntEnum):
    """What a frame carries."""

    HELLO = 1  # initiator → responder: mode and initiator SAE ID (JSON body, plaintext)
    HELLO_ACK = 2  # responder → initiator: responder SAE ID, ML-KEM public key in hybrid mode
    DATA = 3  # one application message, protected per the session mode
    ANNOUNCE = 4  # next key ID(s), so the responder can fetch them before they are needed
    KEM = 5  # ML-KEM-768 ciphertext for the epoch whose key ID is in the header (hybrid mode)
    END = 6  # authenticated end of stream: message count and byte count
    RESULT = 7  # responder → initiator: accepted or refused (JSON body, informative only)


class FrameError(Exception):
    """A frame that cannot be parsed, or a connection that closed in the middle of one."""


@dataclass(frozen=True)
class Frame:
    """One frame: header fields plus the (protected) body."""

    type: FrameType
    mode: int
    seq: int
    session_id: bytes
    key_ids: tuple[str, ...]
    body: bytes

    @property
    def header(self) -> bytes:
        """The header bytes: the AAD that binds type, mode, sequence, session and key IDs."""
        fixed = _FIXED.pack(
            MAGIC,
            VERSION,
            int(self.type),
            self.mode,
            0,
            self.seq,
            self.session_id,
            len(self.key_ids),
        )
        return fixed + b"".join(uuid.UUID(k).bytes for k in self.key_ids)

    def encode(self) -> bytes:
        """Length prefix, header and body, ready to send."""
        rest = self.header + self.body
        return _LENGTH.pack(len(rest)) + rest

    @classmethod
    def decode(cls, data: bytes) -> Frame:
        """Parse the bytes after the length prefix."""
        if len(data) < _FIXED.size:
            raise FrameError(f"frame too short ({len(data)} bytes)")
        magic, version, ftype, mode, _, seq, session_id, n_keys = _FIXED.unpack_from(data)
        if magic != MAGIC or version != VERSION:
            raise FrameError("not a qkdnet channel frame (bad magic or version)")
        try:
            frame_type = FrameType(ftype)
        except ValueError:
            raise FrameError(f"unknown frame type {ftype}") from None
        end = _FIXED.size + 16 * n_keys
        if len(data) < end:
            raise FrameError("frame shorter than its key-ID list")
        key_ids = tuple(str(uuid.UUID(bytes=data[i : i + 16])) for i in range(_FIXED.size, end, 16))
        return cls(frame_type, mode, seq, session_id, key_ids, bytes(data[end:]))


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        r = sock.recv_into(view[got:], n - got)
        if r == 0:
            raise FrameError("connection closed by the peer in the middle of the stream")
        got += r
    return bytes(buf)


def read_frame(sock: socket.socket) -> Frame:
    """Read one whole frame from a stream socket."""
    (length,) = _LENGTH.unpack(_recv_exact(sock, _LENGTH.size))
    if length > MAX_FRAME_BYTES:
        raise FrameError(f"frame of {length} bytes exceeds the {MAX_FRAME_BYTES}-byte limit")
    return Frame.decode(_recv_exact(sock, length))


def write_frame(sock: socket.socket, frame: Frame) -> None:
    """Send one frame."""
    sock.sendall(frame.encode())
