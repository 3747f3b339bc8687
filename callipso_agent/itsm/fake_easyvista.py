"""A faithful fake of the EasyVista Service Manager REST API, for the lab and the tests.

What it reproduces (see ``docs``: integrations notes §1): ``/api/v1/<account>/requests`` create with
``{"requests":[{...}]}`` → 201 + ``HREF``; ``GET /requests/<rfc_number>`` and ``GET /requests?search=
field:value`` with upper-case record fields and counts as strings; ``PUT /requests/<rfc_number>`` (flat
update, ``{"closed":{...}}``, ``{"suspended":{...}}``, ``{"restarted":{...}}``); ``POST
/requests/<rfc_number>/actions``; field names case-insensitive, unknown fields ignored; Basic or Bearer
authentication (401 without or with bad credentials, 403 for a read-only user writing); 406 for an
unknown recipient; 590 with the documented error shape for unknown catalog/urgency/severity/impact ids,
"Nothing to update" and writes to a closed ticket; 404 for unknown tickets.

Ticket numbers follow a configurable pattern: ``%y %Y %m %d %H %M %S`` are the date, ``%0Nd`` the
counter, e.g. ``I%y%m%d_%06d`` → ``I260105_000001``, or a customer style such as ``IZV%y%m_%05d``.

Faults, injected per operation (``create``, ``update``, ``close``, ``action``, ``get``, ``search`` or
``any``) for the next N matching requests: ``error500``, ``hang`` (never answers), ``slow`` (answers
after a delay), ``reply_lost`` (commits, then drops the connection without answering),
``hang_after_commit`` (commits, then never answers: the client times out or is killed meanwhile). ``down()``
stops listening (connection refused) and ``up()`` listens again on the same port, keeping the tickets.

Inspection (tests and the lab): the Python attributes, and ``GET /_fake/tickets``, ``POST/DELETE
/_fake/faults``, ``GET /_fake/requests`` (outside the API root, no authentication).

Run standalone: ``python -m callipso_agent.itsm.fake_easyvista --port 8950``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import json
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from callipso_agent.clock import Clock, SystemClock

STATUS = {
    "new": ("{E8DF3A3B-0D39-4E0E-AD2B-F9AF2BB2A5F2}", "1", "Open"),
    "suspended": ("{4A6C0C4E-2C8C-4A23-9C1B-5B7A2B5E6F11}", "5", "Suspended"),
    "solved": ("{DC97DD1D-0F35-4153-B0E1-0F2E0155365D}", "7", "Solved"),
    "closed": ("{C3D9DFA7-7A21-46C2-B3A3-8BC50C9FF4F3}", "8", "Closed"),
}
GUID_TO_STATUS = {v[0].strip("{}").upper(): k for k, v in STATUS.items()}

REQUEST_FIELDS = {
    "catalog_guid",
    "catalog_code",
    "description",
    "external_reference",
    "urgency_id",
    "severity_id",
    "impact_id",
    "requestor_mail",
    "requestor_identification",
    "requestor_name",
    "recipient_id",
    "recipient_identification",
    "recipient_mail",
    "recipient_name",
    "origin",
    "phone",
    "location_id",
    "location_code",
    "department_id",
    "department_code",
    "assetid",
    "assettag",
    "asset_name",
    "ci_id",
    "ci_asset_tag",
    "ci_name",
    "parentrequest",
    "submit_date",
    "title",
    "comment",
}
ACTION_FIELDS = {
    "action_type_id",
    "action_type_name",
    "group_id",
    "group_mail",
    "group_name",
    "description",
    "comment",
    "creation_date_ut",
    "doneby_id",
    "doneby_identification",
    "doneby_mail",
    "doneby_name",
    "expected_start_date_ut",
    "expected_end_date_ut",
    "max_intervention_date_ut",
    "contact_id",
}
OPS = ("create", "update", "close", "action", "get", "search", "any")
FAULTS = ("error500", "hang", "slow", "reply_lost", "hang_after_commit")


def format_ticket_number(pattern: str, when: datetime, counter: int) -> str:
    """``%0Nd`` (or ``%d`` preceded by a width) is the counter; ``%y %Y %m %d %H %M %S`` the date."""

    def sub(m: re.Match[str]) -> str:
        if m.group("width"):
            return f"{counter:0{int(m.group('width'))}d}"
        code = m.group("code")
        return "%" if code == "%" else when.strftime("%" + code)

    return re.sub(r"%(?:0(?P<width>\d+)d|(?P<code>[yYmdHMS%]))", sub, pattern)


@dataclass
class Fault:
    kind: str
    op: str = "create"
    remaining: int = 1
    seconds: float = 0.0  # for slow


@dataclass
class FakeTicket:
    rfc_number: str
    request_id: int
    fields: dict[str, Any]
    submitted_at: datetime
    status: str = "new"
    actions: list[dict[str, Any]] = field(default_factory=list)
    updates: list[dict[str, Any]] = field(default_factory=list)
    closed_at: datetime | None = None
    closed_with: dict[str, Any] | None = None


def _lower(data: Mapping[str, Any]) -> dict[str, Any]:
    return {str(k).lower(): v for k, v in data.items()}


def _error_590(message: str, correlation: str) -> web.Response:
    inner = json.dumps({"error": message}, ensure_ascii=False)
    return web.json_response(
        {
            "message": f"{inner} (2013-{correlation})",
            "correlationId": correlation,
            "dataError": "",
            "exception": [],
        },
        status=590,
    )


class FakeEasyVista:
    def __init__(
        self,
        *,
        account: str = "50004",
        number_pattern: str = "I%y%m%d_%06d",
        users: Mapping[str, str] | None = None,
        tokens: Iterable[str] = (),
        readonly_users: Iterable[str] = (),
        catalogs: Mapping[str, str] | None = None,
        urgencies: Iterable[int] = (1, 2, 3, 4, 5),
        severities: Iterable[int] = (1, 2, 3, 4, 5),
        impacts: Iterable[int] = (1, 2, 3, 4, 5),
        recipients: Iterable[str] = (),
        clock: Clock | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self.account = account
        self.number_pattern = number_pattern
        self.users = dict(users if users is not None else {"rest": "rest-password"})
        self.tokens = set(tokens)
        self.readonly_users = set(readonly_users)
        # catalog_guid -> catalog_code
        self.catalogs = {
            guid.strip("{}").upper(): code
            for guid, code in (
                catalogs
                if catalogs is not None
                else {"7E3A3D4B-5C1A-4C4F-9E55-2F1C0B6B2A10": "INC_TELEPHONIE"}
            ).items()
        }
        self.urgencies = {str(x) for x in urgencies}
        self.severities = {str(x) for x in severities}
        self.impacts = {str(x) for x in impacts}
        self.recipients = {r.lower() for r in recipients}
        self.clock = clock or SystemClock()
        self.host = host
        self.port = 0
        self.tickets: dict[str, FakeTicket] = {}
        self.faults: list[Fault] = []
        self.log: list[tuple[str, str, int]] = []  # method, path, status
        self._counter = 0
        self._runner: web.AppRunner | None = None
        self._release = asyncio.Event()
        self.app = self._build()

    # ---- lifecycle --------------------------------------------------------------------------------
    def _build(self) -> web.Application:
        app = web.Application()
        root = "/api/v1/{account}"
        app.add_routes(
            [
                web.post(f"{root}/requests", self._create),
                web.get(f"{root}/requests", self._search),
                web.get(f"{root}/requests/{{ref}}", self._get),
                web.put(f"{root}/requests/{{ref}}", self._put),
                web.post(f"{root}/requests/{{ref}}/actions", self._action),
                web.get("/_fake/tickets", self._inspect_tickets),
                web.get("/_fake/requests", self._inspect_log),
                web.post("/_fake/faults", self._add_fault),
                web.delete("/_fake/faults", self._clear_faults),
            ]
        )
        return app

    async def start(self, port: int = 0) -> None:
        self._release = asyncio.Event()
        self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, port or self.port, reuse_address=True)
        await site.start()
        server = getattr(site, "_server", None)
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self._release.set()  # hanging handlers give up
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def down(self) -> None:
        """Stop listening: clients get "connection refused". Tickets are kept."""
        await self.stop()

    async def up(self) -> None:
        """Listen again on the same port."""
        if self._runner is None:
            await self.start(self.port)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def api_root(self) -> str:
        return f"{self.url}/api/v1/{self.account}"

    # ---- inspection -------------------------------------------------------------------------------
    def inject(self, kind: str, *, op: str = "create", count: int = 1, seconds: float = 0.0) -> None:
        if kind not in FAULTS or op not in OPS:
            raise ValueError(f"fault must be one of {FAULTS} on one of {OPS}")
        self.faults.append(Fault(kind, op, count, seconds))

    def clear_faults(self) -> None:
        self.faults.clear()

    def by_external_reference(self, value: str) -> list[FakeTicket]:
        return [t for t in self.tickets.values() if str(t.fields.get("external_reference")) == value]

    def record(self, ticket: FakeTicket) -> dict[str, Any]:
        """A ticket as EasyVista shows it: upper-case column names, identifiers as strings."""
        f = ticket.fields
        guid, status_id, label = STATUS[ticket.status]
        href = f"{self.api_root}/requests/{ticket.rfc_number}"
        catalog_code = f.get("catalog_code") or self.catalogs.get(
            str(f.get("catalog_guid", "")).strip("{}").upper(), ""
        )
        rec: dict[str, Any] = {
            "RFC_NUMBER": ticket.rfc_number,
            "REQUEST_ID": str(ticket.request_id),
            "EXTERNAL_REFERENCE": str(f.get("external_reference", "")),
            "DESCRIPTION": str(f.get("description", "")),
            "URGENCY_ID": str(f.get("urgency_id", "")),
            "SEVERITY_ID": str(f.get("severity_id", "")),
            "IMPACT_ID": str(f.get("impact_id", "")),
            "STATUS": {
                "STATUS_GUID": guid,
                "STATUS_EN": label,
                "STATUS_ID": status_id,
                "HREF": f"{self.api_root}/statuses/{status_id}",
            },
            "CATALOG_REQUEST": {
                "CODE": catalog_code,
                "SD_CATALOG_ID": "5218",
                "TITLE_EN": catalog_code,
                "CATALOG_REQUEST_PATH": f"Incidents/{catalog_code}",
                "HREF": f"{self.api_root}/catalog-requests/5218",
            },
            "REQUESTOR": {
                "E_MAIL": str(f.get("requestor_mail", "")),
                "LAST_NAME": str(f.get("requestor_name", "")),
            },
            "RECIPIENT": {
                "E_MAIL": str(f.get("recipient_mail", "")),
                "LAST_NAME": str(f.get("recipient_name", "")),
            },
            "LOCATION": {
                "LOCATION_CODE": str(f.get("location_code", "")),
                "LOCATION_ID": str(f.get("location_id", "")),
            },
            "DEPARTMENT": {
                "DEPARTMENT_CODE": str(f.get("department_code", "")),
                "DEPARTMENT_ID": str(f.get("department_id", "")),
            },
            "SUBMIT_DATE_UT": ticket.submitted_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
            "MAX_RESOLUTION_DATE_UT": "",
            "HREF": href,
        }
        for k, v in f.items():
            if k.startswith("e_"):
                rec[k.upper()] = v
        return rec

    # ---- plumbing ---------------------------------------------------------------------------------
    def _fault(self, op: str) -> Fault | None:
        for fault in self.faults:
            if fault.op in (op, "any") and fault.remaining > 0:
                fault.remaining -= 1
                if fault.remaining == 0:
                    self.faults.remove(fault)
                return fault
        return None

    async def _before(self, fault: Fault | None) -> web.Response | None:
        """Faults that act before the request is processed."""
        if fault is None:
            return None
        if fault.kind == "error500":
            return web.json_response({"message": "Internal Server Error"}, status=500)
        if fault.kind == "hang":
            await self._release.wait()
            return web.json_response({"message": "server stopping"}, status=503)
        if fault.kind == "slow":
            await asyncio.sleep(fault.seconds)
        return None

    def _auth(self, request: web.Request, *, write: bool) -> web.Response | None:
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        user: str | None = None
        if scheme.lower() == "basic":
            try:
                name, _, password = base64.b64decode(value, validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                name, password = "", ""
            if name in self.users and self.users[name] == password:
                user = name
        elif scheme.lower() == "bearer" and value in self.tokens:
            user = "token"
        if user is None:
            return web.json_response(
                {"message": "Unauthorized"},
                status=401,
                headers={"WWW-Authenticate": 'Basic realm="EasyVista"'},
            )
        if write and user in self.readonly_users:
            return web.json_response({"message": "Forbidden"}, status=403)
        return None

    def _account(self, request: web.Request) -> web.Response | None:
        if request.match_info["account"] != self.account:
            return web.json_response({"message": "Unknown account"}, status=404)
        return None

    async def _json(self, request: web.Request) -> Any:
        try:
            return await request.json()
        except (ValueError, UnicodeDecodeError):
            return None

    def _logged(self, request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
        self.log.append((request.method, request.path_qs, response.status))
        return response

    def _correlation(self) -> str:
        return str(uuid.uuid4().int % 100000).zfill(5)

    async def _guarded(
        self, request: web.Request, op: str, *, write: bool
    ) -> tuple[web.Response | None, Fault | None]:
        refused = self._account(request) or self._auth(request, write=write)
        if refused is not None:
            return refused, None
        fault = self._fault(op)
        early = await self._before(fault)
        return early, fault

    async def _after_commit(self, request: web.Request, fault: Fault) -> web.Response:
        if fault.kind == "hang_after_commit":
            await self._release.wait()
        return self._drop(request)

    def _drop(self, request: web.Request) -> web.Response:
        """The reply is lost: close the connection without answering."""
        transport = request.transport
        if transport is not None:
            transport.abort()
        return web.Response(status=201)

    # ---- API ----------------------------------------------------------------------------------------
    async def _create(self, request: web.Request) -> web.StreamResponse:
        early, fault = await self._guarded(request, "create", write=True)
        if early is not None:
            return self._logged(request, early)
        body = await self._json(request)
        items = body.get("requests") if isinstance(body, dict) else None
        if not isinstance(items, list) or len(items) != 1 or not isinstance(items[0], dict):
            return self._logged(
                request,
                web.json_response(
                    {"message": 'the body must be {"requests":[{...}]} with exactly one ticket'}, status=400
                ),
            )
        fields = _lower(items[0])
        problem = self._check_ticket(fields)
        if problem is not None:
            return self._logged(request, problem)
        self._counter += 1
        now = self.clock.now()
        ref = format_ticket_number(self.number_pattern, now.astimezone(UTC), self._counter)
        kept = {k: v for k, v in fields.items() if k in REQUEST_FIELDS or k.startswith("e_")}
        self.tickets[ref] = FakeTicket(ref, 1000 + self._counter, kept, now)
        if fault is not None and fault.kind in ("reply_lost", "hang_after_commit"):
            return self._logged(request, await self._after_commit(request, fault))
        return self._logged(
            request, web.json_response({"HREF": f"{self.api_root}/requests/{ref}"}, status=201)
        )

    def _check_ticket(self, fields: Mapping[str, Any]) -> web.Response | None:
        guid = fields.get("catalog_guid")
        code = fields.get("catalog_code")
        if guid is not None:
            if str(guid).strip("{}").upper() not in self.catalogs:
                return _error_590(f"Catalog GUID {guid} doesn't exist - ", self._correlation())
        elif code is not None:
            if str(code) not in self.catalogs.values():
                return _error_590(f"Catalog code {code} doesn't exist - ", self._correlation())
        else:
            return _error_590("catalog_guid or catalog_code is mandatory - ", self._correlation())
        for name, known, table in (
            ("urgency_id", self.urgencies, "SD_URGENCY"),
            ("severity_id", self.severities, "SD_SEVERITY"),
            ("impact_id", self.impacts, "SD_IMPACT"),
        ):
            if name in fields and str(fields[name]) not in known:
                return _error_590(
                    "The INSERT statement conflicted with the FOREIGN KEY constraint "
                    f'"FK_SD_REQUEST_{table}". '
                    f'The conflict occurred in database "EZV", table "{self.account}.{table}", '
                    f"column '{name.upper()}'",
                    self._correlation(),
                )
        for name in ("recipient_id", "recipient_identification", "recipient_mail", "recipient_name"):
            if name in fields and str(fields[name]).lower() not in self.recipients:
                return web.json_response(
                    {"message": "Recipient not found or outside your domains"}, status=406
                )
        return None

    async def _get(self, request: web.Request) -> web.StreamResponse:
        early, _fault = await self._guarded(request, "get", write=False)
        if early is not None:
            return self._logged(request, early)
        ticket = self.tickets.get(request.match_info["ref"])
        if ticket is None:
            return self._logged(request, web.json_response({"message": "Not Found"}, status=404))
        return self._logged(request, web.json_response(self.record(ticket)))

    async def _search(self, request: web.Request) -> web.StreamResponse:
        early, _fault = await self._guarded(request, "search", write=False)
        if early is not None:
            return self._logged(request, early)
        query = request.query.get("search", "")
        found = list(self.tickets.values())
        if query:
            name, sep, value = query.partition(":")
            if not sep:  # a bare number, as some clients send
                name, value = "rfc_number", query
            name = name.strip().lower()
            value = value.strip().strip('"')
            if name == "rfc_number":
                found = [t for t in found if t.rfc_number == value]
            else:
                found = [t for t in found if str(t.fields.get(name, "")) == value]
        records = [self.record(t) for t in found]
        body = {
            "record_count": str(len(records)),
            "total_record_count": str(len(records)),
            "records": records,
            "HREF": f"{self.api_root}/requests",
        }
        return self._logged(request, web.json_response(body))

    async def _put(self, request: web.Request) -> web.StreamResponse:
        body = await self._json(request)
        op = "close" if isinstance(body, dict) and "closed" in _lower(body) else "update"
        early, fault = await self._guarded(request, op, write=True)
        if early is not None:
            return self._logged(request, early)
        ticket = self.tickets.get(request.match_info["ref"])
        if ticket is None:
            return self._logged(request, web.json_response({"message": "Not Found"}, status=404))
        if not isinstance(body, dict):
            return self._logged(request, web.json_response({"message": "malformed JSON"}, status=400))
        fields = _lower(body)
        href = f"{self.api_root}/requests/{ticket.rfc_number}"
        if ticket.status in ("solved", "closed"):
            return self._logged(
                request, _error_590("The ticket is closed and cannot be modified - ", self._correlation())
            )
        if "closed" in fields:
            closed = _lower(fields["closed"]) if isinstance(fields["closed"], dict) else {}
            guid = str(closed.get("status_guid", "")).strip("{}").upper()
            ticket.status = GUID_TO_STATUS.get(guid, "closed") if guid else "closed"
            ticket.closed_at = self.clock.now()
            ticket.closed_with = closed
        elif "suspended" in fields:
            ticket.status = "suspended"
        elif "restarted" in fields:
            if ticket.status != "suspended":
                return self._logged(
                    request, _error_590("The ticket is not suspended - ", self._correlation())
                )
            ticket.status = "new"
        else:
            changes = {k: v for k, v in fields.items() if k in REQUEST_FIELDS or k.startswith("e_")}
            if not changes:
                return self._logged(
                    request,
                    _error_590(
                        "Nothing to update (check fieldnames, if wrong they are ignored) - ",
                        self._correlation(),
                    ),
                )
            for name, known in (
                ("urgency_id", self.urgencies),
                ("severity_id", self.severities),
                ("impact_id", self.impacts),
            ):
                if name in changes and str(changes[name]) not in known:
                    return self._logged(
                        request,
                        _error_590(
                            f"{name.split('_')[0].capitalize()} ID doesn't exist - ", self._correlation()
                        ),
                    )
            ticket.fields.update(changes)
            ticket.updates.append(changes)
        if fault is not None and fault.kind in ("reply_lost", "hang_after_commit"):
            return self._logged(request, await self._after_commit(request, fault))
        return self._logged(request, web.json_response({"HREF": href}, status=201))

    async def _action(self, request: web.Request) -> web.StreamResponse:
        early, fault = await self._guarded(request, "action", write=True)
        if early is not None:
            return self._logged(request, early)
        ticket = self.tickets.get(request.match_info["ref"])
        if ticket is None:
            return self._logged(request, web.json_response({"message": "Not Found"}, status=404))
        body = await self._json(request)
        # the documentation asks for "a table in JSON format"; both {"actions":[{...}]} and {...} are taken
        if (
            isinstance(body, dict)
            and isinstance(_lower(body).get("actions"), list)
            and len(_lower(body)["actions"]) == 1
            and isinstance(_lower(body)["actions"][0], dict)
        ):
            body = _lower(body)["actions"][0]
        if not isinstance(body, dict):
            return self._logged(request, web.json_response({"message": "malformed JSON"}, status=400))
        fields = _lower(body)
        if "action_type_id" not in fields and "action_type_name" not in fields:
            return self._logged(
                request, _error_590("action_type_id or action_type_name is mandatory - ", self._correlation())
            )
        if not ({"group_id", "group_mail", "group_name"} & set(fields)):
            return self._logged(
                request, _error_590("group_id, group_mail or group_name is mandatory - ", self._correlation())
            )
        if ticket.status in ("solved", "closed"):
            return self._logged(
                request, _error_590("The ticket is closed and cannot be modified - ", self._correlation())
            )
        ticket.actions.append({k: v for k, v in fields.items() if k in ACTION_FIELDS})
        action_id = len(ticket.actions)
        if fault is not None and fault.kind in ("reply_lost", "hang_after_commit"):
            return self._logged(request, await self._after_commit(request, fault))
        return self._logged(
            request,
            web.json_response(
                {"HREF": f"{self.api_root}/requests/{ticket.rfc_number}/actions/{action_id}"}, status=201
            ),
        )

    # ---- inspection over HTTP ---------------------------------------------------------------------
    async def _inspect_tickets(self, _request: web.Request) -> web.Response:
        out = []
        for t in self.tickets.values():
            rec = self.record(t)
            rec["ACTIONS"] = t.actions
            rec["UPDATES"] = t.updates
            out.append(rec)
        return web.json_response({"tickets": out})

    async def _inspect_log(self, _request: web.Request) -> web.Response:
        return web.json_response({"requests": [list(x) for x in self.log]})

    async def _add_fault(self, request: web.Request) -> web.Response:
        body = await self._json(request)
        if not isinstance(body, dict):
            return web.json_response({"error": "expected {kind, op, count, seconds}"}, status=400)
        try:
            self.inject(
                str(body.get("kind")),
                op=str(body.get("op", "create")),
                count=int(body.get("count", 1)),
                seconds=float(body.get("seconds", 0)),
            )
        except (TypeError, ValueError) as err:
            return web.json_response({"error": str(err)}, status=400)
        return web.json_response({"faults": [f.__dict__ for f in self.faults]})

    async def _clear_faults(self, _request: web.Request) -> web.Response:
        self.clear_faults()
        return web.json_response({"faults": []})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fake EasyVista REST API on loopback")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--account", default="50004")
    parser.add_argument("--pattern", default="I%y%m%d_%06d")
    parser.add_argument("--user", default="rest")
    parser.add_argument("--password", default="rest-password")
    args = parser.parse_args(argv)

    async def serve() -> None:
        fake = FakeEasyVista(
            account=args.account, number_pattern=args.pattern, users={args.user: args.password}
        )
        await fake.start(args.port)
        print(f"fake EasyVista on {fake.api_root}", flush=True)
        await asyncio.Event().wait()

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
