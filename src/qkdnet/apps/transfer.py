"""Files and messages over a secure channel: a manifest message, then the content in chunks.

The manifest (JSON: kind, name, size, SHA-256) travels as the first protected message, so the
responder knows what to expect and checks the whole content against it. The responder keeps the
content in memory and hands it out only after the authenticated END frame: a failed or truncated
transfer never leaves plaintext behind (no partial output file).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Literal

from qkdnet.apps.channel import (
    ChannelError,
    ChannelStats,
    IntegrityError,
    SecureReceiver,
    SecureSender,
)

DEFAULT_CHUNK_BYTES = 64 * 1024
DEFAULT_MAX_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class Received:
    """A verified transfer: what it was, its name and its content."""

    kind: Literal["file", "message"]
    name: str
    data: bytes
    sha256: str


def send_payload(
    sender: SecureSender,
    data: bytes,
    *,
    kind: Literal["file", "message"] = "message",
    name: str = "",
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> ChannelStats:
    """Send ``data`` as one transfer over an opened sender, then close the channel."""
    if chunk_bytes < 1:
        raise ValueError(f"chunk size must be >= 1 byte (got {chunk_bytes})")
    manifest = {
        "kind": kind,
        "name": name,
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    sender.send(json.dumps(manifest).encode())
    view = memoryview(data)
    for start in range(0, len(data), chunk_bytes):
        sender.send(bytes(view[start : start + chunk_bytes]))
    return sender.close()


def receive_payload(receiver: SecureReceiver, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Received:
    """Receive one transfer over an accepted receiver; raises unless it is complete and authentic."""
    first = receiver.receive()
    if first is None:
        raise ChannelError("the stream ended before its manifest")
    try:
        manifest = json.loads(first)
        kind, name, size, digest = (
            manifest["kind"],
            str(manifest["name"]),
            int(manifest["size"]),
            str(manifest["sha256"]),
        )
    except (ValueError, KeyError, TypeError):
        raise ChannelError("the first message is not a transfer manifest") from None
    if kind not in ("file", "message"):
        raise ChannelError(f"unknown transfer kind {kind!r}")
    if size > max_bytes:
        raise ChannelError(f"transfer of {size} bytes exceeds the {max_bytes}-byte limit")
    buf = bytearray()
    for chunk in receiver:
        buf += chunk
        if len(buf) > size:
            raise IntegrityError("more content than the manifest announced")
    if len(buf) != size or hashlib.sha256(buf).hexdigest() != digest:
        raise IntegrityError("content does not match the manifest (size or SHA-256)")
    return Received(kind, name, bytes(buf), digest)
