"""Carries out ``notify.*`` outbox jobs through the configured channels."""

from __future__ import annotations

from collections.abc import Mapping

from callipso_agent.notify.channels import Channel
from callipso_agent.notify.texts import Rendered
from callipso_agent.outbox.errors import FinalDelivery
from callipso_agent.outbox.jobs import Delivered, Job
from callipso_agent.ports import IncidentSource

SKIPPED = {
    "fr": "sans objet : incident {state} entre-temps",
    "en": "not sent: the incident was {state} meanwhile",
}
STATE_WORDS = {
    "fr": {"resolved": "résolu", "acknowledged": "pris en compte"},
    "en": {"resolved": "resolved", "acknowledged": "acknowledged"},
}


class NotifyDeliverer:
    def __init__(self, channels: Mapping[str, Channel], incidents: IncidentSource | None = None) -> None:
        self.channels = dict(channels)
        self.incidents = incidents

    async def deliver(self, job: Job) -> Delivered:
        payload = job.payload
        name = str(payload.get("channel"))
        channel = self.channels.get(name)
        if channel is None:
            raise FinalDelivery(f"no channel named {name!r} in the current configuration")
        message = Rendered.from_dict(payload["message"])
        skip_if = list(payload.get("skip_if") or [])
        if skip_if and self.incidents is not None and job.incident_id is not None:
            incident = await self.incidents.get(job.incident_id)
            if incident is not None and incident.state.value in skip_if:
                state = STATE_WORDS[message.lang].get(incident.state.value, incident.state.value)
                return Delivered(SKIPPED[message.lang].format(state=state), {"skipped": incident.state.value})
        summary = await channel.send(
            message,
            [str(r) for r in payload.get("recipients") or []],
            key=job.idempotency_key,
            meta=dict(payload.get("meta") or {}),
        )
        return Delivered(summary, {"channel": name})
