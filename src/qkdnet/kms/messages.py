"""ETSI GS QKD 014 request objects: parse and check what an SAE sent, with the spec's messages.

Everything an SAE can send is checked here before the KME touches its store, and every
refusal is a :class:`KMEError` whose ``message`` is the spec's exact text where the spec has one
(see ``references/etsi-qkd-014.md``) and otherwise says what is wrong and what is allowed.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

ID_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
# canonical lower-case UUID text: accepted as is, without building a uuid.UUID (hot path)
CANONICAL_UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

MSG_SIZE_MULTIPLE = "size shall be a multiple of 8"
MSG_EXT_UNSUPPORTED = "not all extension_mandatory parameters are supported"
MSG_NOT_FOUND = "one or more keys specified are not found on KME"

KEY_REQUEST_FIELDS = (
    "number",
    "size",
    "additional_slave_SAE_IDs",
    "extension_mandatory",
    "extension_optional",
)


class KMEError(Exception):
    """A refused request: HTTP ``status`` with the JSON error body ``{"message", "details"}``."""

    def __init__(
        self, status: int, message: str, details: list[dict[str, Any]] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details

    def body(self) -> dict[str, Any]:
        """The ETSI Error object."""
        out: dict[str, Any] = {"message": self.message}
        if self.details:
            out["details"] = self.details
        return out


def bad(message: str, details: list[dict[str, Any]] | None = None) -> KMEError:
    """A 400 Bad Request."""
    return KMEError(400, message, details)


def _show(value: Any) -> str:
    """Short repr of a user value for an error message."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def check_id(value: Any, what: str) -> str:
    """An SAE or KME ID: a string matching ``[A-Za-z0-9_.-]{1,64}``."""
    if not isinstance(value, str) or not ID_RE.fullmatch(value):
        raise bad(f"{what} must be 1 to 64 characters from A-Z a-z 0-9 _ . - (got {_show(value)})")
    return value


def check_key_id(value: Any) -> str:
    """A key_ID: a UUID string, returned in canonical lower-case form."""
    if not isinstance(value, str) or len(value) > 64:
        raise bad(f"key_ID must be a UUID string (got {_show(value)})")
    if CANONICAL_UUID_RE.fullmatch(value):
        return value
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise bad(f"key_ID must be a UUID string (got {_show(value)})") from None


@dataclass(frozen=True)
class Limits:
    """What a KME serves; reported by Get status."""

    key_size: int = 256
    min_key_size: int = 64
    max_key_size: int = 8192
    max_key_per_request: int = 1024
    max_key_count: int = 1_000_000
    max_sae_id_count: int = 4


@dataclass(frozen=True)
class KeyRequest:
    """A checked ETSI Key request."""

    number: int
    size: int
    additional_slaves: tuple[str, ...] = ()


def _int(value: Any, name: str, low: int, high: int, unit: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad(f"{name} must be an integer from {low} to {high}{unit} (got {_show(value)})")
    if name == "size" and value % 8:
        raise bad(MSG_SIZE_MULTIPLE)
    if not low <= value <= high:
        raise bad(f"{name} must be from {low} to {high}{unit} (got {_show(value)})")
    return value


def _extensions(value: Any, name: str) -> list[dict[str, Any]]:
    """``extension_mandatory``/``extension_optional``: an array of objects (name/value pairs)."""
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise bad(f"{name} must be an array of objects of name/value pairs")
    return value


def parse_key_request(body: Any, limits: Limits) -> KeyRequest:
    """Check a Key request (POST body, or the GET query turned into a dict)."""
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise bad("the key request must be a JSON object")
    unknown = [k for k in body if k not in KEY_REQUEST_FIELDS]
    if unknown:
        raise bad(
            f"unknown field {_show(unknown[0])} in key request; allowed: "
            + ", ".join(KEY_REQUEST_FIELDS)
        )
    number = _int(body.get("number", 1), "number", 1, limits.max_key_per_request)
    size = _int(
        body.get("size", limits.key_size),
        "size",
        limits.min_key_size,
        limits.max_key_size,
        " bits",
    )
    mandatory = _extensions(body.get("extension_mandatory"), "extension_mandatory")
    _extensions(body.get("extension_optional"), "extension_optional")
    if mandatory:
        names = [name for ext in mandatory for name in ext] or ["(empty object)"]
        raise bad(MSG_EXT_UNSUPPORTED, [{"extension_mandatory_unsupported": n} for n in names])
    extra = body.get("additional_slave_SAE_IDs", [])
    if extra is None:
        extra = []
    if not isinstance(extra, list):
        raise bad("additional_slave_SAE_IDs must be an array of SAE ID strings")
    if len(extra) > limits.max_sae_id_count:
        raise bad(
            f"additional_slave_SAE_IDs may name at most {limits.max_sae_id_count} SAEs "
            f"(max_SAE_ID_count; got {len(extra)})"
        )
    slaves = tuple(check_id(s, "each additional_slave_SAE_ID") for s in extra)
    if len(set(slaves)) != len(slaves):
        raise bad("additional_slave_SAE_IDs must not repeat an SAE ID")
    return KeyRequest(number=number, size=size, additional_slaves=slaves)


def query_key_request(params: Sequence[tuple[str, str]]) -> dict[str, int]:
    """Turn the GET enc_keys query (only ``number`` and ``size``) into a Key request dict."""
    out: dict[str, int] = {}
    for name, value in params:
        if name not in ("number", "size"):
            raise bad(
                f"GET enc_keys accepts only the query parameters number and size (got {_show(name)}); "
                "use POST for anything else"
            )
        if name in out:
            raise bad(f"query parameter {name} given twice")
        if not re.fullmatch(r"[0-9]{1,12}", value):
            raise bad(f"{name} must be a positive integer (got {_show(value)})")
        out[name] = int(value)
    return out


def parse_key_ids(body: Any, limits: Limits) -> list[str]:
    """Check a Key IDs object; returns the canonical key_IDs in request order."""
    if not isinstance(body, dict):
        raise bad("the key IDs request must be a JSON object with a key_IDs array")
    unknown = [k for k in body if k not in ("key_IDs", "key_IDs_extension")]
    if unknown:
        raise bad(f"unknown field {_show(unknown[0])}; allowed: key_IDs, key_IDs_extension")
    items = body.get("key_IDs")
    if not isinstance(items, list) or not items:
        raise bad("key_IDs must be a non-empty array of objects with a key_ID")
    if len(items) > limits.max_key_per_request:
        raise bad(
            f"key_IDs may hold at most {limits.max_key_per_request} entries (got {len(items)})"
        )
    ext = body.get("key_IDs_extension")
    if ext is not None and not isinstance(ext, dict):
        raise bad("key_IDs_extension must be an object")
    ids: list[str] = []
    for item in items:
        if not isinstance(item, dict) or "key_ID" not in item:
            raise bad("each entry of key_IDs must be an object with a key_ID")
        if any(k not in ("key_ID", "key_ID_extension") for k in item):
            raise bad("entries of key_IDs may hold only key_ID and key_ID_extension")
        ids.append(check_key_id(item["key_ID"]))
    if len(set(ids)) != len(ids):
        raise bad("key_IDs must not repeat a key_ID")
    return ids


def query_key_ids(params: Sequence[tuple[str, str]]) -> list[str]:
    """The GET dec_keys query: exactly one ``key_ID``."""
    if len(params) != 1 or params[0][0] != "key_ID":
        raise bad("GET dec_keys takes exactly one query parameter key_ID; use POST for more")
    return [check_key_id(params[0][1])]
