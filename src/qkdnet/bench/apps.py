"""Benchmarks of the secure applications (area ``apps``).

Throughput of the channel over a real localhost TCP socket, keyed by two real KMEs over mutual TLS
(``qkdnet.apps.localkms``), against baselines measured in the same run: a plain TCP copy of the
same bytes (what the socket alone can do) and AES-256-GCM encrypt+decrypt in memory (what the
cipher alone costs on one core). Key consumption per GB at several rekey intervals is measured
from the channel's own count of key bits taken, against the one-time pad's consumption.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from qkdnet.apps.channel import ChannelStats, Mode, RekeyPolicy, SecureReceiver, SecureSender
from qkdnet.apps.keysource import KeySource
from qkdnet.bench import Figure

AREA = "apps"
GB = 1e9


@dataclass(frozen=True)
class ChannelRun:
    """One timed session: seconds from HELLO to the verified END, and the sender's stats."""

    seconds: float
    stats: ChannelStats

    @property
    def mb_per_s(self) -> float:
        return self.stats.payload_bytes / self.seconds / 1e6

    @property
    def key_bits_per_gb(self) -> float:
        # keys fetched ahead and discarded at the end count as consumed (256 bits each)
        bits = self.stats.key_bits_used + 256 * self.stats.keys_discarded
        return bits / self.stats.payload_bytes * GB


def run_channel(
    master: KeySource,
    slave: KeySource,
    master_id: str,
    slave_id: str,
    mode: Mode,
    messages: int,
    message_bytes: int,
    rekey_messages: int = 1000,
) -> ChannelRun:
    """Send ``messages`` random messages of ``message_bytes`` through a fresh session."""
    listener = socket.create_server(("127.0.0.1", 0))
    errors: list[BaseException] = []

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            receiver = SecureReceiver(conn, slave, slave_id)
            try:
                receiver.accept()
                for _ in receiver:
                    pass
            except BaseException as exc:
                errors.append(exc)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    payload = os.urandom(message_bytes)
    with socket.create_connection(listener.getsockname()) as sock:
        start = time.perf_counter()
        sender = SecureSender(
            sock, master, master_id, slave_id, mode, rekey=RekeyPolicy(rekey_messages, 3600.0)
        )
        sender.open()
        for _ in range(messages):
            sender.send(payload)
        stats = sender.close()
        seconds = time.perf_counter() - start
    thread.join()
    listener.close()
    if errors:
        raise errors[0]
    return ChannelRun(seconds, stats)


def tcp_copy_mb_per_s(total_bytes: int, chunk_bytes: int) -> float:
    """Baseline: a plain TCP copy of ``total_bytes`` over localhost (no crypto, no framing)."""
    listener = socket.create_server(("127.0.0.1", 0))
    received = [0]

    def drain() -> None:
        conn, _ = listener.accept()
        with conn:
            buf = bytearray(1 << 20)
            while n := conn.recv_into(buf):
                received[0] += n

    thread = threading.Thread(target=drain, daemon=True)
    thread.start()
    chunk = os.urandom(chunk_bytes)
    start = time.perf_counter()
    with socket.create_connection(listener.getsockname()) as sock:
        for _ in range(total_bytes // chunk_bytes):
            sock.sendall(chunk)
        sock.shutdown(socket.SHUT_WR)
        thread.join()
    seconds = time.perf_counter() - start
    listener.close()
    return received[0] / seconds / 1e6


def aes_gcm_mb_per_s(total_bytes: int, chunk_bytes: int) -> float:
    """Baseline: AES-256-GCM encrypt then decrypt of the same bytes in memory, one key."""
    aead = AESGCM(os.urandom(32))
    chunk = os.urandom(chunk_bytes)
    n = total_bytes // chunk_bytes
    start = time.perf_counter()
    for i in range(n):
        nonce = i.to_bytes(12, "big")
        aead.decrypt(nonce, aead.encrypt(nonce, chunk, b"hdr"), b"hdr")
    return n * chunk_bytes / (time.perf_counter() - start) / 1e6


def run(quick: bool) -> list[Figure]:
    """Channel MB/s per mode and key bits per GB per rekey interval, each beside its baseline."""
    from qkdnet.apps.localkms import LocalKMEPair

    msg_bytes = 64 * 1024
    n_aes = 64 if quick else 512  # 4 MiB / 32 MiB
    n_slow = 8 if quick else 32  # Wegman–Carter in Python: 0.5 / 2 MiB
    otp_bits = 8 * msg_bytes * n_slow * 2
    with LocalKMEPair(key_bits=max(otp_bits, 1 << 22) + (1 << 20)) as kms:
        m, s = kms.master_source(), kms.slave_source()
        ids = (kms.master_sae, kms.slave_sae)
        run_channel(m, s, *ids, Mode.AES_GCM, 8, msg_bytes)  # warm-up: TLS sessions, imports
        tcp = tcp_copy_mb_per_s(n_aes * msg_bytes, msg_bytes)
        raw = aes_gcm_mb_per_s(n_aes * msg_bytes, msg_bytes)
        figures: list[Figure] = []
        for mode in (Mode.AES_GCM, Mode.HYBRID):
            r = run_channel(m, s, *ids, mode, n_aes, msg_bytes, rekey_messages=100)
            figures.append(
                Figure(
                    AREA,
                    f"{mode.value} channel, 64 KiB msgs, rekey/100 msgs",
                    r.mb_per_s,
                    "MB/s",
                    "plain TCP copy (same run)",
                    tcp,
                )
            )
            figures.append(
                Figure(
                    AREA,
                    f"{mode.value} channel vs cipher alone",
                    r.mb_per_s,
                    "MB/s",
                    "AES-256-GCM enc+dec in memory",
                    raw,
                )
            )
        otp = run_channel(m, s, *ids, Mode.OTP, n_slow, msg_bytes)
        mac = run_channel(m, s, *ids, Mode.MAC, n_slow, msg_bytes)
        figures.append(
            Figure(
                AREA,
                "otp channel (one-time pad + Wegman–Carter)",
                otp.mb_per_s,
                "MB/s",
                "AES-256-GCM enc+dec in memory",
                raw,
            )
        )
        figures.append(
            Figure(
                AREA,
                "mac channel (Wegman–Carter only)",
                mac.mb_per_s,
                "MB/s",
                "AES-256-GCM enc+dec in memory",
                raw,
            )
        )
        base = None
        for interval in (256, 16, 1):
            r = run_channel(m, s, *ids, Mode.AES_GCM, n_aes, msg_bytes, rekey_messages=interval)
            base = base or r
            if interval == 1:  # prefetch + announce keep a rekey per message off the data path
                figures.append(
                    Figure(
                        AREA,
                        "aes-gcm channel, rekey every message",
                        r.mb_per_s,
                        "MB/s",
                        "same channel, rekey every 256 messages",
                        base.mb_per_s,
                    )
                )
            figures.append(Figure(
                AREA, f"key bits per GB, aes-gcm rekey every {interval} x 64 KiB",
                r.key_bits_per_gb, "bit/GB", "one-time pad (same run)", otp.key_bits_per_gb,
            ))  # fmt: skip
    return figures
