"""``qkdnet kme``: run a KME (``serve --config FILE``) or call one as an SAE
(``get-key``, ``get-key-with-ids``, ``status``)."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Annotated, Any

import typer

from qkdnet.commands.output import CommandError, emit_json, fail

kme_app = typer.Typer(help="Key Management Entity (ETSI GS QKD 014).", no_args_is_help=True)

Url = Annotated[str, typer.Option("--url", help="KME base URL, e.g. https://127.0.0.1:8443.")]
Cert = Annotated[Path, typer.Option("--cert", help="SAE client certificate (PEM).")]
Key = Annotated[Path, typer.Option("--key", help="SAE private key (PEM).")]
Ca = Annotated[Path, typer.Option("--ca", help="CA certificate of the network (PEM).")]
Json = Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")]
Seed = Annotated[int, typer.Option("--seed", help="Unused: keys come from the KME.")]


@kme_app.command("serve")
def serve(
    config: Annotated[Path, typer.Option("--config", help="KME config file (YAML or JSON).")],
    json_out: Json = False,
    seed: Seed = 0,
) -> None:
    """Run one KME until interrupted."""
    from qkdnet.kms.config import ConfigError, load_config
    from qkdnet.kms.service import serve as run

    try:
        cfg = load_config(config)
    except ConfigError as exc:
        raise CommandError(f"invalid value for --config: {exc}") from None
    for name in ("cert", "key", "ca"):
        if not getattr(cfg.tls, name).exists():
            fail("--config", f"{config}: field tls.{name}: file {getattr(cfg.tls, name)} not found")
    run(cfg)


def _client(url: str, cert: Path, key: Path, ca: Path) -> Any:
    from qkdnet.kms.client import KMEClient

    for flag, path in (("--cert", cert), ("--key", key), ("--ca", ca)):
        if not path.exists():
            fail(flag, f"file {path} not found")
    if not url.startswith("https://"):
        fail("--url", f"must start with https:// (got {url!r})")
    return KMEClient(url, cert=cert, key=key, ca=ca)


def _run(call: Any) -> Any:
    import httpx

    from qkdnet.kms.client import KMEClientError

    try:
        return call()
    except KMEClientError as exc:
        raise CommandError(f"KME refused ({exc.status}): {exc.message}", exit_code=1) from None
    except httpx.HTTPError as exc:
        raise CommandError(f"cannot reach the KME: {exc}", exit_code=1) from None


def _emit_keys(keys: list[Any], json_out: bool) -> None:
    items = [{"key_ID": k.key_id, "key": base64.b64encode(k.key).decode()} for k in keys]
    if json_out:
        emit_json({"keys": items})
    else:
        for item in items:
            typer.echo(f"{item['key_ID']} {item['key']}")


@kme_app.command("get-key")
def get_key(
    url: Url, cert: Cert, key: Key, ca: Ca,
    slave: Annotated[str, typer.Option("--slave", help="Slave SAE ID.")],
    number: Annotated[int, typer.Option("--number", min=1)] = 1,
    size: Annotated[int | None, typer.Option("--size", help="Key size in bits.")] = None,
    also: Annotated[list[str] | None, typer.Option("--additional-slave")] = None,
    json_out: Json = False, seed: Seed = 0,
) -> None:  # fmt: skip
    """Get key (enc_keys) as master SAE for SLAVE."""
    with _client(url, cert, key, ca) as client:
        keys = _run(lambda: client.get_key(slave, number, size, also or ()))
    _emit_keys(keys, json_out)


@kme_app.command("get-key-with-ids")
def get_key_with_ids(
    url: Url, cert: Cert, key: Key, ca: Ca,
    master: Annotated[str, typer.Option("--master", help="Master SAE ID.")],
    key_id: Annotated[list[str], typer.Option("--key-id", help="key_ID (repeatable).")],
    json_out: Json = False, seed: Seed = 0,
) -> None:  # fmt: skip
    """Get key with key IDs (dec_keys) as slave SAE."""
    with _client(url, cert, key, ca) as client:
        keys = _run(lambda: client.get_key_with_ids(master, key_id))
    _emit_keys(keys, json_out)


@kme_app.command("status")
def status(
    url: Url, cert: Cert, key: Key, ca: Ca,
    slave: Annotated[str, typer.Option("--slave", help="Slave SAE ID.")],
    json_out: Json = False, seed: Seed = 0,
) -> None:  # fmt: skip
    """Get status for keys shared with SLAVE."""
    with _client(url, cert, key, ca) as client:
        result = _run(lambda: client.status(slave))
    if json_out:
        emit_json(result)
    else:
        for k, v in result.items():
            typer.echo(f"{k}: {v}")


def register(app: typer.Typer) -> None:
    """Attach ``kme`` to the ``qkdnet`` app."""
    app.add_typer(kme_app, name="kme")
