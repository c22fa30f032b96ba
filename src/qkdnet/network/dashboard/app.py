"""The dashboard web app: a Starlette application the runtime mounts (``/dashboard``) or serves.

Routes (relative to where it is mounted): ``/`` the page, ``/static/*`` its JS and CSS (shipped in
the package, nothing from a CDN), ``/api/state`` the hub's snapshot as JSON, ``/events`` a
server-sent-event stream: one ``snapshot`` event, then every hub event as it happens, with a
comment line every ``heartbeat_s`` to keep proxies from closing an idle stream.
"""

from __future__ import annotations

import asyncio
import json
from importlib import resources
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from qkdnet.network.dashboard.hub import DashboardHub

STATIC_DIR = Path(str(resources.files("qkdnet.network.dashboard").joinpath("static")))


def _sse(kind: str, data: Any, seq: int | None = None) -> bytes:
    head = f"id: {seq}\n" if seq is not None else ""
    return f"{head}event: {kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def create_app(hub: DashboardHub, heartbeat_s: float = 15.0) -> Starlette:
    """The dashboard of ``hub`` as an ASGI app."""

    async def index(request: Request) -> HTMLResponse:
        return HTMLResponse((STATIC_DIR / "index.html").read_text(encoding="utf-8"))

    async def state(request: Request) -> JSONResponse:
        return JSONResponse(hub.snapshot())

    async def events(request: Request) -> StreamingResponse:
        async def stream() -> Any:
            sub = hub.subscribe()  # before the snapshot, so that nothing falls in between
            try:
                snap = hub.snapshot()
                yield _sse("snapshot", snap, snap["seq"])
                while True:
                    try:
                        event = await asyncio.wait_for(sub.get(), timeout=heartbeat_s)
                    except TimeoutError:
                        if await request.is_disconnected():
                            break
                        yield b": heartbeat\n\n"
                        continue
                    if event.seq > snap["seq"]:
                        yield _sse(event.type, event.as_dict(), event.seq)
            finally:
                sub.close()

        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)

    return Starlette(
        routes=[
            Route("/", index),
            Route("/api/state", state),
            Route("/events", events),
            Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
        ]
    )
