"""``qkdnet pki init``: a CA plus certificates for KMEs, SAEs and QKD modules (keys mode 0600)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from qkdnet.commands.output import emit_json, fail

pki_app = typer.Typer(help="Certificates for KMEs, SAEs and QKD modules.", no_args_is_help=True)


@pki_app.command("init")
def init(
    directory: Annotated[
        Path, typer.Option("--dir", help="Directory for ca.pem and <ID>.pem/.key.")
    ],
    kme: Annotated[
        list[str] | None, typer.Option("--kme", help="KME ID (server+client cert).")
    ] = None,
    sae: Annotated[list[str] | None, typer.Option("--sae", help="SAE ID (client cert).")] = None,
    module: Annotated[list[str] | None, typer.Option("--module", help="QKD module ID.")] = None,
    host: Annotated[list[str] | None, typer.Option("--host", help="Extra SAN host/IP.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
    seed: Annotated[int, typer.Option("--seed", help="Unused: keys come from the OS.")] = 0,
) -> None:
    """Create the CA in DIR (or reuse it) and issue one certificate per ID (CN = ID)."""
    from qkdnet.kms.pki import init_pki

    if not (kme or sae or module):
        fail("--kme/--sae/--module", "name at least one entity to certify")
    try:
        issued = init_pki(directory, kmes=kme or [], saes=sae or [], modules=module or [],
                          hosts=host or [])  # fmt: skip
    except ValueError as exc:
        fail("--kme/--sae/--module", str(exc))
    except OSError as exc:
        fail("--dir", f"cannot write {directory}: {exc.strerror}")
    result = {
        "ca": str(directory / "ca.pem"),
        "issued": {k: {"cert": str(v.cert), "key": str(v.key)} for k, v in issued.items()},
    }
    if json_out:
        emit_json(result)
    else:
        for entity, paths in result["issued"].items():
            typer.echo(f"{entity}: {paths['cert']} {paths['key']}")


def register(app: typer.Typer) -> None:
    """Attach ``pki`` to the ``qkdnet`` app."""
    app.add_typer(pki_app, name="pki")
