"""The ``outbox`` table: durable outbound jobs (SQLAlchemy Core, on the store's metadata).

The matching migration is ``store/migrations/versions/0002c_outbox.py``.
"""

from __future__ import annotations

from sqlalchemy import JSON, Boolean, Column, DateTime, Index, Integer, String, Table, Text

from callipso_agent.store.tables import metadata

outbox = Table(
    "outbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(64), nullable=False),  # e.g. itsm.create, notify.sms
    Column("target", String(128), nullable=False),  # the receiving system; concurrency is per target
    Column("payload", JSON, nullable=False),
    Column("idempotency_key", String(200), nullable=False, unique=True),
    Column("ordering_key", String(200)),  # jobs sharing it run one after the other, in id order
    Column("incident_id", Integer),
    Column("state", String(16), nullable=False),  # pending | in_flight | done | failed | dead
    Column("attempts", Integer, nullable=False, default=0),
    Column("max_attempts", Integer, nullable=False),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False),
    Column("lease_owner", String(64)),
    Column("lease_until", DateTime(timezone=True)),
    Column("uncertain", Boolean, nullable=False, default=False),  # a previous attempt may have gone through
    Column("version", Integer, nullable=False, default=0),  # optimistic concurrency for claims
    Column("last_error", Text),
    Column("result", JSON),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("ix_outbox_state_next", "state", "next_attempt_at"),
    Index("ix_outbox_ordering_key", "ordering_key"),
    Index("ix_outbox_incident_id", "incident_id"),
)
