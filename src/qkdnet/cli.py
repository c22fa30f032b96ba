"""The ``qkdnet`` command: one typer app assembled from the modules of ``qkdnet.commands``.

Every command takes ``--json`` (one JSON object on stdout, nothing else) and ``--seed``.
Usage errors print one line on stderr and exit with status 2, never a traceback.
"""

from __future__ import annotations

import sys

import typer

from qkdnet.commands.output import USAGE_EXIT, CommandError

app = typer.Typer(
    name="qkdnet",
    help="Metropolitan QKD networks in software: key rates, simulation, post-processing, KMEs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """qkdnet: metropolitan QKD networks in software (see 'qkdnet COMMAND --help')."""


def _register() -> None:
    """Attach every sub-command; each lives in its own module under ``qkdnet.commands``."""
    from qkdnet.commands import app as app_command
    from qkdnet.commands import bench, demo, keyrate, kme, link, pki, plan, simulate, sweep

    for module in (bench, demo, keyrate, kme, link, pki, plan, simulate, sweep, app_command):
        module.register(app)


_register()


def _click_error_kind(exc: BaseException) -> str | None:
    """Name of the click exception family of ``exc`` (typer vendors click, so match by name)."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    for kind in ("NoArgsIsHelpError", "UsageError", "ClickException"):
        if kind in names:
            return kind
    return None


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point: run the app, turning user errors into one-line messages."""
    args = sys.argv[1:] if argv is None else argv
    try:
        result = app(args=args, prog_name="qkdnet", standalone_mode=False)
    except CommandError as exc:
        sys.stderr.write(f"qkdnet: error: {exc}\n")
        return exc.exit_code
    except typer.Exit as exc:
        return int(getattr(exc, "exit_code", 0) or 0)
    except typer.Abort:
        sys.stderr.write("qkdnet: aborted\n")
        return 130
    except KeyboardInterrupt:
        sys.stderr.write("qkdnet: interrupted\n")
        return 130
    except Exception as exc:
        kind = _click_error_kind(exc)
        if kind is None:
            raise
        if kind == "NoArgsIsHelpError":
            exc.show()  # type: ignore[attr-defined]
            return 0
        message = " ".join(exc.format_message().split())  # type: ignore[attr-defined]
        sys.stderr.write(f"qkdnet: error: {message} (see 'qkdnet --help')\n")
        return int(getattr(exc, "exit_code", USAGE_EXIT))
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    raise SystemExit(main())
