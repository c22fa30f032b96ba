"""The three ready examples of the Milan programme's service layer: health, finance, administration.

Each example is one transfer between two SAEs over the secure channel, keyed by their own KMEs
through ETSI GS QKD 014. The payloads are synthetic (no real personal or financial data):

``health-record``   a hospital sends a patient's lab order and history to an analysis lab, in
                    ``hybrid`` mode: health data must stay confidential for decades, so the AES key
                    is CatKDF(QKD key, ML-KEM-768 secret) and survives a break of either.
``payment-batch``   a bank sends a batch of payment instructions to the exchange in ``aes-gcm``
                    mode with a rekey every 8 messages, then the batch's settlement order — small
                    and high-value — in ``otp`` mode (one-time pad, key consumption shown).
``admin-document``  one administration sends a signed-off decree to another in ``mac`` mode: the
                    text is public but must arrive unaltered (Wegman–Carter tags, no encryption).

``run_example`` works with any pair of :class:`KeySource` (the local KME pair of the example
scripts, or the KMEs of a running network in ``qkdnet demo``).
"""

from __future__ import annotations

import json
import random
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass

from qkdnet.apps.channel import Mode, RekeyPolicy, SecureReceiver, SecureSender
from qkdnet.apps.keysource import KeySource
from qkdnet.apps.transfer import Received, receive_payload, send_payload


@dataclass(frozen=True)
class Part:
    """One transfer of an example: mode, rekey interval, payload name and content."""

    mode: Mode
    name: str
    data: bytes
    rekey_messages: int = 1000
    chunk_bytes: int = 4096


@dataclass(frozen=True)
class Example:
    """A named exchange between a sending and a receiving organisation."""

    key: str
    title: str
    sender: str
    receiver: str
    parts: Callable[[random.Random], list[Part]]


def _health(rng: random.Random) -> list[Part]:
    record = {
        "resourceType": "Bundle",
        "patient": {"id": f"P-{rng.randrange(10**6):06d}", "birthYear": rng.randrange(1930, 2010)},
        "order": {"tests": ["HbA1c", "creatinine", "TSH"], "priority": "routine"},
        "history": [
            {
                "date": f"2026-{m:02d}-{rng.randrange(1, 28):02d}",
                "glucose_mmol_l": round(rng.uniform(4, 9), 1),
            }
            for m in range(1, 13)
        ]
        * 40,
    }
    data = json.dumps(record, indent=1).encode()
    return [Part(Mode.HYBRID, "lab-order.json", data, rekey_messages=4)]


def _payments(rng: random.Random) -> list[Part]:
    lines = ["end_to_end_id;debtor_iban;creditor_iban;amount_eur;value_date"]
    for i in range(800):
        lines.append(
            f"E2E{i:06d};IT60X0542811101{rng.randrange(10**12):012d};"
            f"IT02A0301503200{rng.randrange(10**12):012d};{rng.randrange(100, 10**7) / 100:.2f};2026-11-24"
        )
    batch = "\n".join(lines).encode()
    settle = json.dumps({"batch_sha256_follows": True, "net_eur": "1843201.55", "cutoff": "16:00"})
    return [
        Part(Mode.AES_GCM, "payment-batch.csv", batch, rekey_messages=8),
        Part(Mode.OTP, "settlement-order.json", settle.encode()),
    ]


def _decree(rng: random.Random) -> list[Part]:
    text = (
        f"DECREE n. {rng.randrange(1000)}/2026\nThe Municipality of Milan and the Lombardy Region agree that the "
        "attached register of building permits is authentic and complete.\n"
        + "".join(f"permit {i:05d}: granted\n" for i in range(2000))
    )
    return [Part(Mode.MAC, "decree.txt", text.encode(), rekey_messages=1000, chunk_bytes=16384)]


EXAMPLES: dict[str, Example] = {
    e.key: e
    for e in (
        Example("health-record", "Health record, hospital -> lab", "hospital", "lab", _health),
        Example("payment-batch", "Payment batch, bank -> exchange", "bank", "exchange", _payments),
        Example(
            "admin-document", "Document between two administrations", "comune", "regione", _decree
        ),
    )
}


def run_part(
    part: Part, master: KeySource, slave: KeySource, master_sae: str, slave_sae: str
) -> dict[str, object]:
    """Send one part over a fresh localhost session; returns what each side saw."""
    listener = socket.create_server(("127.0.0.1", 0))
    result: dict[str, object] = {}

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            receiver = SecureReceiver(conn, slave, slave_sae)
            try:
                receiver.accept()
                result["received"] = receive_payload(receiver)
            except Exception as exc:
                result["error"] = exc

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    with socket.create_connection(listener.getsockname()) as sock:
        sender = SecureSender(
            sock, master, master_sae, slave_sae, part.mode, rekey=RekeyPolicy(part.rekey_messages)
        )
        try:
            sender.open()
            stats = send_payload(
                sender, part.data, kind="file", name=part.name, chunk_bytes=part.chunk_bytes
            )
        except Exception:
            sender.abort()
            raise
        finally:
            thread.join(30)
            listener.close()
    if "error" in result:
        raise result["error"]  # type: ignore[misc]
    got = result["received"]
    assert isinstance(got, Received)
    return {
        "name": part.name,
        "mode": part.mode.value,
        "bytes": len(part.data),
        "verified": got.data == part.data,
        "sha256": got.sha256,
        "messages": stats.messages,
        "keys_used": stats.keys_used,
        "key_bits_used": stats.key_bits_used,
        "key_bits_per_byte": stats.key_bits_used / max(1, len(part.data)),
        "rekeys": stats.rekeys,
    }


def run_example(
    key: str,
    master: KeySource,
    slave: KeySource,
    master_sae: str,
    slave_sae: str,
    seed: int = 1,
) -> dict[str, object]:
    """Run example ``key`` between the two SAEs; a summary with key consumption per part."""
    if key not in EXAMPLES:
        raise KeyError(f"unknown example {key!r}; choose one of {', '.join(EXAMPLES)}")
    example = EXAMPLES[key]
    parts = example.parts(random.Random(seed))
    return {
        "example": key,
        "title": example.title,
        "from": master_sae,
        "to": slave_sae,
        "parts": [run_part(p, master, slave, master_sae, slave_sae) for p in parts],
    }


def run_script(key: str, argv: list[str]) -> int:
    """Entry point of the ``examples/*.py`` scripts: two real KMEs on 127.0.0.1 (mutual TLS, a
    fresh PKI in a temporary directory) with a filled link, then example ``key`` through each
    side's own KME; prints a per-part summary, or one JSON object with ``--json``."""
    from qkdnet.apps.localkms import LocalKMEPair

    example = EXAMPLES[key]
    master_sae, slave_sae = f"{example.sender}-sae", f"{example.receiver}-sae"
    with LocalKMEPair(1 << 20, master_sae=master_sae, slave_sae=slave_sae) as kms:
        summary = run_example(key, kms.master_source(), kms.slave_source(), master_sae, slave_sae)
    if "--json" in argv:
        print(json.dumps(summary))
        return 0
    print(f"{example.title}: {summary['from']} -> {summary['to']}")
    for part in summary["parts"]:
        print(
            f"  {part['name']:<24} {part['mode']:<8} {part['bytes']:>8} bytes  "
            f"verified={part['verified']}  keys={part['keys_used']} ({part['key_bits_used']} "
            f"bits, {part['key_bits_per_byte']:.3g} bits/byte)  rekeys={part['rekeys']}"
        )
    return 0
