"""The audit log of one KME: one JSON object per line, never key material.

Each line says when, which event (``enc_keys``, ``dec_keys``, ``status``, ``grant``, ``ingest``,
``relayed_in``), who asked (SAE ID, KME ID or QKD module from its certificate), the peer SAE and
KME, the key IDs and sizes involved, and the result with its HTTP status.
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


class AuditLog:
    """Append-only JSON-lines audit log (``path=None`` keeps only the last lines in memory)."""

    def __init__(self, path: Path | None, kme_id: str, keep: int = 1000) -> None:
        self.path = path
        self.kme_id = kme_id
        self._lock = threading.Lock()
        self._keep = keep
        self.recent: list[dict[str, Any]] = []
        self._handle = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = open(path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115

    def record(self, event: str, *, result: str, status: int, **fields: Any) -> None:
        """Write one line; ``fields`` are who/peer_sae/peer_kme/key_ids/size/number/message."""
        entry = {
            "time": datetime.now(UTC).isoformat(timespec="microseconds"),
            "kme": self.kme_id,
            "event": event,
            **{k: v for k, v in fields.items() if v is not None},
            "result": result,
            "status": status,
        }
        # the line only when there is a file (a batched delivery lists hundreds of key IDs)
        line = json.dumps(entry, separators=(",", ":")) if self._handle is not None else ""
        with self._lock:
            self.recent.append(entry)
            if len(self.recent) > self._keep:
                del self.recent[: len(self.recent) - self._keep]
            if self._handle is not None:
                self._handle.write(line + "\n")

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            if self._handle is not None:
                self._handle.close()
                self._handle = None
