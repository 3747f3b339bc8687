"""Durable state: SQLAlchemy 2 async over SQLite (default) or PostgreSQL, migrated by Alembic at start."""

from callipso_agent.store.db import Store

__all__ = ["Store"]
