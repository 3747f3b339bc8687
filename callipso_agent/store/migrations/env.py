"""Alembic environment: migrations run on the connection the agent hands over at start."""

from alembic import context

from callipso_agent.store.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - the agent always passes its connection
    raise RuntimeError("run migrations through callipso_agent.store.Store.migrate()")
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True,
                  compare_type=True)
with context.begin_transaction():
    context.run_migrations()
