"""The key store of one KME: link key units and the grants waiting for slave SAEs.

Two tables (SQLAlchemy Core, SQLite or PostgreSQL):

* ``kms_units`` — key material of each link, as fixed-size *units* with the ID the QKD module
  gave them. ``link`` is the peer KME of the link (or the source KME of a relayed key). A unit is
  ``owned`` when this KME may hand it out on its own initiative (enc_keys, one-time pads); the
  other end of the link owns the others, so the two KMEs never pick the same unit. A unit goes
  ``AVAILABLE -> GRANTED -> USED`` or ``AVAILABLE -> USED``; a USED row keeps its ID as the
  record of delivery but its material is erased (set to NULL) in the same transaction.
  (``RESERVED`` is left only by older versions; :meth:`KeyStore.recover` makes it AVAILABLE.)
* ``kms_grants`` — keys that a master SAE received at the other KME and that the named slave SAEs
  may fetch once each with dec_keys. The material stays in the units until the last slave fetched.

Every take is one transaction: PostgreSQL locks the rows it takes with ``FOR UPDATE SKIP LOCKED``
(concurrent requests take different rows); SQLite serialises writers (``BEGIN IMMEDIATE`` plus an
in-process lock). A crash leaves each unit either USED (delivered) or still AVAILABLE.
Material at rest is sealed with AES-GCM (:mod:`qkdnet.kms.sealing`).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    Engine,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    func,
    select,
    text,
)
from sqlalchemy.pool import NullPool

from qkdnet.kms.sealing import Sealer

AVAILABLE, GRANTED, USED, RESERVED = 0, 1, 2, 3
SCHEMA_VERSION = 1

metadata = MetaData()
schema_version = Table("kms_schema_version", metadata, Column("version", Integer, primary_key=True))
units = Table(
    "kms_units",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("link", String(64), nullable=False),
    Column("key_id", String(36), nullable=False),
    Column("size_bits", Integer, nullable=False),
    Column("owned", Boolean, nullable=False),
    Column("state", SmallInteger, nullable=False),
    Column("grant_id", String(36), nullable=True),
    Column("material", LargeBinary, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("used_at", Float, nullable=True),
    UniqueConstraint("link", "key_id", name="uq_kms_units_link_key"),
    Index("ix_kms_units_take", "link", "owned", "state", "id"),
)
grants = Table(
    "kms_grants",
    metadata,
    Column("key_id", String(36), primary_key=True),
    Column("link", String(64), nullable=False),
    Column("master_sae", String(64), nullable=False),
    Column("slaves", Text, nullable=False),
    Column("pending", Text, nullable=False),
    Column("size_bits", Integer, nullable=False),
    Column("unit_ids", Text, nullable=False),
    Column("created_at", Float, nullable=False),
)


class StoreError(Exception):
    """Base of the store's refusals (nothing was consumed when one is raised)."""


class InsufficientKeysError(StoreError):
    """Fewer available owned units than a request needs."""

    def __init__(self, available_units: int, needed_units: int) -> None:
        super().__init__(f"{available_units} key units available, {needed_units} needed")
        self.available_units = available_units
        self.needed_units = needed_units


class KeysNotFoundError(StoreError):
    """A requested key ID does not exist here (or was already delivered to this caller)."""


class NotAuthorizedError(StoreError):
    """The caller is not among the slaves named for one of the requested keys."""


class DuplicateKeysError(StoreError):
    """An ingested key ID is already stored for that link."""


class _ShortError(Exception):
    """Too few units for a whole group commit (rolls its transaction back)."""


class Grant(NamedTuple):
    """A delivered key as the slave side must learn it: its ID, units, size and SAEs.

    A named tuple, not a dataclass: a batched delivery makes thousands per request (both KMEs),
    and a frozen dataclass costs several times more to build."""

    key_id: str
    unit_ids: tuple[str, ...]
    size_bits: int
    master_sae: str
    slaves: tuple[str, ...]

    def as_dict(self) -> dict[str, object]:
        """JSON form used between KMEs."""
        return {
            "key_ID": self.key_id,
            "unit_IDs": list(self.unit_ids),
            "size": self.size_bits,
            "master_SAE_ID": self.master_sae,
            "slave_SAE_IDs": list(self.slaves),
        }


def _plain(text: str) -> bool:
    """Nothing in ``text`` that JSON escapes: printable ASCII without ``"`` and ``\\``."""
    return text.isascii() and text.isprintable() and '"' not in text and "\\" not in text


def _json_ids(ids: Sequence[str], plain: bool | None = None) -> str:
    """``json.dumps(list(ids))``, built directly when no ID needs escaping (``plain``: already
    checked by the caller for a whole batch; one check of the joined IDs otherwise)."""
    if plain or (plain is None and _plain("".join(ids))):
        return '["' + '","'.join(ids) + '"]'
    return json.dumps(list(ids))


def _in_list(column: str, dialect: str) -> str:
    """``column`` is one of a list passed as one parameter (see :func:`_list_param`): SQLite
    reads a JSON array with ``json_each``; PostgreSQL an array literal (``= ANY`` uses the
    index). ``column`` ``id`` holds integers, any other text."""
    if dialect == "sqlite":
        return f"{column} IN (SELECT value FROM json_each(?))"
    return f"{column} = ANY(%s::{'bigint' if column == 'id' else 'text'}[])"


def _list_param(values: Sequence[int] | Sequence[str], dialect: str) -> Any:
    """One parameter for a list of row IDs or of plain text IDs: a JSON array for SQLite; for
    PostgreSQL the text of an array literal (psycopg adapts a Python list element by element,
    in Python: ~8 µs per element)."""
    if values and isinstance(values[0], int):
        inner = ",".join(map(str, values))
        return f"[{inner}]" if dialect == "sqlite" else f"{{{inner}}}"
    if dialect == "sqlite":
        return _json_ids(values)  # type: ignore[arg-type]
    if _plain("".join(values)):  # type: ignore[arg-type]
        return '{"' + '","'.join(values) + '"}'  # type: ignore[arg-type]
    return list(values)


def _split(
    rows: list[tuple[int, str, bytes]], wanted: Sequence[int]
) -> tuple[list[list[tuple[int, str, bytes]] | None], list[int]]:
    """Give each request its ``wanted[i]`` rows in order, ``None`` when too few remain; and the
    row IDs of all rows given."""
    plan: list[list[tuple[int, str, bytes]] | None] = []
    used: list[int] = []
    pos = 0
    for n in wanted:
        if pos + n > len(rows):
            plan.append(None)
            continue
        part = rows[pos : pos + n]
        pos += n
        used.extend(r[0] for r in part)
        plan.append(part)
    return plan, used


def _assemble(parts: Sequence[bytes], size_bits: int) -> bytes:
    """Concatenate unit material and cut it to ``size_bits`` (a multiple of 8)."""
    return b"".join(parts)[: size_bits // 8]


class KeyStore:
    """Key units and grants of one KME over SQLAlchemy (``sqlite:///file`` or PostgreSQL).

    ``schema`` (PostgreSQL only) puts the tables in their own schema, created if missing, so that
    several KMEs or test runs share one database without clashing.
    """

    def __init__(self, url: str, sealer: Sealer, *, schema: str | None = None) -> None:
        self.url = url
        self.sealer = sealer
        self.dialect = url.split(":", 1)[0].split("+", 1)[0]
        self._lock = threading.Lock() if self.dialect == "sqlite" else None
        # SQLite: units read by batches in flight, per link: {batch: (highest row ID, row IDs)}
        self._held: dict[str, dict[object, tuple[int, set[int]]]] = {}
        self.engine = self._make_engine(url, schema)
        self.schema = schema
        # the hot statements are written in the driver's SQL (no compile per call, one
        # parameter for a whole list of IDs): table names and placeholders per dialect
        prefix = f'"{schema}".' if schema and self.dialect == "postgresql" else ""
        self._units = prefix + "kms_units"
        self._grants = prefix + "kms_grants"
        self._p = "?" if self.dialect == "sqlite" else "%s"
        self._migrate()
        self.recover()

    # -- setup ---------------------------------------------------------------------------------
    def _make_engine(self, url: str, schema: str | None) -> Engine:
        if self.dialect == "sqlite":
            engine = create_engine(
                url, connect_args={"check_same_thread": False, "timeout": 30}, pool_size=8
            )

            @event.listens_for(engine, "connect")
            def _on_connect(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
                dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
                cursor = dbapi_conn.cursor()
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA synchronous=FULL")
                cursor.execute("PRAGMA busy_timeout=30000")
                cursor.close()

            @event.listens_for(engine, "begin")
            def _on_begin(conn: Connection) -> None:
                conn.exec_driver_sql("BEGIN IMMEDIATE")

            return engine
        if self.dialect != "postgresql":
            raise ValueError(
                f"unsupported store URL {url!r}: use sqlite:///FILE or postgresql+psycopg://..."
            )
        # no pre-ping (a round trip per transaction): a connection the server dropped fails one
        # transaction, and SQLAlchemy then replaces the pool's connections
        kwargs: dict[str, object] = {"pool_size": 16, "max_overflow": 16, "pool_recycle": 3600}
        if schema:
            if not schema.replace("_", "").isalnum():
                raise ValueError(f"schema name {schema!r} must be letters, digits and _")
            kwargs["execution_options"] = {"schema_translate_map": {None: schema}}
            with create_engine(url, poolclass=NullPool).begin() as conn:
                conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        return create_engine(url, **kwargs)

    def _migrate(self) -> None:
        """Create the tables, or bring an older schema up to :data:`SCHEMA_VERSION`."""
        with self._write() as conn:
            schema_version.create(conn, checkfirst=True)
            current = conn.execute(select(func.max(schema_version.c.version))).scalar() or 0
            if current > SCHEMA_VERSION:
                raise RuntimeError(
                    f"key store schema version {current} is newer than this qkdnet "
                    f"({SCHEMA_VERSION}); upgrade qkdnet"
                )
            if current < 1:
                units.create(conn, checkfirst=True)
                grants.create(conn, checkfirst=True)
                conn.execute(schema_version.insert().values(version=1))

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """One write transaction (serialised on SQLite), committed durably."""
        if self._lock is None:
            with self.engine.begin() as conn:
                yield conn
            return
        with self._lock, self.engine.begin() as conn:
            yield conn

    def close(self) -> None:
        """Release the connection pool."""
        self.engine.dispose()

    def drop_schema(self) -> None:
        """Delete everything (tests only): drop the PostgreSQL schema or the tables."""
        if self.dialect == "postgresql" and self.schema:
            with self.engine.begin() as conn:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE'))
        else:
            with self._write() as conn:
                metadata.drop_all(conn)
        self.close()

    # -- southbound ----------------------------------------------------------------------------
    def ingest(self, link: str, keys: Sequence[tuple[str, bytes, bool]]) -> int:
        """Store units ``(key_id, material, owned)`` of ``link``; all or nothing.

        Raises :class:`DuplicateKeysError` if any ID is already stored for this link.
        """
        if not keys:
            return 0
        now = time.time()
        rows = [
            {
                "link": link,
                "key_id": key_id,
                "size_bits": len(material) * 8,
                "owned": owned,
                "state": AVAILABLE,
                "grant_id": None,
                "material": self.sealer.seal(material, link, key_id),
                "created_at": now,
                "used_at": None,
            }
            for key_id, material, owned in keys
        ]
        ids = [r["key_id"] for r in rows]
        if len(set(ids)) != len(ids):
            raise DuplicateKeysError("the same key_ID appears twice in one block")
        with self._write() as conn:
            clash = conn.execute(
                select(func.count())
                .select_from(units)
                .where(units.c.link == link, units.c.key_id.in_(ids))
            ).scalar()
            if clash:
                raise DuplicateKeysError(
                    f"{clash} of these key_IDs are already stored for link {link}"
                )
            conn.execute(units.insert(), rows)
        return len(rows)

    # -- counts --------------------------------------------------------------------------------
    def available_units(self, link: str, owned: bool = True) -> int:
        """Units of ``link`` still available (owned by this KME unless ``owned=False``)."""
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    select(func.count())
                    .select_from(units)
                    .where(units.c.link == link, units.c.owned == owned, units.c.state == AVAILABLE)
                ).scalar()
                or 0
            )

    def counts(self) -> dict[str, dict[str, int]]:
        """Units per link and state (``available``/``granted``/``used``) — for metrics and tests."""
        names = {
            AVAILABLE: "available",
            GRANTED: "granted",
            USED: "used",
            RESERVED: "reserved",
        }
        out: dict[str, dict[str, int]] = {}
        with self.engine.connect() as conn:
            for link, state, n in conn.execute(
                select(units.c.link, units.c.state, func.count()).group_by(
                    units.c.link, units.c.state
                )
            ):
                out.setdefault(link, {v: 0 for v in names.values()})[names[state]] = int(n)
        return out

    def unit_states(self, link: str) -> dict[str, tuple[int, bool]]:
        """``key_id -> (state, has_material)`` of every unit of ``link`` (tests and audits)."""
        with self.engine.connect() as conn:
            return {
                k: (s, m is not None)
                for k, s, m in conn.execute(
                    select(units.c.key_id, units.c.state, units.c.material).where(
                        units.c.link == link
                    )
                )
            }

    # -- taking owned units --------------------------------------------------------------------
    def _sql(self, conn: Connection, sql: str, params: Sequence[Any] = ()) -> Any:
        """Run driver SQL on ``conn``'s transaction; the DBAPI cursor (plain tuples, no ORM
        rows: a batch handles thousands of rows)."""
        cursor = conn.connection.cursor()
        cursor.execute(sql, params)
        return cursor

    def _lock_owned(self, conn: Connection, link: str, n: int) -> list[tuple[int, str, bytes]]:
        p = self._p
        lock = " FOR UPDATE SKIP LOCKED" if self.dialect == "postgresql" else ""
        sql = (
            f"SELECT id, key_id, material FROM {self._units} WHERE link = {p} AND owned = {p} "
            f"AND state = {AVAILABLE} ORDER BY id LIMIT {p}{lock}"
        )
        return self._sql(conn, sql, (link, True, n)).fetchall()

    def _take_erase(self, conn: Connection, link: str, n: int) -> list[tuple[int, str, bytes]]:
        """PostgreSQL: lock the first ``n`` available owned units of ``link``, mark them USED
        with their material erased, and return them as they were, in ID order — one statement
        (one round trip) instead of a SELECT and an UPDATE. Final only when the transaction
        commits."""
        sql = (
            f"WITH picked AS MATERIALIZED (SELECT id, key_id, material FROM {self._units} "
            f"WHERE link = %s AND owned = %s AND state = {AVAILABLE} ORDER BY id LIMIT %s "
            f"FOR UPDATE SKIP LOCKED), gone AS (UPDATE {self._units} AS u SET state = {USED}, "
            "material = NULL, used_at = %s FROM picked WHERE u.id = picked.id) "
            "SELECT id, key_id, material FROM picked ORDER BY id"
        )
        return self._sql(conn, sql, (link, True, n, time.time())).fetchall()

    def _pick_owned(self, conn: Connection, link: str, n: int) -> list[tuple[int, str, bytes]]:
        """SQLite: the first ``n`` available owned units of ``link`` that no batch in flight
        holds (call with ``self._lock`` held). Batches hold the lowest IDs they found, so the
        free units usually lie above the highest held ID; only when too few are there (a held
        batch was given back, leaving free units below) is the whole link read."""
        held = self._held.get(link)
        if not held:
            return self._lock_owned(conn, link, n)
        floor = max(top for top, _ in held.values())
        p = self._p
        sql = (
            f"SELECT id, key_id, material FROM {self._units} WHERE link = {p} AND owned = {p} "
            f"AND state = {AVAILABLE} AND id > {p} ORDER BY id LIMIT {p}"
        )
        rows = self._sql(conn, sql, (link, True, floor, n)).fetchall()
        if len(rows) < n:
            taken = set().union(*(ids for _, ids in held.values()))
            rows = self._lock_owned(conn, link, n + len(taken))
            rows = [r for r in rows if r[0] not in taken][:n]
        return rows

    def _erase(self, conn: Connection, row_ids: Sequence[int], held: bool = False) -> None:
        """Mark ``row_ids`` USED and erase their material. ``held`` (units read without a row
        lock, SQLite): all of them or none — a unit no longer AVAILABLE raises
        :class:`StoreError`, which rolls the transaction back, so nothing is delivered twice."""
        if not row_ids:
            return
        sql = (
            f"UPDATE {self._units} SET state = {USED}, material = NULL, used_at = {self._p} "
            f"WHERE {_in_list('id', self.dialect)}"
        )
        if held:
            sql += f" AND state = {AVAILABLE}"
        cursor = self._sql(conn, sql, (time.time(), _list_param(row_ids, self.dialect)))
        if held and cursor.rowcount != len(row_ids):
            raise StoreError(
                f"{len(row_ids) - cursor.rowcount} of {len(row_ids)} units were no longer "
                "available when erased; nothing delivered"
            )

    def take_owned(
        self,
        link: str,
        n_units: int,
        before_commit: Callable[[list[tuple[str, bytes]]], None] | None = None,
    ) -> list[tuple[str, bytes]]:
        """Take ``n_units`` owned units of ``link`` exactly once: ``[(key_id, material)]``.

        ``before_commit`` runs before the take is final, with the taken units (the KME uses it
        to tell the peer KME which keys its slave may fetch); if it raises, nothing is consumed.
        Raises :class:`InsufficientKeysError` when fewer units are available.
        """

        def hook(alloc: list[list[tuple[str, bytes]] | None]) -> None:
            if before_commit is not None and alloc[0] is not None:
                before_commit(alloc[0])

        alloc, available = self.take_owned_batch(link, [n_units], hook)
        if alloc[0] is None:
            raise InsufficientKeysError(available, n_units)
        return alloc[0]

    def take_owned_batch(
        self,
        link: str,
        wanted: Sequence[int],
        before_commit: Callable[[list[list[tuple[str, bytes]] | None]], None] | None = None,
    ) -> tuple[list[list[tuple[str, bytes]] | None], int]:
        """Serve several requests for owned units of ``link`` at once (group commit).

        Request ``i`` gets ``wanted[i]`` units, or ``None`` when too few remain (it consumes
        nothing). ``before_commit`` sees the allocation before it is final; if it raises,
        nothing at all is consumed. Returns the allocation and the units that were available
        (exact when some request got ``None``; otherwise the number taken, a lower bound).

        PostgreSQL: one transaction, the rows locked ``FOR UPDATE SKIP LOCKED`` while
        ``before_commit`` runs. SQLite has one writer for the whole file, which must not be held
        while ``before_commit`` calls the peer KME (two KMEs granting to each other would wait on
        each other): the units are held in memory by this process (read, not written), then
        erased (USED) by one durable commit that requires every unit to be still AVAILABLE.
        A crash in between leaves them AVAILABLE in the file — no SAE received them, since keys
        are answered only after the final commit.
        """
        if self.dialect == "postgresql":
            n = sum(wanted)
            try:  # the usual case, every request served: take and erase in one statement
                with self._write() as conn:
                    rows = self._take_erase(conn, link, n)
                    if len(rows) < n:
                        raise _ShortError
                    alloc = self._open(_split(rows, wanted)[0], link)
                    if before_commit is not None:
                        before_commit(alloc)
                return alloc, n
            except _ShortError:
                pass  # rolled back: too few units, serve what fits (lock, then erase)
            with self._write() as conn:
                alloc, available, used = self._allocate(conn, link, wanted)
                if before_commit is not None and used:
                    before_commit(alloc)
                if used:
                    self._erase(conn, used)
            return alloc, available
        assert self._lock is not None
        with self._lock, self.engine.connect() as conn:
            rows = self._pick_owned(conn, link, sum(wanted))
            plan, used = _split(rows, wanted)
            if not used:
                return [None] * len(wanted), len(rows)
            token = object()
            self._held.setdefault(link, {})[token] = (max(used), set(used))
        try:
            alloc = self._open(plan, link)
            if before_commit is not None:
                before_commit(alloc)
            with self._write() as conn:
                self._erase(conn, used, held=True)
        finally:
            with self._lock:
                del self._held[link][token]
        return alloc, len(rows)

    def _open(
        self, plan: list[list[tuple[int, str, bytes]] | None], link: str
    ) -> list[list[tuple[str, bytes]] | None]:
        """Unseal the material of each request's rows: ``[(key_id, material)]`` or ``None``."""
        opened = self.sealer.open
        return [
            None if part is None else [(kid, opened(m, link, kid)) for _, kid, m in part]
            for part in plan
        ]

    def _allocate(
        self, conn: Connection, link: str, wanted: Sequence[int]
    ) -> tuple[list[list[tuple[str, bytes]] | None], int, list[int]]:
        """Lock the first available owned units (PostgreSQL) and split them among ``wanted``."""
        rows = self._lock_owned(conn, link, sum(wanted))
        # the count only matters to refuse a request, which happens only when too few rows came
        # back (then they are all that was available); no COUNT(*) over the link when all fit
        plan, used = _split(rows, wanted)
        return self._open(plan, link), len(rows), used

    def _set_state(self, conn: Connection, row_ids: Sequence[int], state: int) -> None:
        if not row_ids:
            return
        sql = f"UPDATE {self._units} SET state = {int(state)} WHERE {_in_list('id', self.dialect)}"
        self._sql(conn, sql, (_list_param(row_ids, self.dialect),))

    def recover(self) -> int:
        """Make units left RESERVED by a crash AVAILABLE again; returns how many."""
        with self._write() as conn:
            result = conn.execute(
                units.update().where(units.c.state == RESERVED).values(state=AVAILABLE)
            )
            return int(result.rowcount or 0)

    def take_by_ids(self, link: str, key_ids: Sequence[str]) -> list[tuple[str, bytes]]:
        """Take the peer-owned units ``key_ids`` of ``link`` exactly once (one-time-pad receive).

        A unit held by a grant that no slave fetched yet is taken too (the owner has re-used it
        after a crash); raises :class:`KeysNotFoundError` if any is missing or used.
        """
        with self._write() as conn:
            rows = self._lock_units(conn, link, key_ids)
            taken = [(kid, self.sealer.open(m, link, kid)) for _, kid, m in rows if m is not None]
            self._erase(conn, [r[0] for r in rows])
        return taken

    def _lock_units(
        self, conn: Connection, link: str, key_ids: Sequence[str], material: bool = True
    ) -> list[tuple[int, str, bytes | None]]:
        """Lock units by ID for a new use, dropping stale unfetched grants that hold them:
        ``[(row id, key_id, material)]`` in the order of ``key_ids`` (material ``None`` unless
        ``material``)."""
        lock = " FOR UPDATE" if self.dialect == "postgresql" else ""
        sql = (
            f"SELECT key_id, id, state, grant_id{', material' if material else ''} FROM "
            f"{self._units} WHERE link = {self._p} AND {_in_list('key_id', self.dialect)}{lock}"
        )
        found = {r[0]: r for r in self._sql(conn, sql, (link, _list_param(key_ids, self.dialect)))}
        if len(found) != len(key_ids) or len(set(key_ids)) != len(key_ids):
            missing = sum(1 for k in set(key_ids) if k not in found)
            raise KeysNotFoundError(f"{missing} of {len(key_ids)} units not available on {link}")
        states = {r[2] for r in found.values()}
        if USED in states:
            missing = sum(1 for r in found.values() if r[2] == USED)
            raise KeysNotFoundError(f"{missing} of {len(key_ids)} units not available on {link}")
        if GRANTED in states:
            stale = sorted({r[3] for r in found.values() if r[2] == GRANTED})
            for row in conn.execute(select(grants).where(grants.c.key_id.in_(stale))):
                if json.loads(row.pending) != json.loads(row.slaves):
                    raise KeysNotFoundError(f"units of key {row.key_id} were already fetched")
            conn.execute(grants.delete().where(grants.c.key_id.in_(stale)))
            conn.execute(
                units.update()
                .where(units.c.grant_id.in_(stale), units.c.state == GRANTED)
                .values(state=AVAILABLE, grant_id=None)
            )
        if material:
            return [(found[k][1], k, found[k][4]) for k in key_ids]
        return [(found[k][1], k, None) for k in key_ids]

    # -- grants (slave side) -------------------------------------------------------------------
    def add_grants(self, link: str, new: Sequence[Grant]) -> None:
        """Record keys the peer KME handed to a master SAE; their units become GRANTED.

        Idempotent for a repeated grant; raises :class:`KeysNotFoundError` if a unit is missing here
        (the QKD module has not delivered it to this KME yet) or already used.
        """
        now = time.time()
        all_units = [u for g in new for u in g.unit_ids]
        slave_json = {s: json.dumps(list(s)) for s in {g.slaves for g in new}}
        with self._write() as conn:
            if not self._grant_available(conn, link, new, all_units):
                self._grant_locked(conn, link, new, all_units)
            plain = _plain("".join(all_units))
            rows = [
                (g.key_id, g.master_sae, slave_json[g.slaves], g.size_bits,
                 _json_ids(g.unit_ids, plain))
                for g in new
            ]  # fmt: skip
            columns = "key_id, link, master_sae, slaves, pending, size_bits, unit_ids, created_at"
            if self.dialect == "postgresql":
                # one statement with the rows as one JSON parameter: psycopg's executemany
                # sends a statement per row (~30 µs each), and adapts lists in Python
                self._sql(
                    conn,
                    f"INSERT INTO {self._grants} ({columns}) SELECT r->>0, %s, r->>1, r->>2, "
                    "r->>2, (r->>3)::int, r->>4, %s FROM json_array_elements(%s::json) AS r",
                    (link, now, json.dumps(rows)),
                )
            else:
                conn.connection.cursor().executemany(
                    f"INSERT INTO {self._grants} ({columns}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [(k, link, m, sj, sj, n, u, now) for k, m, sj, n, u in rows],
                )

    def _grant_available(
        self, conn: Connection, link: str, new: Sequence[Grant], all_units: list[str]
    ) -> bool:
        """The common case of :meth:`add_grants` in one statement: every key is one unit, and
        every unit is here and AVAILABLE. Tried in a savepoint; ``False`` (nothing changed)
        when it does not hold, and :meth:`_grant_locked` does the general case."""
        if any(g.unit_ids != (g.key_id,) for g in new):
            return False
        savepoint = conn.begin_nested()
        if self.dialect == "postgresql":
            # find the rows by (link, key_id) first: on a table without fresh statistics the
            # planner would otherwise scan the (link, owned, state) index for state = AVAILABLE
            sql = (
                f"WITH t AS MATERIALIZED (SELECT id FROM {self._units} WHERE link = %s AND "
                f"{_in_list('key_id', self.dialect)}) UPDATE {self._units} AS u SET state = "
                f"{GRANTED}, grant_id = u.key_id FROM t WHERE u.id = t.id AND u.state = {AVAILABLE}"
            )
        else:
            sql = (
                f"UPDATE {self._units} SET state = {GRANTED}, grant_id = key_id WHERE link = ? "
                f"AND state = {AVAILABLE} AND {_in_list('key_id', self.dialect)}"
            )
        cursor = self._sql(conn, sql, (link, _list_param(all_units, self.dialect)))
        if cursor.rowcount == len(all_units):
            savepoint.commit()
            return True
        savepoint.rollback()
        return False

    def _grant_locked(
        self, conn: Connection, link: str, new: Sequence[Grant], all_units: list[str]
    ) -> None:
        """Mark the units of ``new`` GRANTED after locking them (missing or used units raise,
        stale unfetched grants on them are dropped)."""
        dialect = self.dialect
        rows = self._lock_units(conn, link, all_units, material=False)
        row_id = {kid: rid for rid, kid, _ in rows}
        # a key made of one unit carries that unit's ID (the owner's rule): all of those
        # in one UPDATE; other keys row by row
        single = [row_id[g.key_id] for g in new if g.unit_ids == (g.key_id,)]
        if single:
            self._sql(
                conn,
                f"UPDATE {self._units} SET state = {GRANTED}, grant_id = key_id "
                f"WHERE {_in_list('id', dialect)}",
                (_list_param(single, dialect),),
            )
        multi = [
            (g.key_id, row_id[u]) for g in new if g.unit_ids != (g.key_id,) for u in g.unit_ids
        ]
        if multi and self.dialect == "postgresql":
            self._sql(
                conn,
                f"UPDATE {self._units} AS u SET state = {GRANTED}, grant_id = r->>0 FROM "
                "json_array_elements(%s::json) AS r WHERE u.id = (r->>1)::bigint",
                (json.dumps(multi),),
            )
        elif multi:
            conn.connection.cursor().executemany(
                f"UPDATE {self._units} SET state = {GRANTED}, grant_id = ? WHERE id = ?", multi
            )

    def add_relayed(
        self, link: str, keys: Sequence[tuple[str, bytes]], master_sae: str, slaves: Sequence[str]
    ) -> None:
        """Store keys relayed from KME ``link`` for ``slaves`` (each key one unit, one grant)."""
        now = time.time()
        slave_json = json.dumps(list(slaves))
        with self._write() as conn:
            conn.execute(
                units.insert(),
                [
                    {
                        "link": link,
                        "key_id": kid,
                        "size_bits": len(m) * 8,
                        "owned": False,
                        "state": GRANTED,
                        "grant_id": kid,
                        "material": self.sealer.seal(m, link, kid),
                        "created_at": now,
                        "used_at": None,
                    }
                    for kid, m in keys
                ],
            )
            conn.execute(
                grants.insert(),
                [
                    {
                        "key_id": kid,
                        "link": link,
                        "master_sae": master_sae,
                        "slaves": slave_json,
                        "pending": slave_json,
                        "size_bits": len(m) * 8,
                        "unit_ids": json.dumps([kid]),
                        "created_at": now,
                    }
                    for kid, m in keys
                ],
            )

    def fetch_granted(
        self, caller: str, master_sae: str, key_ids: Sequence[str]
    ) -> list[tuple[str, bytes]]:
        """Deliver granted keys to slave ``caller`` once, in the order of ``key_ids``.

        Raises :class:`KeysNotFoundError` if a key is unknown, for another master, or already fetched
        by ``caller``; :class:`NotAuthorizedError` if ``caller`` is not a named slave of one of them.
        A key's material is erased once every named slave fetched it.
        """
        with self._write() as conn:
            query = select(grants).where(grants.c.key_id.in_(list(key_ids)))
            if self.dialect == "postgresql":
                query = query.with_for_update()
            found = {r.key_id: r for r in conn.execute(query)}
            if any(k not in found for k in key_ids):
                raise KeysNotFoundError("unknown key_ID")
            if any(caller not in json.loads(found[k].slaves) for k in key_ids):
                raise NotAuthorizedError("caller is not a slave of every requested key")
            if any(
                found[k].master_sae != master_sae or caller not in json.loads(found[k].pending)
                for k in key_ids
            ):
                raise KeysNotFoundError("key for another master, or already delivered")
            out: list[tuple[str, bytes]] = []
            for k in key_ids:
                grant = found[k]
                unit_ids = json.loads(grant.unit_ids)
                rows = {
                    r.key_id: r
                    for r in conn.execute(
                        select(units.c.id, units.c.key_id, units.c.material).where(
                            units.c.link == grant.link, units.c.key_id.in_(unit_ids)
                        )
                    )
                }
                parts = [self.sealer.open(rows[u].material, grant.link, u) for u in unit_ids]
                out.append((k, _assemble(parts, grant.size_bits)))
                pending = [s for s in json.loads(grant.pending) if s != caller]
                if pending:
                    conn.execute(
                        grants.update()
                        .where(grants.c.key_id == k)
                        .values(pending=json.dumps(pending))
                    )
                else:
                    conn.execute(grants.delete().where(grants.c.key_id == k))
                    self._erase(conn, [rows[u].id for u in unit_ids])
        return out

    def pending_grants(self) -> int:
        """Number of grants some slave has not fetched yet."""
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(grants)).scalar() or 0)


def assemble_key(parts: Sequence[bytes], size_bits: int) -> bytes:
    """Public form of the unit-concatenation rule shared by both ends of a link."""
    return _assemble(parts, size_bits)
