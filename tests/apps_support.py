"""Test helpers for the apps: an in-memory KME pair with ETSI 014 semantics, and a frame relay.

The fake follows the 014 rules the apps rely on: enc_keys removes keys from the pool and names the
slave; dec_keys delivers each key once, only to the named slave (401 otherwise), and fails for
unknown IDs; an empty pool answers like 503 (``PoolDepletedError``), serving a request whole or not at all.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence

from qkdnet.apps.frames import _LENGTH, FrameError, _recv_exact
from qkdnet.apps.keysource import (
    KeySourceError,
    KMERefusedError,
    PoolDepletedError,
    PoolStatus,
    QuantumKey,
)


class FakeLink:
    """Two KMEs sharing a pool of QKD keys (what a link would have put into both stores)."""

    def __init__(self, keys: int = 1000, key_size_bits: int = 256, latency_s: float = 0.0) -> None:
        self.key_size_bits = key_size_bits
        self.latency_s = latency_s
        self.pool_bytes = bytearray(os.urandom(keys * key_size_bits // 8))
        self.lock = threading.Lock()
        self.delivered: dict[str, tuple[bytes, str, str]] = {}  # id -> (key, master, slave)
        self.dec_done: set[str] = set()
        self.all_keys: list[bytes] = []
        self.enc_calls = 0
        self.dec_calls = 0
        self.depleted = threading.Event()  # set once an enc_keys call found the pool too small

    def add_keys(self, keys: int) -> None:
        with self.lock:
            self.pool_bytes += os.urandom(keys * self.key_size_bits // 8)

    def sae(self, sae_id: str) -> FakeSAESource:
        return FakeSAESource(self, sae_id)


class FakeSAESource:
    """The KeySource one SAE sees at its own KME."""

    def __init__(self, link: FakeLink, sae_id: str) -> None:
        self.link = link
        self.sae_id = sae_id

    def status(self, slave_sae_id: str) -> PoolStatus:
        with self.link.lock:
            stored = len(self.link.pool_bytes) * 8 // self.link.key_size_bits
        return PoolStatus(self.link.key_size_bits, stored, 64, 8192, 64)

    def enc_keys(self, slave_sae_id: str, number: int, size_bits: int) -> list[QuantumKey]:
        time.sleep(self.link.latency_s)
        nbytes = size_bits // 8
        with self.link.lock:
            self.link.enc_calls += 1
            if len(self.link.pool_bytes) < number * nbytes:
                self.link.depleted.set()
                raise PoolDepletedError(
                    f"insufficient key material: {len(self.link.pool_bytes) * 8} bits stored"
                )
            out = []
            for _ in range(number):
                key = bytes(self.link.pool_bytes[:nbytes])
                del self.link.pool_bytes[:nbytes]
                key_id = str(uuid.uuid4())
                self.link.delivered[key_id] = (key, self.sae_id, slave_sae_id)
                self.link.all_keys.append(key)
                out.append(QuantumKey(key_id, key))
        return out

    def dec_keys(self, master_sae_id: str, key_ids: Sequence[str]) -> list[QuantumKey]:
        time.sleep(self.link.latency_s)
        with self.link.lock:
            self.link.dec_calls += 1
            out = []
            for key_id in key_ids:
                if key_id not in self.link.delivered or key_id in self.link.dec_done:
                    raise KeySourceError("one or more keys specified are not found on KME")
                key, master, slave = self.link.delivered[key_id]
                if slave != self.sae_id or master != master_sae_id:
                    raise KMERefusedError("401: this SAE may not fetch these keys")
                out.append(QuantumKey(key_id, key))
            self.link.dec_done.update(key_ids)
        return out


Tamper = Callable[[int, bytes], list[bytes]]


class FrameRelay:
    """A TCP relay between initiator and responder that can alter initiator→responder frames.

    ``tamper(index, raw_frame)`` gets each whole frame (length prefix included) and returns the
    list of frames to forward instead (drop: ``[]``, replay: ``[raw, raw]``).
    """

    def __init__(self, target: tuple[str, int], tamper: Tamper | None = None) -> None:
        self.target = target
        self.tamper = tamper or (lambda _i, raw: [raw])
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = self.listener.getsockname()
        self.frames: list[bytes] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _pipe_back(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)

    def _run(self) -> None:
        client, _ = self.listener.accept()
        server = socket.create_connection(self.target)
        threading.Thread(target=self._pipe_back, args=(server, client), daemon=True).start()
        index = 0
        try:
            while True:
                (length,) = _LENGTH.unpack(_recv_exact(client, _LENGTH.size))
                raw = _LENGTH.pack(length) + _recv_exact(client, length)
                self.frames.append(raw)
                for out in self.tamper(index, raw):
                    server.sendall(out)
                index += 1
        except (FrameError, OSError):
            pass
        finally:
            with contextlib.suppress(OSError):
                server.shutdown(socket.SHUT_WR)
