"""Table definitions (SQLAlchemy Core). Every change here comes with an Alembic revision."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

from callipso_agent.store.types import UtcDateTime

metadata = MetaData(naming_convention={
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
})

device_state = Table(
    "device_state", metadata,
    Column("device", String(128), primary_key=True),
    Column("profile", String(64)),
    Column("last_poll_at", DateTime(timezone=True)),
    Column("last_success_at", DateTime(timezone=True)),
    Column("last_error", String(64)),
    Column("last_error_text", Text),
    Column("consecutive_failures", Integer, nullable=False, default=0),
    Column("last_duration", Float),
    Column("system", JSON),
)

audit_log = Table(
    "audit_log", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("actor", String(128), nullable=False),
    Column("action", String(64), nullable=False),
    Column("target", String(256)),
    Column("detail", JSON),
)

# ---- incidents (revision 0002) -----------------------------------------------------------------------
# One row per problem. ``key`` names the problem (rule + device or site + key labels); the partial unique
# index lets at most one row per key be unresolved, so restarts and replicas never open a duplicate.
# ``state``: open | acknowledged | suppressed (opened inside a maintenance window) | resolved.
ACTIVE_WHERE = text("state != 'resolved'")

incidents = Table(
    "incidents", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("key", String(400), nullable=False),
    Column("rule", String(100), nullable=False),
    Column("scope", String(16), nullable=False),  # device | site
    Column("site", String(64)),
    Column("device", String(128)),
    Column("labels", JSON, nullable=False),
    Column("services", JSON, nullable=False),
    Column("parent_id", Integer, ForeignKey("incidents.id")),
    Column("state", String(16), nullable=False),
    Column("severity", Integer, nullable=False),
    Column("priority", String(2), nullable=False),
    Column("urgency", String(2), nullable=False),
    Column("impact", Integer, nullable=False),
    Column("priority_reasons", JSON, nullable=False),
    Column("outage", String(16), nullable=False),
    Column("user_impact", String(16), nullable=False),
    Column("technical_impact", String(16), nullable=False),
    Column("title_fr", Text, nullable=False),
    Column("title_en", Text, nullable=False),
    Column("detail", Text),
    Column("runbook", String(200)),
    Column("service_kind", String(32)),
    Column("major", Boolean, nullable=False, default=False),
    Column("opened_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("alarm_at", UtcDateTime, nullable=False),
    Column("ticket_created_at", UtcDateTime),
    Column("daily_check_failed_at", UtcDateTime),
    Column("clock_start", UtcDateTime, nullable=False),
    Column("deadlines", JSON, nullable=False),
    Column("acknowledged_at", UtcDateTime),
    Column("acknowledged_by", String(128)),
    Column("first_information_at", UtcDateTime),
    Column("intervention_at", UtcDateTime),
    Column("cleared_at", UtcDateTime),
    Column("last_signal_at", UtcDateTime, nullable=False),
    Column("resolved_at", UtcDateTime),
    Column("resolved_by", String(128)),
    Column("suppressed_by", String(200)),
    Column("itsm_ref", String(64)),
    Column("occurrences", Integer, nullable=False, default=1),
    Column("reopen_count", Integer, nullable=False, default=0),
    Index("uq_incidents_active_key", "key", unique=True, sqlite_where=ACTIVE_WHERE,
          postgresql_where=ACTIVE_WHERE),
    Index("ix_incidents_state", "state"),
    Index("ix_incidents_site", "site"),
    Index("ix_incidents_device", "device"),
    Index("ix_incidents_parent_id", "parent_id"),
    Index("ix_incidents_key", "key"),
    sqlite_autoincrement=True,
)

# Everything that happened to an incident, in order. ``dedup`` makes one-off entries (a deadline at
# risk, a deadline missed) idempotent across restarts and replicas.
incident_timeline = Table(
    "incident_timeline", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("incident_id", Integer, ForeignKey("incidents.id", ondelete="CASCADE"), nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("text", Text, nullable=False),
    Column("text_en", Text),
    Column("actor", String(128)),
    Column("data", JSON, nullable=False),
    Column("dedup", String(128)),
    UniqueConstraint("incident_id", "dedup", name="uq_incident_timeline_dedup"),
    Index("ix_incident_timeline_incident_id", "incident_id"),
    sqlite_autoincrement=True,
)

# Maintenance windows added through the API (those of checks/maintenance.yaml stay in the file).
maintenance_windows = Table(
    "maintenance_windows", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False),
    Column("scope", String(16), nullable=False),  # site | device | service
    Column("targets", JSON, nullable=False),
    Column("start_at", UtcDateTime, nullable=False),
    Column("end_at", UtcDateTime, nullable=False),
    Column("reason", Text, nullable=False),
    Column("created_by", String(128), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    sqlite_autoincrement=True,
)

# ---- high availability: agents sharing one PostgreSQL ----------------------------------------------
ha_agents = Table(
    "ha_agents", metadata,
    Column("agent", String(128), primary_key=True),
    Column("started_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
)

ha_leases = Table(
    "ha_leases", metadata,
    Column("unit", String(128), primary_key=True),  # a lease unit: a site code by default
    Column("owner", String(128), nullable=False),
    Column("acquired_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
)

ha_job_runs = Table(
    "ha_job_runs", metadata,
    Column("name", String(128), nullable=False),
    Column("run_key", String(128), nullable=False),
    Column("owner", String(128), nullable=False),
    Column("started_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("finished_at", UtcDateTime),
    PrimaryKeyConstraint("name", "run_key", name="pk_ha_job_runs"),
)

# The daily météo, one row per day (revision 0003_meteo).
meteo_report = Table(
    "meteo_report", metadata,
    Column("day", Date, primary_key=True),
    Column("generated_at", DateTime(timezone=True), nullable=False),
    Column("lang", String(8), nullable=False),
    Column("data", JSON, nullable=False),
    Column("html", Text, nullable=False),
    Column("text", Text, nullable=False),
    Column("sent_at", DateTime(timezone=True)),
    Column("send_error", Text),
)
