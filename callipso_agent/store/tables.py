"""Table definitions (SQLAlchemy Core). Every change here comes with an Alembic revision."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Column,
    Date,
    DateTime,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

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

# The daily météo, one row per day (revision 0002b_meteo).
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
