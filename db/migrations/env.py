"""Alembic environment: migrations run on the connection the store hands over."""

from __future__ import annotations

from alembic import context

from scn_annotator.db.models import Base

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only the store runs migrations
    raise RuntimeError("scn-annotator migrations run through scn_annotator.db.migrate")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=True,  # SQLite alters tables by copying them
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
