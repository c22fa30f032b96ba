"""Shared conventions of every ``qkdnet`` command: ``--json`` output and one-line usage errors.

Bad input must end in a single line on stderr that names the flag and the allowed values, with
exit status 2 and no traceback (the same status click uses for its own usage errors).
"""

from __future__ import annotations

import json
import math
import sys
from typing import Any, NoReturn

import numpy as np

USAGE_EXIT = 2


class CommandError(Exception):
    """A user error in a flag or input file; ``qkdnet.cli.main`` prints it on one line, exit 2."""

    def __init__(self, message: str, exit_code: int = USAGE_EXIT) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def fail(flag: str, message: str) -> NoReturn:
    """Raise a :class:`CommandError` naming ``flag`` (e.g. ``--distance``) and what is allowed."""
    raise CommandError(f"invalid value for {flag}: {message}")


def _plain(value: Any) -> Any:
    """Convert numpy scalars/arrays and non-finite floats into JSON-safe Python values."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def emit_json(payload: dict[str, Any]) -> None:
    """Print exactly one JSON object on stdout (the ``--json`` contract of every command)."""
    sys.stdout.write(json.dumps(_plain(payload), sort_keys=False) + "\n")
    sys.stdout.flush()
