"""The dashboard's state/event source: what the network runtime tells the dashboard.

The runtime (or anything driving the dashboard) holds a :class:`DashboardHub` and calls, from any
thread:

* :meth:`DashboardHub.link_block` after each post-processed block of a link (QBER, secret bits,
  key rate, whether it aborted and why);
* :meth:`DashboardHub.pool_level` when a link's key pool changes (bits available);
* :meth:`DashboardHub.kme_requests` with a site's KME request rate (ETSI 014 calls per second);
* :meth:`DashboardHub.relay` when a key is relayed hop by hop (the route of site IDs, never key
  material);
* :meth:`DashboardHub.alert` for anything an operator must see.

The hub keeps the latest state plus a short history per link (for sparklines), raises alerts
itself when a link aborts or a pool falls below its low-water mark, and fans every change out as
an :class:`Event` to subscribers (the server-sent-event stream of :mod:`.app`). Event types and
their ``data``: ``link`` (``id`` + changed fields of :class:`LinkState`), ``kme`` (``site``,
``request_rate_hz``, ``requests``), ``relay`` (``route``, ``bits``), ``alert`` (``level``, ``message``,
``link``, ``site``).
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

AlertLevel = Literal["info", "warning", "critical"]


@dataclass(frozen=True)
class SiteInfo:
    """A site on the map: ``lat``/``lon`` in degrees (WGS84)."""

    id: str
    name: str
    lat: float
    lon: float
    sector: str = ""
    trusted_node: bool = False


@dataclass
class LinkState:
    """Latest state of one link; ``status`` is ``up``, ``aborted`` or ``idle`` (no block yet)."""

    id: str
    a: str
    b: str
    length_km: float
    protocol: str
    key_rate_bps: float = 0.0
    qber: float | None = None
    pool_bits: int = 0
    pool_capacity_bits: int = 1 << 20
    status: str = "idle"
    abort_reason: str | None = None
    history: dict[str, deque[Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class Event:
    """One change, numbered in publication order (``seq``), at wall time ``t``."""

    seq: int
    type: str
    t: float
    data: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form sent to the browser."""
        return {"seq": self.seq, "type": self.type, "t": self.t, "data": self.data}


class DashboardHub:
    """Latest network state plus an event fan-out; every publishing method is thread-safe."""

    def __init__(
        self,
        sites: Sequence[SiteInfo],
        links: Sequence[LinkState],
        *,
        name: str = "qkdnet",
        history: int = 120,
        pool_low_water_bits: int = 4096,
        qber_alarm: float = 0.11,
        keep: int = 50,
    ) -> None:
        known = {s.id for s in sites}
        for link in links:
            for end in (link.a, link.b):
                if end not in known:
                    raise ValueError(f"link {link.id!r} ends at unknown site {end!r}")
        self.name = name
        self.sites = {s.id: s for s in sites}
        self.links = {link.id: link for link in links}
        for link in self.links.values():
            link.history = {
                k: deque(maxlen=history) for k in ("t", "qber", "key_rate_bps", "pool_bits")
            }
        self.kme_rates: dict[str, float] = {s: 0.0 for s in self.sites}
        self.kme_totals: dict[str, int] = {s: 0 for s in self.sites}
        self.relays: deque[dict[str, Any]] = deque(maxlen=keep)
        self.alerts: deque[dict[str, Any]] = deque(maxlen=keep)
        self.pool_low_water_bits = pool_low_water_bits
        self.qber_alarm = qber_alarm
        self._seq = itertools.count(1)
        self._last_seq = 0
        self._lock = threading.RLock()
        self._subscribers: set[tuple[asyncio.AbstractEventLoop, asyncio.Queue[Event]]] = set()

    @classmethod
    def from_scenario(cls, scenario: Any, **kwargs: Any) -> DashboardHub:
        """A hub for a :class:`qkdnet.network.Scenario` (sites, links, alarm thresholds)."""
        sites = [
            SiteInfo(s.id, s.name, s.lat, s.lon, s.sector, s.trusted_node) for s in scenario.sites
        ]
        links = [LinkState(x.id, x.a, x.b, x.length_km, x.protocol) for x in scenario.links]
        defaults = scenario.defaults
        kwargs.setdefault("pool_low_water_bits", defaults.pool_low_water_bits)
        kwargs.setdefault("qber_alarm", defaults.qber_alarm)
        return cls(sites, links, name=scenario.name, **kwargs)

    # -- publishing ------------------------------------------------------------------------

    def _link(self, link_id: str) -> LinkState:
        try:
            return self.links[link_id]
        except KeyError:
            raise KeyError(f"unknown link {link_id!r}; links: {', '.join(self.links)}") from None

    def _record(self, link: LinkState, t: float) -> None:
        h = link.history
        h["t"].append(t)
        h["qber"].append(link.qber)
        h["key_rate_bps"].append(link.key_rate_bps)
        h["pool_bits"].append(link.pool_bits)

    def link_block(
        self,
        link_id: str,
        *,
        qber: float,
        key_rate_bps: float,
        aborted: bool = False,
        abort_reason: str | None = None,
    ) -> None:
        """A block of ``link_id`` was post-processed: its QBER and the link's current key rate."""
        with self._lock:
            link = self._link(link_id)
            was = link.status
            link.qber = float(qber)
            link.key_rate_bps = 0.0 if aborted else float(key_rate_bps)
            link.status = "aborted" if aborted else "up"
            link.abort_reason = abort_reason if aborted else None
            now = time.time()
            self._record(link, now)
            self._emit("link", self._link_delta(link), now)
            if aborted and was != "aborted":
                why = f": {abort_reason}" if abort_reason else ""
                self._alert("critical", f"link {link_id} aborted{why}", link=link_id)
            elif not aborted and was == "aborted":
                self._alert("info", f"link {link_id} producing keys again", link=link_id)
            if qber > self.qber_alarm and not aborted:
                self._alert(
                    "warning", f"link {link_id} QBER {100 * qber:.1f} % above alarm", link=link_id
                )

    def pool_level(self, link_id: str, bits: int, capacity_bits: int | None = None) -> None:
        """The key pool of ``link_id`` now holds ``bits`` (optionally a new capacity)."""
        with self._lock:
            link = self._link(link_id)
            before = link.pool_bits
            link.pool_bits = int(bits)
            if capacity_bits is not None:
                link.pool_capacity_bits = int(capacity_bits)
            now = time.time()
            self._record(link, now)
            self._emit("link", self._link_delta(link), now)
            low = self.pool_low_water_bits
            if link.pool_bits < low <= before:
                self._alert(
                    "warning", f"pool of link {link_id} running dry ({bits} bits)", link=link_id
                )

    def kme_requests(self, site_id: str, rate_hz: float, total: int | None = None) -> None:
        """The KME of ``site_id`` serves ``rate_hz`` ETSI 014 requests per second (``total``
        so far, when known)."""
        with self._lock:
            if site_id not in self.sites:
                raise KeyError(f"unknown site {site_id!r}")
            self.kme_rates[site_id] = float(rate_hz)
            if total is not None:
                self.kme_totals[site_id] = int(total)
            data = {
                "site": site_id,
                "request_rate_hz": float(rate_hz),
                "requests": self.kme_totals.get(site_id, 0),
            }
            self._emit("kme", data, time.time())

    def relay(self, route: Sequence[str], bits: int | None = None, detail: str = "") -> None:
        """A key (of ``bits``, when known) travelled along ``route`` (site IDs, first to last);
        ``detail`` is a short note such as the relay step, never key material."""
        with self._lock:
            for site in route:
                if site not in self.sites:
                    raise KeyError(f"relay route names unknown site {site!r}")
            now = time.time()
            item = {
                "route": list(route),
                "bits": None if bits is None else int(bits),
                "detail": detail,
                "t": now,
            }
            self.relays.append(item)
            self._emit("relay", item, now)

    def alert(
        self, level: AlertLevel, message: str, *, link: str | None = None, site: str | None = None
    ) -> None:
        """Show ``message`` to the operator (``level`` info, warning or critical)."""
        with self._lock:
            self._alert(level, message, link=link, site=site)

    def _alert(
        self, level: str, message: str, *, link: str | None = None, site: str | None = None
    ) -> None:
        now = time.time()
        item = {"level": level, "message": message, "link": link, "site": site, "t": now}
        self.alerts.append(item)
        self._emit("alert", item, now)

    @staticmethod
    def _link_delta(link: LinkState) -> dict[str, Any]:
        return {
            "id": link.id,
            "key_rate_bps": link.key_rate_bps,
            "qber": link.qber,
            "pool_bits": link.pool_bits,
            "pool_capacity_bits": link.pool_capacity_bits,
            "status": link.status,
            "abort_reason": link.abort_reason,
        }

    # -- reading ---------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """The whole state as JSON-ready data (what a newly connected browser draws first)."""
        with self._lock:
            links = []
            for link in self.links.values():
                item = {k: v for k, v in asdict(link).items() if k != "history"}
                item["length_km"] = link.length_km
                item["history"] = {k: list(v) for k, v in link.history.items()}
                links.append(item)
            return {
                "name": self.name,
                "seq": self._last_seq,
                "sites": [asdict(s) for s in self.sites.values()],
                "links": links,
                "kme_rates": dict(self.kme_rates),
                "kme_totals": dict(self.kme_totals),
                "relays": list(self.relays),
                "alerts": list(self.alerts),
                "pool_low_water_bits": self.pool_low_water_bits,
            }

    def _emit(self, kind: str, data: dict[str, Any], t: float) -> None:
        event = Event(next(self._seq), kind, t, data)
        self._last_seq = event.seq
        for loop, queue in list(self._subscribers):
            try:
                loop.call_soon_threadsafe(_put, queue, event)
            except RuntimeError:  # that loop is closed: the subscriber is gone
                self._subscribers.discard((loop, queue))

    def subscribe(self, max_queue: int = 1000) -> Subscription:
        """Register a consumer on the current event loop; it sees every event from now on."""
        sub = Subscription(self, asyncio.get_running_loop(), asyncio.Queue(max_queue))
        with self._lock:
            self._subscribers.add(sub.entry)
        return sub

    def _unsubscribe(self, entry: tuple[asyncio.AbstractEventLoop, asyncio.Queue[Event]]) -> None:
        with self._lock:
            self._subscribers.discard(entry)

    @property
    def subscriber_count(self) -> int:
        """How many consumers are listening (browsers with the dashboard open)."""
        return len(self._subscribers)


class Subscription:
    """Events for one consumer, in order: ``await sub.get()``; ``sub.close()`` when done."""

    def __init__(
        self, hub: DashboardHub, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[Event]
    ) -> None:
        self.hub = hub
        self.entry = (loop, queue)

    async def get(self) -> Event:
        """The next event (waits for one)."""
        return await self.entry[1].get()

    def close(self) -> None:
        """Stop receiving events."""
        self.hub._unsubscribe(self.entry)


def _put(queue: asyncio.Queue[Event], event: Event) -> None:
    if queue.full():  # a stalled browser loses the oldest events, never blocks the network
        queue.get_nowait()
    queue.put_nowait(event)
