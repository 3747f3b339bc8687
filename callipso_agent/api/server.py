"""HTTP endpoints: /healthz, /readyz and the read-only /api/v1 views of devices and measurements.

Other components add their routes through :meth:`HttpServer.add_routes` before start.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiohttp import web

from callipso_agent.collect.cache import LatestCache

log = structlog.get_logger()

ReadyCheck = Callable[[], Awaitable[tuple[bool, dict[str, Any]]]]


class HttpServer:
    def __init__(self, cache: LatestCache, *, host: str, port: int, ready: ReadyCheck,
                 inventory: Callable[[], dict[str, dict[str, Any]]]) -> None:
        self.cache = cache
        self.host = host
        self.port = port
        self.ready = ready
        self.inventory = inventory
        self.app = web.Application(client_max_size=1024 * 1024)
        self.app.add_routes([
            web.get("/healthz", self.healthz),
            web.get("/readyz", self.readyz),
            web.get("/api/v1/devices", self.devices),
            web.get("/api/v1/devices/{name}", self.device),
            web.get("/api/v1/measurements", self.measurements),
        ])
        self._runner: web.AppRunner | None = None
        self.bound_port: int | None = None

    def add_routes(self, routes: list[web.RouteDef]) -> None:
        self.app.add_routes(routes)

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = getattr(site, "_server", None)
        sockets = getattr(server, "sockets", None) or []
        self.bound_port = sockets[0].getsockname()[1] if sockets else self.port
        log.info("http_listening", host=self.host, port=self.bound_port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def healthz(self, _request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(self, _request: web.Request) -> web.Response:
        ok, detail = await self.ready()
        return web.json_response({"status": "ready" if ok else "not ready", **detail}, status=200 if ok else 503)

    def _device_view(self, name: str, inv: dict[str, Any]) -> dict[str, Any]:
        st = self.cache.status(name)
        return {
            **inv,
            "up": bool(st and st.up),
            "last_poll": st.last_poll.isoformat() if st and st.last_poll else None,
            "last_success": st.last_success.isoformat() if st and st.last_success else None,
            "last_error": st.last_error if st else None,
            "last_error_text": st.last_error_text if st else None,
            "consecutive_failures": st.consecutive_failures if st else 0,
            "system": st.system if st else {},
        }

    async def devices(self, request: web.Request) -> web.Response:
        inv = self.inventory()
        site = request.query.get("site")
        family = request.query.get("family")
        out = [self._device_view(n, d) for n, d in sorted(inv.items())
               if (site is None or d.get("site") == site) and (family is None or d.get("family") == family)]
        return web.json_response({"devices": out})

    async def device(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        inv = self.inventory()
        if name not in inv:
            return web.json_response({"error": f"unknown device {name!r}"}, status=404)
        view = self._device_view(name, inv[name])
        view["measurements"] = [m.as_dict() for m in self.cache.measurements(name)]
        return web.json_response(view)

    async def measurements(self, request: web.Request) -> web.Response:
        name = request.query.get("name")
        device = request.query.get("device")
        items = [
            {"device": m.device, **m.as_dict()}
            for m in self.cache.measurements(device)
            if name is None or m.name == name
        ]
        return web.json_response({"measurements": items})
