"""Incidents, their timeline, maintenance windows, and the high-availability lease tables.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
ACTIVE = sa.text("state != 'resolved'")


def upgrade() -> None:
    op.create_table(
        "incidents",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("key", sa.String(400), nullable=False),
        sa.Column("rule", sa.String(100), nullable=False),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("site", sa.String(64)),
        sa.Column("device", sa.String(128)),
        sa.Column("labels", sa.JSON, nullable=False),
        sa.Column("services", sa.JSON, nullable=False),
        sa.Column(
            "parent_id", sa.Integer, sa.ForeignKey("incidents.id", name="fk_incidents_parent_id_incidents")
        ),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("severity", sa.Integer, nullable=False),
        sa.Column("priority", sa.String(2), nullable=False),
        sa.Column("urgency", sa.String(2), nullable=False),
        sa.Column("impact", sa.Integer, nullable=False),
        sa.Column("priority_reasons", sa.JSON, nullable=False),
        sa.Column("outage", sa.String(16), nullable=False),
        sa.Column("user_impact", sa.String(16), nullable=False),
        sa.Column("technical_impact", sa.String(16), nullable=False),
        sa.Column("title_fr", sa.Text, nullable=False),
        sa.Column("title_en", sa.Text, nullable=False),
        sa.Column("detail", sa.Text),
        sa.Column("runbook", sa.String(200)),
        sa.Column("service_kind", sa.String(32)),
        sa.Column("major", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("opened_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("alarm_at", TS, nullable=False),
        sa.Column("ticket_created_at", TS),
        sa.Column("daily_check_failed_at", TS),
        sa.Column("clock_start", TS, nullable=False),
        sa.Column("deadlines", sa.JSON, nullable=False),
        sa.Column("acknowledged_at", TS),
        sa.Column("acknowledged_by", sa.String(128)),
        sa.Column("first_information_at", TS),
        sa.Column("intervention_at", TS),
        sa.Column("cleared_at", TS),
        sa.Column("last_signal_at", TS, nullable=False),
        sa.Column("resolved_at", TS),
        sa.Column("resolved_by", sa.String(128)),
        sa.Column("suppressed_by", sa.String(200)),
        sa.Column("itsm_ref", sa.String(64)),
        sa.Column("occurrences", sa.Integer, nullable=False, server_default="1"),
        sa.Column("reopen_count", sa.Integer, nullable=False, server_default="0"),
        sqlite_autoincrement=True,
    )
    # At most one unresolved incident per problem key: the store, not the code, prevents duplicates.
    op.create_index(
        "uq_incidents_active_key",
        "incidents",
        ["key"],
        unique=True,
        sqlite_where=ACTIVE,
        postgresql_where=ACTIVE,
    )
    op.create_index("ix_incidents_state", "incidents", ["state"])
    op.create_index("ix_incidents_site", "incidents", ["site"])
    op.create_index("ix_incidents_device", "incidents", ["device"])
    op.create_index("ix_incidents_parent_id", "incidents", ["parent_id"])
    op.create_index("ix_incidents_key", "incidents", ["key"])

    op.create_table(
        "incident_timeline",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "incident_id",
            sa.Integer,
            sa.ForeignKey(
                "incidents.id", ondelete="CASCADE", name="fk_incident_timeline_incident_id_incidents"
            ),
            nullable=False,
        ),
        sa.Column("at", TS, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("text_en", sa.Text),
        sa.Column("actor", sa.String(128)),
        sa.Column("data", sa.JSON, nullable=False),
        sa.Column("dedup", sa.String(128)),
        sa.UniqueConstraint("incident_id", "dedup", name="uq_incident_timeline_dedup"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_incident_timeline_incident_id", "incident_timeline", ["incident_id"])

    op.create_table(
        "maintenance_windows",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("targets", sa.JSON, nullable=False),
        sa.Column("start_at", TS, nullable=False),
        sa.Column("end_at", TS, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sqlite_autoincrement=True,
    )

    op.create_table(
        "ha_agents",
        sa.Column("agent", sa.String(128), primary_key=True),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
    )
    op.create_table(
        "ha_leases",
        sa.Column("unit", sa.String(128), primary_key=True),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("acquired_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
    )
    op.create_table(
        "ha_job_runs",
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("run_key", sa.String(128), nullable=False),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("finished_at", TS),
        sa.PrimaryKeyConstraint("name", "run_key", name="pk_ha_job_runs"),
    )


def downgrade() -> None:
    op.drop_table("ha_job_runs")
    op.drop_table("ha_leases")
    op.drop_table("ha_agents")
    op.drop_table("maintenance_windows")
    op.drop_index("ix_incident_timeline_incident_id", table_name="incident_timeline")
    op.drop_table("incident_timeline")
    for name in (
        "ix_incidents_key",
        "ix_incidents_parent_id",
        "ix_incidents_device",
        "ix_incidents_site",
        "ix_incidents_state",
        "uq_incidents_active_key",
    ):
        op.drop_index(name, table_name="incidents")
    op.drop_table("incidents")
