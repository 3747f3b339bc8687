"""HTTP routes: the latest archived météo at ``/meteo`` and one day's at ``/meteo/<YYYY-MM-DD>``.

``?format=text`` gives the plain-text version and ``?format=json`` the data. The page is self-contained
(inline styles only), served with a Content-Security-Policy that forbids every external resource.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date

from aiohttp import web

from callipso_agent.meteo.archive import ArchivedMeteo, MeteoArchive

_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"

ArchiveSource = MeteoArchive | Callable[[], MeteoArchive | None]
LivePage = Callable[[], Awaitable[tuple[str, str]]]  # -> (html, text) built on demand, not archived


def _archive(source: ArchiveSource) -> MeteoArchive | None:
    return source if isinstance(source, MeteoArchive) else source()


def _respond(
    request: web.Request, html: str, text: str, data: dict[str, object] | None
) -> web.StreamResponse:
    fmt = request.query.get("format", "html")
    headers = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
    if fmt == "text":
        return web.Response(text=text, content_type="text/plain", charset="utf-8", headers=headers)
    if fmt == "json":
        if data is None:
            return web.json_response({"error": "no archived data for a live page"}, status=404)
        return web.json_response(data, headers=headers)
    if fmt != "html":
        return web.json_response({"error": "format must be html, text or json"}, status=400)
    return web.Response(
        text=html,
        content_type="text/html",
        charset="utf-8",
        headers={**headers, "Content-Security-Policy": _CSP},
    )


def _archived(request: web.Request, a: ArchivedMeteo) -> web.StreamResponse:
    return _respond(request, a.html, a.text, a.data)


def meteo_routes(
    archive: ArchiveSource, *, live: LivePage | None = None, prefix: str = "/meteo"
) -> list[web.RouteDef]:
    """Routes for :meth:`HttpServer.add_routes`. ``live`` builds a page when nothing is archived yet."""

    async def latest(request: web.Request) -> web.StreamResponse:
        store = _archive(archive)
        found = await store.latest() if store is not None else None
        if found is not None:
            return _archived(request, found)
        if live is not None:
            html, text = await live()
            return _respond(request, html, text, None)
        return web.json_response({"error": "no météo archived yet"}, status=404)

    async def one_day(request: web.Request) -> web.StreamResponse:
        raw = request.match_info["day"]
        try:
            day = date.fromisoformat(raw)
        except ValueError:
            return web.json_response({"error": f"bad date {raw!r}; expected YYYY-MM-DD"}, status=400)
        store = _archive(archive)
        found = await store.get(day) if store is not None else None
        if found is None:
            return web.json_response({"error": f"no météo archived for {day.isoformat()}"}, status=404)
        return _archived(request, found)

    return [web.get(prefix, latest), web.get(prefix + "/{day}", one_day)]
