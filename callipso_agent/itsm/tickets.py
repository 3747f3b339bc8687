"""Incidents → EasyVista tickets, through the outbox.

:class:`ItsmPublisher` turns incident changes into outbox jobs (create, comment, update, resolve), all
sharing one ordering key per incident so a ticket is created before it is commented on or closed.
:class:`EasyVistaDeliverer` carries the jobs out. The idempotency key of the create job is also the
ticket's ``external_reference``: when a previous attempt's outcome is unknown (timeout, reply lost,
worker killed), the deliverer searches EasyVista for it before creating anything, so an incident
never gets two tickets.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC
from typing import Any

import structlog

from callipso_agent.itsm.config import STATUS_CLOSED, STATUS_SOLVED, TicketMapping
from callipso_agent.itsm.easyvista import EasyVistaClient
from callipso_agent.itsm.errors import ItsmError, ItsmFunctionalError
from callipso_agent.model import IncidentView
from callipso_agent.notify.texts import Lang, Texts
from callipso_agent.outbox.errors import FinalDelivery, RetryableDelivery
from callipso_agent.outbox.jobs import Delivered, Job
from callipso_agent.outbox.store import Outbox
from callipso_agent.ports import ChangeKind, IncidentChange, IncidentSource

log = structlog.get_logger()

CREATE, UPDATE, COMMENT, RESOLVE = "itsm.create", "itsm.update", "itsm.comment", "itsm.resolve"

TEXTS = {
    "fr": {
        "label": "Ticket EasyVista",
        "created": "ticket {ref} créé",
        "found": "ticket {ref} retrouvé (créé par un essai précédent)",
        "commented": "commentaire ajouté au ticket {ref}",
        "updated": "ticket {ref} mis à jour",
        "unchanged": "ticket {ref} : rien à modifier",
        "resolved": "ticket {ref} résolu",
        "already": "ticket {ref} déjà clos",
        "no_ticket": "pas de ticket EasyVista pour cet incident",
        "ack": "Pris en compte par {actor}",
        "note": "Note de {actor}",
        "resolve": "Résolu par {actor}",
        "update": "Incident mis à jour",
    },
    "en": {
        "label": "EasyVista ticket",
        "created": "ticket {ref} created",
        "found": "ticket {ref} found (created by an earlier attempt)",
        "commented": "comment added to ticket {ref}",
        "updated": "ticket {ref} updated",
        "unchanged": "ticket {ref}: nothing to change",
        "resolved": "ticket {ref} resolved",
        "already": "ticket {ref} already closed",
        "no_ticket": "no EasyVista ticket for this incident",
        "ack": "Acknowledged by {actor}",
        "note": "Note from {actor}",
        "resolve": "Resolved by {actor}",
        "update": "Incident updated",
    },
}


class _SafeDict(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


class TicketMapper:
    """Incident → EasyVista fields, from the tenant-specific :class:`TicketMapping`."""

    def __init__(self, mapping: TicketMapping, texts: Texts) -> None:
        self.mapping = mapping
        self.texts = texts

    def _priority_fields(self, incident: IncidentView) -> dict[str, Any]:
        pf = self.mapping.priorities.get(incident.priority)
        return {k: v for k, v in (pf.model_dump() if pf else {}).items() if v is not None}

    def _custom(self, incident: IncidentView) -> dict[str, str]:
        values = _SafeDict(
            id=incident.id,
            key=incident.key,
            title=incident.title,
            priority=incident.priority,
            site=incident.site or "",
            device=incident.device or "",
            services=",".join(incident.services),
            rule=incident.rule or "",
            opened_at=incident.opened_at.astimezone(UTC).isoformat(),
        )
        return {name: template.format_map(values) for name, template in self.mapping.custom_fields.items()}

    def create_fields(self, incident: IncidentView, external_reference: str) -> dict[str, Any]:
        m = self.mapping
        fields: dict[str, Any] = {}
        if m.catalog_guid:
            fields["catalog_guid"] = m.catalog_guid
        if m.catalog_code:
            fields["catalog_code"] = m.catalog_code
        fields["external_reference"] = external_reference
        fields["description"] = self.texts.ticket_description(incident)
        if m.send_title:
            fields["title"] = incident.title
        fields.update(self._priority_fields(incident))
        site = m.sites.get(incident.site or "") or m.default_site
        if site is not None:
            fields.update({k: v for k, v in site.model_dump().items() if v is not None})
        for name in (
            "requestor_mail",
            "requestor_identification",
            "requestor_name",
            "recipient_mail",
            "recipient_identification",
            "recipient_name",
            "origin",
        ):
            value = getattr(m, name)
            if value is not None:
                fields[name] = value
        if m.asset_from_device and incident.device:
            fields["asset_name"] = incident.device
        fields["submit_date"] = incident.opened_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
        fields.update(self._custom(incident))
        return fields

    def update_fields(self, incident: IncidentView) -> dict[str, Any]:
        return {**self._priority_fields(incident), **self._custom(incident)}

    def action_fields(self, text: str) -> dict[str, Any] | None:
        action = self.mapping.comment
        if action is None:
            return None
        fields = {k: v for k, v in action.model_dump().items() if v is not None}
        fields["description"] = text
        return fields

    def close_fields(self, reason: str) -> dict[str, Any]:
        guid = self.mapping.status_guid or (STATUS_SOLVED if self.mapping.resolve_as == "solved" else None)
        closed: dict[str, Any] = {"comment": reason}
        if guid:
            closed["Status_GUID"] = guid
        return closed


class ItsmPublisher:
    """Incident changes → outbox jobs for EasyVista."""

    def __init__(
        self,
        outbox: Outbox,
        mapper: TicketMapper,
        *,
        target: str = "easyvista",
        reference_prefix: str = "CALLIPSO",
        priorities: tuple[str, ...] = ("P1", "P2", "P3", "P4"),
        language: Lang = "fr",
    ) -> None:
        self.outbox = outbox
        self.mapper = mapper
        self.target = target
        self.prefix = reference_prefix
        self.priorities = priorities
        self.t = TEXTS[language]

    def external_reference(self, incident: IncidentView) -> str:
        """Stable per incident, unique across store resets (the opening minute is part of it)."""
        return f"{self.prefix}-{incident.id}-{incident.opened_at.astimezone(UTC):%y%m%d%H%M}"

    def _ordering(self, incident: IncidentView) -> str:
        return f"{self.target}:incident:{incident.id}"

    async def _enqueue(self, kind: str, incident: IncidentView, key: str, payload: dict[str, Any]) -> None:
        payload = {"label": self.t["label"], "create_key": self.external_reference(incident), **payload}
        await self.outbox.enqueue(
            kind,
            self.target,
            payload,
            key=key,
            incident_id=incident.id,
            ordering_key=self._ordering(incident),
        )

    async def on_change(self, change: IncidentChange) -> None:
        incident = change.incident
        ext = self.external_reference(incident)
        if change.kind is ChangeKind.OPENED:
            if incident.priority not in self.priorities:
                return
            await self._enqueue(
                CREATE,
                incident,
                ext,
                {"fields": self.mapper.create_fields(incident, ext), "external_reference": ext},
            )
            return
        if await self.outbox.by_key(ext) is None:
            return  # this incident has no ticket (priority not ticketed, or opened before the connector)
        stamp = f"{change.at.astimezone(UTC):%Y%m%dT%H%M%S.%f}"
        actor = change.actor or "callipso"
        if change.kind is ChangeKind.UPDATED:
            await self._enqueue(
                UPDATE,
                incident,
                f"{ext}:update:{stamp}",
                {"fields": self.mapper.update_fields(incident), "text": change.text or ""},
            )
        elif change.kind in (ChangeKind.ACKNOWLEDGED, ChangeKind.NOTE):
            head = self.t["ack" if change.kind is ChangeKind.ACKNOWLEDGED else "note"].format(actor=actor)
            text = f"{head} : {change.text}" if change.text else head
            digest = hashlib.sha256(text.encode()).hexdigest()[:12]
            await self._enqueue(COMMENT, incident, f"{ext}:comment:{stamp}:{digest}", {"text": text})
        elif change.kind is ChangeKind.RESOLVED:
            head = self.t["resolve"].format(actor=actor)
            reason = f"{head} : {change.text}" if change.text else head
            await self._enqueue(
                RESOLVE, incident, f"{ext}:resolve", {"closed": self.mapper.close_fields(reason)}
            )


class EasyVistaDeliverer:
    """Runs ``itsm.*`` outbox jobs against EasyVista."""

    def __init__(
        self,
        client: EasyVistaClient,
        incidents: IncidentSource,
        outbox: Outbox,
        mapper: TicketMapper,
        *,
        language: Lang = "fr",
    ) -> None:
        self.client = client
        self.incidents = incidents
        self.outbox = outbox
        self.mapper = mapper
        self.t = TEXTS[language]

    async def deliver(self, job: Job) -> Delivered:
        if job.kind == CREATE:
            return await self._create(job)
        ref = await self._ticket_ref(job)
        if job.kind == COMMENT:
            fields = self.mapper.action_fields(str(job.payload["text"]))
            if fields is None:
                return Delivered(self.t["commented"].format(ref=ref) + " (—)", {"ref": ref, "skipped": True})
            await self.client.add_action(ref, fields)
            return Delivered(self.t["commented"].format(ref=ref), {"ref": ref})
        if job.kind == UPDATE:
            fields = dict(job.payload.get("fields") or {})
            if not fields:
                return Delivered(self.t["unchanged"].format(ref=ref), {"ref": ref})
            try:
                await self.client.update_ticket(ref, fields)
            except ItsmFunctionalError as err:
                if "nothing to update" in err.detail.lower():
                    return Delivered(self.t["unchanged"].format(ref=ref), {"ref": ref})
                raise
            return Delivered(self.t["updated"].format(ref=ref), {"ref": ref})
        if job.kind == RESOLVE:
            return await self._resolve(job, ref)
        raise FinalDelivery(f"unknown ITSM job kind {job.kind!r}")

    async def _create(self, job: Job) -> Delivered:
        ext = str(job.payload["external_reference"])
        found = None
        if job.uncertain:
            found = await self.client.find_by_external_reference(ext)
            log.info(
                "easyvista_lookup_before_create", external_reference=ext, found=found.ref if found else None
            )
        if found is not None:
            ticket, summary = found, self.t["found"].format(ref=found.ref)
        else:
            ticket = await self.client.create_ticket(dict(job.payload["fields"]))
            summary = self.t["created"].format(ref=ticket.ref)
        if job.incident_id is not None:
            try:
                await self.incidents.set_itsm_ref(job.incident_id, ticket.ref)
            except Exception as err:
                log.exception("set_itsm_ref_failed", incident=job.incident_id, ref=ticket.ref)
                raise RetryableDelivery(
                    f"ticket {ticket.ref} created but not recorded: {err}", uncertain=True
                ) from err
        return Delivered(summary, {"ref": ticket.ref, "href": ticket.href})

    async def _ticket_ref(self, job: Job) -> str:
        if job.incident_id is not None:
            incident = await self.incidents.get(job.incident_id)
            if incident is not None and incident.itsm_ref:
                return incident.itsm_ref
        create = await self.outbox.by_key(str(job.payload.get("create_key", "")))
        if create is not None and create.result and create.result.get("ref"):
            return str(create.result["ref"])
        raise FinalDelivery(self.t["no_ticket"])

    async def _resolve(self, job: Job, ref: str) -> Delivered:
        try:
            await self.client.close_ticket(ref, dict(job.payload.get("closed") or {}))
        except ItsmError as err:
            # a previous attempt may have closed it (reply lost): a closed ticket answers 590 to a close
            if not (isinstance(err, ItsmFunctionalError) or job.uncertain):
                raise
            if await self._is_closed(ref):
                return Delivered(self.t["already"].format(ref=ref), {"ref": ref})
            raise
        return Delivered(self.t["resolved"].format(ref=ref), {"ref": ref})

    async def _is_closed(self, ref: str) -> bool:
        record = await self.client.get_ticket(ref)
        status = {str(k).upper(): v for k, v in record.items()}.get("STATUS")
        guid = ""
        if isinstance(status, Mapping):
            guid = str({str(k).upper(): v for k, v in status.items()}.get("STATUS_GUID", ""))
        guid = guid.strip("{}").upper()
        return guid in (STATUS_SOLVED, STATUS_CLOSED)
