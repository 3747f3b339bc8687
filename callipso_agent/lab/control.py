"""The lab's fault switch over HTTP on loopback: ``GET /lab``, ``POST /lab/faults``, ``DELETE /lab/faults``,
and ``GET /lab/network`` (SNMP requests, answers and drops per device on the lab's network front)."""

from __future__ import annotations

from typing import Any

import structlog
from aiohttp import web

from callipso_agent.lab.estate import Lab

log = structlog.get_logger()


class LabControl:
    def __init__(self, lab: Lab, host: str = "127.0.0.1", port: int = 0) -> None:
        self.lab = lab
        self.host = host
        self.port = port
        self.app = web.Application()
        self.app.add_routes([
            web.get("/lab", self.get_state),
            web.get("/lab/network", self.get_network),
            web.post("/lab/faults", self.post_fault),
            web.delete("/lab/faults", self.delete_fault),
        ])
        self._runner: web.AppRunner | None = None

    async def start(self) -> int:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server: Any = getattr(site, "_server", None)
        self.port = server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def get_state(self, _request: web.Request) -> web.Response:
        return web.json_response(self.lab.state())

    async def get_network(self, _request: web.Request) -> web.Response:
        return web.json_response(self.lab.network_stats())

    async def _body(self, request: web.Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except ValueError:
            raise web.HTTPBadRequest(text='expected JSON {"target": DEVICE|SITE, "fault": NAME}') from None
        if not isinstance(body, dict) or not isinstance(body.get("target"), str):
            raise web.HTTPBadRequest(text='expected JSON {"target": DEVICE|SITE, "fault": NAME}')
        return body

    async def post_fault(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        fault = body.get("fault")
        if not isinstance(fault, str):
            raise web.HTTPBadRequest(text="field 'fault' is required")
        try:
            touched = self.lab.inject(body["target"], fault)
        except KeyError as err:
            return web.json_response({"error": str(err.args[0])}, status=404)
        log.warning("lab_fault_injected", target=body["target"], fault=fault, devices=touched)
        return web.json_response({"injected": fault, "devices": touched})

    async def delete_fault(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        fault = body.get("fault")
        try:
            touched = self.lab.clear(body["target"], fault if isinstance(fault, str) else None)
        except KeyError as err:
            return web.json_response({"error": str(err.args[0])}, status=404)
        log.warning("lab_fault_cleared", target=body["target"], fault=fault, devices=touched)
        return web.json_response({"cleared": fault or "all", "devices": touched})
