"""The agent's peers down, then back: the real daemon on the lab, with EasyVista (fake), a real SMTP server
(aiosmtpd), the SMS gateway (fake), a webhook receiver and a real Prometheus.

While EasyVista refuses connections, SMTP is down, the SMS gateway throttles (429 + Retry-After), the
webhook answers 503 and Prometheus stops scraping, the agent keeps polling and opens the incident of a
cut-off site; the backlog shows on ``/metrics`` (``callipso_outbox_pending{target}``, oldest age,
attempts) and reached Prometheus before it stopped. When the peers come back (EasyVista first answering
500, then committing a ticket without answering), every delivery catches up exactly once: one ticket per
incident, one e-mail / SMS / webhook call per notification, and the resolution closes the ticket once
even when EasyVista's reply to the close is lost.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from tests.helpers.lab_agent import LabAgent, wait_for
from tests.helpers.peers import API_TOKEN, CHANNELS, REFERENCE_PREFIX, Peers
from tests.helpers.prometheus import Prometheus

pytestmark = pytest.mark.slow

SITES = "HD13,AUBAGNE-MDS,GARDANNE-MDS"
CUT = "GARDANNE-MDS"
INTERVAL = 2.0
TARGETS = ("easyvista", *CHANNELS)


@pytest.fixture
def lab(tmp_path: Path, peers: Peers) -> Iterator[LabAgent]:
    agent = LabAgent(tmp_path, interval=INTERVAL, sites=SITES, overlay=peers.overlay(tmp_path / "overlay"))
    try:
        yield agent
    finally:
        agent.stop()


def _pending(lab: LabAgent) -> dict[str, float | None]:
    return {t: lab.metric("callipso_outbox_pending", target=t) for t in TARGETS}


def _last_polls(lab: LabAgent) -> dict[str, str | None]:
    return {d["name"]: d.get("last_poll") for d in lab.api("/api/v1/devices")["devices"]}


def _site_incident(lab: LabAgent) -> dict | None:
    opened = lab.api("/api/v1/incidents?state=open")["incidents"]
    return next((i for i in opened if i["key"] == f"site_unreachable:{CUT}"), None)


def test_peers_down_then_back_deliver_exactly_once(lab: LabAgent, peers: Peers, tmp_path: Path) -> None:
    (tmp_path / "prometheus").mkdir()
    prom = Prometheus(tmp_path / "prometheus", lab.metrics_target, [], interval="1s")
    # every peer misbehaves before the agent starts
    peers.ev_down()
    peers.smtp_down()
    peers.sms_fault("throttle", 3)  # 429 with Retry-After: 2
    peers.webhook_fault(503, 3)
    prom.start()
    try:
        lab.start()
        wait_for(lambda: lab.api("/healthz")["status"] == "ok", 90, "/healthz")
        wait_for(lambda: lab.lab("fault", "unreachable", CUT).returncode == 0, 30, "fault applied")

        # the agent keeps polling and opens the site's incident although nothing can be delivered
        site = wait_for(lambda: _site_incident(lab), 180, "site incident while the peers are down")
        wait_for(lambda: (lab.metric("callipso_outbox_pending", target="easyvista") or 0) >= 1
                 and (lab.metric("callipso_outbox_pending", target="mail-noc") or 0) >= 1, 30, "backlog on /metrics")
        wait_for(lambda: (lab.metric("callipso_outbox_attempts_total", target="easyvista", outcome="retry") or 0) >= 2
                 and (lab.metric("callipso_outbox_attempts_total", target="mail-noc", outcome="retry") or 0) >= 2,
                 60, "failed attempts counted")
        assert (lab.metric("callipso_outbox_oldest_pending_age_seconds", target="easyvista") or 0) > 0
        assert not peers.tickets() and not peers.emails()
        # the throttled SMS gateway and the failing webhook catch up on their own, each message once
        wait_for(lambda: peers.sms() and peers.hooks(), 60, "SMS and webhook delivered after 429/503")
        wait_for(lambda: prom.query('max_over_time(callipso_outbox_pending{target="easyvista"}[10m])')
                 ["data"]["result"], 30, "backlog scraped by Prometheus")

        # Prometheus stops scraping: nothing piles up in the agent, polling goes on
        prom.stop()
        before = _last_polls(lab)
        # every device is polled again (the lab's pace under a cut-off site is a finding of its own: no timing)
        wait_for(lambda: all(v != before[n] for n, v in _last_polls(lab).items()), 90, "every device polled again")
        status, ready = lab.ready()
        assert status == 200 and ready["store_writable"], ready

        # the peers come back; EasyVista first answers 500 twice, then commits a ticket without answering
        peers.ev_fault("error500", count=2)
        peers.ev_fault("hang_after_commit", count=1)
        peers.ev_up()
        peers.smtp_up()
        wait_for(lambda: all(v == 0 for v in _pending(lab).values()), 120, "every backlog caught up")
        prom.start()
        wait_for(lambda: prom.query('up{job="callipso-agent"} == 1')["data"]["result"], 60, "scraped again")

        # resolving the incident closes its ticket once, although EasyVista's answer to the close is lost
        peers.ev_fault("hang_after_commit", op="close", count=1)
        lab.post(f"/api/v1/incidents/{site['id']}/resolve", {"reason": "liaison rétablie"}, API_TOKEN)
        wait_for(lambda: any(t["status"] in ("solved", "closed") for t in peers.tickets()), 60, "ticket closed")
        wait_for(lambda: all(v == 0 for v in _pending(lab).values()), 120, "resolution delivered")
        wait_for(lambda: sum(1 for e in peers.emails() if "sol" in e["subject"].lower()) >= 1, 30,
                 "resolution e-mail")
    finally:
        prom.stop()

    # the lab keeps running: wait for a moment when nothing is pending and the three channels agree
    def settled() -> tuple[list, list, list] | None:
        if any(v != 0 for v in _pending(lab).values()):
            return None
        emails, sms, hooks = peers.emails(), peers.sms(), peers.hooks()
        return (emails, sms, hooks) if len(emails) == len(sms) == len(hooks) else None

    emails, sms, hooks = wait_for(settled, 60, "no delivery pending and the channels agreeing")
    tickets = peers.tickets()
    refs = Counter(t["external_reference"] for t in tickets)
    assert refs and all(n == 1 for n in refs.values()), refs  # one ticket per incident
    assert all(r.startswith(f"{REFERENCE_PREFIX}-") for r in refs)
    site_ticket = [t for t in tickets if t["external_reference"].startswith(f"{REFERENCE_PREFIX}-{site['id']}-")]
    assert len(site_ticket) == 1 and site_ticket[0]["status"] == "solved", tickets
    ticketed = {i["id"]: i.get("itsm_ref") for i in lab.api("/api/v1/incidents")["incidents"] if i.get("itsm_ref")}
    assert {t["ref"] for t in tickets} <= set(ticketed.values()), (ticketed, tickets)  # each recorded on its incident
    assert set(ticketed.values()) <= {t["ref"] for t in peers.tickets()}, (ticketed, tickets)

    assert not [k for k, n in Counter(e["message_id"] for e in emails).items() if n > 1], emails
    assert not [k for k, n in Counter(m["ref"] for m in sms).items() if n > 1], sms
    assert not [k for k, n in Counter(h["key"] for h in hooks).items() if n > 1], hooks
    # every notification reached every channel: same incidents and events on the three of them
    hook_events = Counter((h["incident"], h["event"]) for h in hooks)
    assert (site["id"], "opened") in hook_events and (site["id"], "resolved") in hook_events, hook_events
    assert all(n == 1 for n in hook_events.values()), hook_events
    assert {int(e["incident"]) for e in emails} == {h["incident"] for h in hooks}

    # the throttled SMS gateway was not called again before its Retry-After (2 s) ran out
    calls = peers.sms_requests()
    for (t429, status), (t_next, _) in itertools.pairwise(calls):
        if status == 429:
            assert t_next - t429 >= 1.9, calls
    assert sum(1 for _, s in calls if s == 429) == 3
    assert lab.metric("callipso_outbox_dead", target="easyvista") == 0
    # nothing left behind: the oldest-age gauges come back to 0 with the backlog
    wait_for(lambda: all(lab.metric("callipso_outbox_oldest_pending_age_seconds", target=t) == 0 for t in TARGETS),
             60, "oldest undelivered age back to 0")
    print(f"\nFIGURES tickets={len(tickets)} emails={len(emails)} sms={len(sms)} webhooks={len(hooks)} "
          f"sms_429={sum(1 for _, s in calls if s == 429)} at={datetime.now().astimezone():%Y-%m-%d %H:%M}")
