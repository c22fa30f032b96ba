"""``qkdnet app send|receive``: move a file or a message between two SAEs over a secure channel.

Each side talks only to its own site's KME through ETSI GS QKD 014 (mutual TLS: ``--kme-url``,
``--cert``, ``--key``, ``--ca``). ``send`` is the 014 master (``enc_keys``), ``receive`` the slave
(``dec_keys``). Failures (KME unreachable, pool depleted, certificate refused, tampering) print one
line on stderr and exit 1; bad flags exit 2. The receiver writes its output file only after the
whole transfer has been authenticated, so a failure leaves no plaintext behind.
"""

from __future__ import annotations

import os
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from qkdnet.commands.output import CommandError, emit_json, fail

if TYPE_CHECKING:
    from qkdnet.apps import KeySource, Mode

RUNTIME_EXIT = 1

app_cli = typer.Typer(
    name="app",
    help="Secure applications keyed by QKD: send or receive a file or message.",
    no_args_is_help=True,
)

KmeUrl = Annotated[
    str, typer.Option("--kme-url", help="Base URL of this site's KME, https://host:port.")
]
Cert = Annotated[Path, typer.Option("--cert", help="This SAE's certificate (PEM).")]
Key = Annotated[Path, typer.Option("--key", help="This SAE's private key (PEM, mode 0600).")]
Ca = Annotated[Path, typer.Option("--ca", help="CA certificate that signed the KME's certificate.")]
SaeId = Annotated[str, typer.Option("--sae-id", help="This SAE's ID (the CN of --cert).")]
Json = Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")]
Seed = Annotated[int, typer.Option("--seed", help="Unused: live keys come from the KME.")]


def _check_file(flag: str, path: Path) -> None:
    if not path.is_file():
        fail(flag, f"file not found: {path}")


def _address(flag: str, value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        fail(flag, f"expected HOST:PORT with a port in 1..65535 (got {value!r})")
    return host, int(port)


def _runtime_error(message: str) -> CommandError:
    return CommandError(message, exit_code=RUNTIME_EXIT)


def _mode(value: str) -> Mode:
    from qkdnet.apps import Mode

    try:
        return Mode(value)
    except ValueError:
        fail("--mode", f"choose one of {', '.join(m.value for m in Mode)} (got {value!r})")


def _key_source(kme_url: str, cert: Path, key: Path, ca: Path, sae_id: str) -> KeySource:
    from qkdnet.apps.kme import kme_key_source

    if not kme_url.startswith("https://"):
        fail("--kme-url", f"ETSI 014 needs https://HOST:PORT (got {kme_url!r})")
    for flag, path in (("--cert", cert), ("--key", key), ("--ca", ca)):
        _check_file(flag, path)
    from qkdnet.apps import KeySourceError

    try:
        return kme_key_source(kme_url, cert=cert, key=key, ca=ca, sae_id=sae_id)
    except KeySourceError as exc:
        raise _runtime_error(str(exc)) from None


@app_cli.command("send")
def send(
    kme_url: KmeUrl,
    cert: Cert,
    key: Key,
    ca: Ca,
    sae_id: SaeId,
    peer_sae_id: Annotated[str, typer.Option("--peer-sae-id", help="The receiving SAE's ID.")],
    to: Annotated[str, typer.Option("--to", help="HOST:PORT where 'qkdnet app receive' listens.")],
    file: Annotated[Path | None, typer.Option("--file", help="File to send.")] = None,
    message: Annotated[str | None, typer.Option("--message", help="Text message to send.")] = None,
    mode: Annotated[str, typer.Option("--mode", help="aes-gcm, hybrid, otp or mac.")] = "aes-gcm",
    rekey_messages: Annotated[
        int, typer.Option("--rekey-messages", help="New QKD key after this many messages.")
    ] = 1000,
    rekey_seconds: Annotated[
        float, typer.Option("--rekey-seconds", help="New QKD key after this many seconds.")
    ] = 60.0,
    on_shortage: Annotated[
        str, typer.Option("--on-shortage", help="Empty pool at a rekey: 'wait' or 'refuse'.")
    ] = "wait",
    max_wait: Annotated[
        float, typer.Option("--max-wait", help="Longest wait for keys under 'wait' (s).")
    ] = 10.0,
    connect_wait: Annotated[
        float,
        typer.Option("--connect-wait", help="Keep trying to reach the receiver this long (s)."),
    ] = 10.0,
    chunk_size: Annotated[
        int, typer.Option("--chunk-size", help="Bytes per protected message.")
    ] = 64 * 1024,
    json_out: Json = False,
    seed: Seed = 1,
) -> None:
    """Send a file or a message to a receiving SAE."""
    from qkdnet.apps import ChannelError, KeySourceError, RekeyPolicy, SecureSender, ShortagePolicy
    from qkdnet.apps.frames import FrameError
    from qkdnet.apps.transfer import send_payload

    chosen = _mode(mode)
    if (file is None) == (message is None):
        fail("--file/--message", "give exactly one of --file PATH or --message TEXT")
    if file is not None:
        _check_file("--file", file)
    if rekey_messages < 1:
        fail("--rekey-messages", f"must be >= 1 (got {rekey_messages})")
    if not rekey_seconds > 0:
        fail("--rekey-seconds", f"must be > 0 (got {rekey_seconds})")
    if on_shortage not in ("wait", "refuse"):
        fail("--on-shortage", f"choose 'wait' or 'refuse' (got {on_shortage!r})")
    if not max_wait >= 0:
        fail("--max-wait", f"must be >= 0 seconds (got {max_wait})")
    if not connect_wait >= 0:
        fail("--connect-wait", f"must be >= 0 seconds (got {connect_wait})")
    if chunk_size < 1:
        fail("--chunk-size", f"must be >= 1 byte (got {chunk_size})")
    address = _address("--to", to)
    source = _key_source(kme_url, cert, key, ca, sae_id)
    data = file.read_bytes() if file is not None else (message or "").encode()
    sock = _connect(address, to, connect_wait)
    with sock:
        sender = SecureSender(
            sock,
            source,
            sae_id,
            peer_sae_id,
            chosen,
            rekey=RekeyPolicy(rekey_messages, rekey_seconds),
            shortage=ShortagePolicy(on_shortage, max_wait),  # type: ignore[arg-type]
        )
        try:
            sender.open()
            stats = send_payload(
                sender,
                data,
                kind="file" if file is not None else "message",
                name=file.name if file is not None else "",
                chunk_bytes=chunk_size,
            )
        except (ChannelError, KeySourceError, FrameError, OSError) as exc:
            sender.abort()
            raise _runtime_error(f"send failed: {exc}") from None
    summary = {
        "sent": "file" if file is not None else "message",
        "name": file.name if file is not None else None,
        "bytes": len(data),
        "to": to,
        "peer_sae_id": peer_sae_id,
        **stats.as_dict(),
        "key_bits_per_byte": stats.key_bits_used / len(data) if data else None,
    }
    if json_out:
        emit_json(summary)
    else:
        sys.stdout.write(
            f"sent {len(data)} bytes to {peer_sae_id} ({stats.mode}): {stats.messages} messages, "
            f"{stats.keys_used} QKD keys ({stats.key_bits_used} bits), {stats.rekeys} rekeys\n"
        )


def _connect(address: tuple[str, int], shown: str, wait_s: float) -> socket.socket:
    """Connect to the receiver, retrying for up to ``wait_s`` seconds (it may start later)."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return socket.create_connection(address, timeout=30)
        except OSError as exc:
            if time.monotonic() >= deadline:
                raise _runtime_error(
                    f"cannot connect to the receiver at {shown}: {exc.strerror or exc} "
                    f"(waited {wait_s:g} s; is 'qkdnet app receive' listening there?)"
                ) from None
            time.sleep(0.2)


def _write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a 0600 temporary file renamed into place."""
    fd, tmp = tempfile.mkstemp(dir=path.parent or Path("."), prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@app_cli.command("receive")
def receive(
    kme_url: KmeUrl,
    cert: Cert,
    key: Key,
    ca: Ca,
    sae_id: SaeId,
    listen: Annotated[
        str, typer.Option("--listen", help="HOST:PORT to listen on.")
    ] = "127.0.0.1:9400",
    out: Annotated[
        Path | None, typer.Option("--out", help="Write the received content here (else stdout).")
    ] = None,
    peer_sae_id: Annotated[
        str | None, typer.Option("--peer-sae-id", help="Accept only this sending SAE.")
    ] = None,
    mode: Annotated[
        list[str] | None, typer.Option("--mode", help="Accept only these modes (default: all).")
    ] = None,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Give up if no sender connects within this (s).")
    ] = 120.0,
    max_bytes: Annotated[
        int, typer.Option("--max-bytes", help="Largest transfer accepted (held in memory).")
    ] = 256 * 1024 * 1024,
    json_out: Json = False,
    seed: Seed = 1,
) -> None:
    """Receive one file or message from a sending SAE; output only after full authentication."""
    from qkdnet.apps import ChannelError, KeySourceError, Mode, SecureReceiver
    from qkdnet.apps.frames import FrameError
    from qkdnet.apps.transfer import receive_payload

    modes = tuple(_mode(m) for m in mode) if mode else tuple(Mode)
    if not timeout > 0:
        fail("--timeout", f"must be > 0 seconds (got {timeout})")
    if max_bytes < 1:
        fail("--max-bytes", f"must be >= 1 (got {max_bytes})")
    if out is not None and (
        out.is_dir() or not (out.parent if str(out.parent) else Path(".")).is_dir()
    ):
        fail("--out", f"not a writable file path in an existing directory: {out}")
    host, port = _address("--listen", listen)
    source = _key_source(kme_url, cert, key, ca, sae_id)
    try:
        listener = socket.create_server((host, port))
    except OSError as exc:
        raise _runtime_error(f"cannot listen on {listen}: {exc.strerror or exc}") from None
    with listener:
        listener.settimeout(timeout)
        try:
            conn, _ = listener.accept()
        except TimeoutError:
            raise _runtime_error(f"no sender connected within {timeout:g} s") from None
    with conn:
        conn.settimeout(timeout)
        receiver = SecureReceiver(conn, source, sae_id, modes=modes, expect_peer=peer_sae_id)
        try:
            receiver.accept()
            received = receive_payload(receiver, max_bytes=max_bytes)
        except (ChannelError, KeySourceError, FrameError, OSError) as exc:
            raise _runtime_error(f"receive failed, nothing written: {exc}") from None
    if out is not None:
        _write_atomically(out, received.data)
    summary = {
        "received": received.kind,
        "name": received.name or None,
        "bytes": len(received.data),
        "sha256": received.sha256,
        "from_sae_id": receiver.peer_sae_id,
        "out": str(out) if out is not None else None,
        **receiver.stats.as_dict(),
    }
    if json_out:
        if out is None and received.kind == "message":
            summary["message"] = received.data.decode("utf-8", errors="replace")
        emit_json(summary)
    elif out is None:
        sys.stdout.buffer.write(received.data)
        if received.kind == "message":
            sys.stdout.write("\n")
    else:
        sys.stdout.write(
            f"received {len(received.data)} bytes from {receiver.peer_sae_id} ({receiver.stats.mode}) "
            f"into {out}\n"
        )


def register(app: typer.Typer) -> None:
    """Attach ``app send`` and ``app receive`` to the ``qkdnet`` app."""
    app.add_typer(app_cli, name="app")
