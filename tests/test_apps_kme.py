"""Apps against real KMEs: 014 over mutual TLS on 127.0.0.1, real sockets, real certificates.

Covers the issue's 'must show' items end to end: a round trip per mode, key IDs used once, keys
never in logs or CLI output, and bad input (missing KME, depleted pool, wrong certificate) giving a
clear message, a non-zero exit and no output file.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from apps_support import FrameRelay
from qkdnet.apps import (
    ChannelError,
    KMERefusedError,
    KMEUnreachableError,
    Mode,
    PoolDepletedError,
    RekeyPolicy,
    SecureReceiver,
    SecureSender,
)
from qkdnet.apps.examples import EXAMPLES, run_example
from qkdnet.apps.kme import kme_key_source
from qkdnet.apps.localkms import LocalKMEPair
from qkdnet.apps.transfer import receive_payload, send_payload
from qkdnet.kms.pki import init_pki

HOSPITAL, LAB = "hospital-sae", "lab-sae"
SRC = str(Path(__file__).resolve().parents[1] / "src")


@pytest.fixture(scope="module")
def kms():
    with LocalKMEPair(1 << 21, master_sae=HOSPITAL, slave_sae=LAB) as pair:
        yield pair


@pytest.fixture(scope="module")
def sources(kms: LocalKMEPair):
    return kms.master_source(), kms.slave_source()


def _transfer(sources, data: bytes, mode: Mode, rekey: int = 4, chunk: int = 1000):
    master, slave = sources
    listener = socket.create_server(("127.0.0.1", 0))
    out: dict[str, object] = {}

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            receiver = SecureReceiver(conn, slave, LAB)
            try:
                receiver.accept()
                out["received"] = receive_payload(receiver)
                out["stats"] = receiver.stats
            except Exception as exc:
                out["error"] = exc

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    with socket.create_connection(listener.getsockname()) as sock:
        sender = SecureSender(sock, master, HOSPITAL, LAB, mode, rekey=RekeyPolicy(rekey))
        sender.open()
        stats = send_payload(sender, data, kind="file", name="x.bin", chunk_bytes=chunk)
    thread.join(30)
    listener.close()
    return stats, out


@pytest.mark.parametrize("mode", list(Mode))
def test_round_trip_through_real_kmes(
    sources, mode: Mode, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    data = os.urandom(5000 if mode is Mode.OTP else 20_000)
    spy: list[bytes] = []
    master, _slave = sources
    original = master.enc_keys

    def recording(*args, **kwargs):
        keys = original(*args, **kwargs)
        spy.extend(k.key for k in keys)
        return keys

    master.enc_keys = recording  # type: ignore[method-assign]
    try:
        stats, out = _transfer(sources, data, mode)
    finally:
        del master.enc_keys
    assert "error" not in out, out.get("error")
    assert out["received"].data == data  # type: ignore[union-attr]
    assert out["stats"].key_ids == stats.key_ids  # type: ignore[union-attr]
    assert len(set(stats.key_ids)) == len(stats.key_ids)  # each key ID once
    assert stats.keys_used >= 2 and spy
    for key in spy:  # keys never logged, in any common encoding
        for form in (key.hex(), base64.b64encode(key).decode(), repr(key)[2:-1]):
            assert form not in caplog.text
    assert stats.key_ids[0] in caplog.text


def test_key_id_cannot_be_fetched_twice_from_the_kme(sources) -> None:
    master, slave = sources
    (key,) = master.enc_keys(LAB, 1, 256)
    assert slave.dec_keys(HOSPITAL, [key.key_id])[0].key == key.key
    with pytest.raises(KMERefusedError, match="not found"):
        slave.dec_keys(HOSPITAL, [key.key_id])


def test_missing_kme_is_reported(kms: LocalKMEPair) -> None:
    with socket.socket() as probe:  # a port that nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    issued = kms.pki[HOSPITAL]
    src = kme_key_source(f"https://127.0.0.1:{port}", cert=issued.cert, key=issued.key, ca=kms.ca)
    with pytest.raises(KMEUnreachableError, match="no KME answered"):
        src.status(LAB)


def test_certificate_from_another_ca_is_refused(kms: LocalKMEPair, tmp_path: Path) -> None:
    rogue = init_pki(tmp_path / "rogue", saes=[HOSPITAL])[HOSPITAL]
    src = kme_key_source(kms.urls[0], cert=rogue.cert, key=rogue.key, ca=kms.ca)
    with pytest.raises(KMERefusedError):
        src.enc_keys(LAB, 1, 256)


def test_depleted_pool_raises(tmp_path: Path) -> None:
    with LocalKMEPair(1024, master_sae=HOSPITAL, slave_sae=LAB) as small:
        src = small.master_source()
        with pytest.raises(PoolDepletedError):
            src.enc_keys(LAB, 100, 256)


# -- the CLI, as separate processes ---------------------------------------------------------------


def _cli(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": SRC}
    return subprocess.Popen(
        [sys.executable, "-m", "qkdnet.cli", "app", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cli_transfer(kms: LocalKMEPair, tmp_path: Path, send_extra: list[str], mode: str = "aes-gcm",
                  send_flags: list[str] | None = None, recv_flags: list[str] | None = None):  # fmt: skip
    port = _free_port()
    out = tmp_path / "received.out"
    recv = _cli("receive", *(recv_flags or kms.cli_flags(LAB)), "--listen", f"127.0.0.1:{port}",
                "--out", str(out), "--timeout", "20", "--json")  # fmt: skip
    send = _cli("send", *(send_flags or kms.cli_flags(HOSPITAL)), "--peer-sae-id", LAB,
                "--to", f"127.0.0.1:{port}", "--mode", mode, "--connect-wait", "30", *send_extra, "--json")  # fmt: skip
    s_out, s_err = send.communicate(timeout=60)
    r_out, r_err = recv.communicate(timeout=60)
    return (send.returncode, s_out, s_err), (recv.returncode, r_out, r_err), out


@pytest.mark.parametrize("mode", ["aes-gcm", "hybrid"])
def test_cli_sends_a_file(kms: LocalKMEPair, tmp_path: Path, mode: str) -> None:
    record = tmp_path / "record.json"
    record.write_bytes(os.urandom(300_000))
    (rc_s, s_out, s_err), (rc_r, r_out, r_err), out = _cli_transfer(
        kms,
        tmp_path,
        ["--file", str(record), "--rekey-messages", "2", "--chunk-size", "50000"],
        mode,
    )
    assert rc_s == 0, s_err
    assert rc_r == 0, r_err
    assert out.read_bytes() == record.read_bytes()
    sent, got = json.loads(s_out), json.loads(r_out)
    assert sent["rekeys"] >= 2 and got["key_ids"] == sent["key_ids"]
    assert got["sha256"] and got["bytes"] == 300_000


def test_cli_wrong_certificate_fails_without_output(kms: LocalKMEPair, tmp_path: Path) -> None:
    rogue = init_pki(tmp_path / "rogue", saes=[HOSPITAL])[HOSPITAL]
    flags = kms.cli_flags(HOSPITAL)
    flags[flags.index("--cert") + 1] = str(rogue.cert)
    flags[flags.index("--key") + 1] = str(rogue.key)
    (rc_s, _, s_err), (rc_r, _, r_err), out = _cli_transfer(
        kms, tmp_path, ["--message", "glucose 5.4 mmol/L"], send_flags=flags
    )
    assert rc_s != 0 and "TLS" in s_err and "Traceback" not in s_err
    assert rc_r != 0 and "nothing written" in r_err
    assert not out.exists() and not list(tmp_path.glob(".received*"))


def test_cli_missing_kme_fails_without_output(kms: LocalKMEPair, tmp_path: Path) -> None:
    flags = kms.cli_flags(LAB)
    flags[flags.index("--kme-url") + 1] = f"https://127.0.0.1:{_free_port()}"
    (rc_s, _, s_err), (rc_r, _, r_err), out = _cli_transfer(
        kms, tmp_path, ["--message", "payment batch"], recv_flags=flags
    )
    assert rc_r != 0 and "no KME answered" in r_err and "Traceback" not in r_err
    assert rc_s != 0 and "refused" in s_err
    assert not out.exists()


def test_cli_depleted_pool_fails_without_output(tmp_path: Path) -> None:
    with LocalKMEPair(4096, master_sae=HOSPITAL, slave_sae=LAB) as small:
        big = tmp_path / "big.bin"
        big.write_bytes(os.urandom(20_000))
        (rc_s, _, s_err), (rc_r, _, _r_err), out = _cli_transfer(
            small, tmp_path,
            ["--file", str(big), "--on-shortage", "refuse"], mode="otp",
        )  # fmt: skip
    assert rc_s != 0 and "depleted" in s_err and "Traceback" not in s_err
    assert rc_r != 0
    assert not out.exists()


def test_cli_bad_flag_exits_2(kms: LocalKMEPair) -> None:
    proc = _cli("send", *kms.cli_flags(HOSPITAL), "--peer-sae-id", LAB, "--to", "nowhere",
                "--message", "x")  # fmt: skip
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2 and "--to" in err


@pytest.mark.parametrize("key", sorted(EXAMPLES))
def test_examples_run_through_real_kmes(sources, key: str) -> None:
    master, slave = sources
    summary = run_example(key, master, slave, HOSPITAL, LAB)
    parts = summary["parts"]
    assert parts and all(p["verified"] for p in parts)  # type: ignore[index, union-attr]
    for part in parts:  # type: ignore[union-attr]
        if part["mode"] == "otp":  # pad as long as the message, plus tags
            assert part["key_bits_per_byte"] > 8
        else:
            assert part["key_bits_per_byte"] < 1


def test_whole_session_replayed_to_a_new_responder_is_rejected(sources) -> None:
    """Frames recorded from a finished session name key IDs the KME has already delivered."""
    master, slave = sources
    listener = socket.create_server(("127.0.0.1", 0))
    outcome: list[object] = []

    def serve() -> None:
        for _ in range(2):
            conn, _ = listener.accept()
            with conn:
                receiver = SecureReceiver(conn, slave, LAB)
                try:
                    receiver.accept()
                    outcome.append(receive_payload(receiver).data)
                except Exception as exc:
                    outcome.append(exc)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    relay = FrameRelay(listener.getsockname())
    with socket.create_connection(relay.address) as sock:
        sender = SecureSender(sock, master, HOSPITAL, LAB, Mode.AES_GCM)
        sender.open()
        send_payload(sender, b"transfer 5,000,000 EUR", kind="message")
    relay.thread.join(10)
    with socket.create_connection(listener.getsockname()) as sock:
        sock.sendall(b"".join(relay.frames))  # the attacker's recording, to a fresh responder
        sock.recv(65536)
    thread.join(30)
    listener.close()
    assert outcome[0] == b"transfer 5,000,000 EUR"
    assert isinstance(outcome[1], ChannelError) and "not found" in str(outcome[1])


@pytest.mark.parametrize("mode", list(Mode))
def test_flipped_ciphertext_bit_rejected_with_real_kmes(sources, mode: Mode) -> None:
    master, slave = sources
    listener = socket.create_server(("127.0.0.1", 0))
    outcome: list[object] = []

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            receiver = SecureReceiver(conn, slave, LAB)
            try:
                receiver.accept()
                outcome.append(receive_payload(receiver).data)
            except Exception as exc:
                outcome.append(exc)

    def flip_last_byte_of_second_data(index: int, raw: bytes) -> list[bytes]:
        return [raw[:-1] + bytes([raw[-1] ^ 0x80])] if index == 3 else [raw]

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    relay = FrameRelay(listener.getsockname(), flip_last_byte_of_second_data)
    with socket.create_connection(relay.address) as sock:
        sender = SecureSender(sock, master, HOSPITAL, LAB, mode)
        sender.open()
        with pytest.raises(ChannelError, match="authentication"):
            send_payload(sender, b"A" * 3000, kind="message", chunk_bytes=1000)
        sender.abort()
    thread.join(30)
    listener.close()
    assert isinstance(outcome[0], ChannelError)
