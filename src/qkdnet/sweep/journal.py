"""Where a study's rows live while it runs: an append-only journal beside the results table.

Every finished task is appended at once as one JSON line (``<out>.journal.jsonl``) and flushed,
so an interrupted study loses at most the tasks in flight (and, if the machine itself crashes,
the last second: the file is synced to disk once a second). A rerun reads the journal and
the results table (Parquet or CSV, by suffix) and skips every task whose key is there without an
error; failed tasks run again. When the study completes, the table is written whole and the
journal removed.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pandas as pd

TABLE_SUFFIXES = (".parquet", ".csv")
SYNC_EVERY_S = 1.0

Row = dict[str, Any]


def check_table_path(path: Path) -> None:
    """Require a ``.parquet`` or ``.csv`` output path in an existing directory."""
    if path.suffix.lower() not in TABLE_SUFFIXES:
        raise ValueError(f"must end in .parquet or .csv (got {path.name!r})")
    if not path.parent.exists():
        raise ValueError(f"directory {path.parent} does not exist")


def read_table(path: Path) -> pd.DataFrame:
    """Read a results table written by :func:`write_table`."""
    if path.suffix.lower() == ".parquet":
        return pd.read_parquet(path)
    return pd.read_csv(path)


def write_table(table: pd.DataFrame, path: Path) -> None:
    """Write the results table atomically (a temporary file renamed over the old one)."""
    tmp = path.with_name(path.name + ".tmp")
    if path.suffix.lower() == ".parquet":
        table.to_parquet(tmp, index=False)
    else:
        table.to_csv(tmp, index=False)
    os.replace(tmp, path)


class Journal:
    """Append-only JSON-lines record of finished tasks, one row per line, keyed by ``task``."""

    def __init__(self, table_path: Path) -> None:
        self.path = table_path.with_name(table_path.name + ".journal.jsonl")
        self._file: Any = None
        self._synced = 0.0

    def load(self) -> dict[str, Row]:
        """Rows recorded so far, by task key (a torn last line from a crash is ignored)."""
        rows: dict[str, Row] = {}
        if not self.path.exists():
            return rows
        with self.path.open() as fh:
            for line in fh:
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue
                rows[row["task"]] = row
        return rows

    def append(self, row: Row) -> None:
        """Record one finished task: flushed at once (survives the process being killed), synced
        to disk at most every ``SYNC_EVERY_S`` and on close (survives a machine crash)."""
        if self._file is None:
            self._file = self.path.open("a")
        self._file.write(json.dumps(row, default=str) + "\n")
        self._file.flush()
        now = time.monotonic()
        if now - self._synced >= SYNC_EVERY_S:
            os.fsync(self._file.fileno())
            self._synced = now

    def close(self) -> None:
        """Sync and close the journal file (it stays on disk)."""
        if self._file is not None:
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None

    def remove(self) -> None:
        """Delete the journal once the complete table is written."""
        self.close()
        self.path.unlink(missing_ok=True)


def previous_rows(table_path: Path, journal: Journal) -> dict[str, Row]:
    """Rows from an earlier run of the study: the old table, then the journal on top."""
    rows: dict[str, Row] = {}
    if table_path.exists():
        old = read_table(table_path)
        if "task" in old.columns:
            for record in old.to_dict(orient="records"):
                rows[str(record["task"])] = record
    rows.update(journal.load())
    return rows
