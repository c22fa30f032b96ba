"""Where a PostgreSQL take looks for free units: above the units taken before.

The PostgreSQL take index holds every unit of a link, used ones too (a take then changes no
indexed column, so its update is HOT: no index write; see :mod:`qkdnet.kms.store`). Read from
the lowest ID on, a take would step over every unit used so far — a cost that grows with each
take. So each process remembers, per link, the highest row ID a committed take erased (the
*floor*: takes pick the lowest free IDs above it, so below it every owned unit is used or held
by a take in flight) and the row IDs that takes in flight gave back when they rolled back (the
only free units that can lie below the floor). A take reads those and the units above the floor;
so does the count of available units (Get status).

A new process starts with a floor of 0 (its first take reads the whole link once). The floor
only decides where to look, never whether a unit may be taken: that is the row lock and the
``state`` check of the statement itself, so an error here costs unused units, not a second
delivery.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable


class TakeFrontier:
    """Floor and given-back row IDs per link, shared by the take threads of one store."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._floor: dict[str, int] = {}
        self._back: dict[str, set[int]] = {}

    def where(self, link: str) -> tuple[int, list[int]]:
        """``(floor, given-back row IDs)`` of ``link``: look at those IDs and above the floor."""
        with self._lock:
            return self._floor.get(link, 0), sorted(self._back.get(link, ()))

    def taken(self, link: str, row_ids: Iterable[int]) -> None:
        """A take that erased ``row_ids`` committed."""
        ids = set(row_ids)
        if not ids:
            return
        with self._lock:
            self._floor[link] = max(self._floor.get(link, 0), max(ids))
            back = self._back.get(link)
            if back:
                back -= ids

    def given_back(self, link: str, row_ids: Iterable[int]) -> None:
        """A take that had picked ``row_ids`` rolled back: they are free again."""
        ids = set(row_ids)
        if ids:
            with self._lock:
                self._back.setdefault(link, set()).update(ids)
