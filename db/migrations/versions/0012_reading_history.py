"""Readings in the history: each change to a reader's reading is an event naming the reader.

The consensus always had its history and per-person undo; a reading had neither,
so a reader's slip could not be taken back and a reviewer could not see who changed
a reading when. Existing events are the consensus's (``reader`` NULL).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05 02:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("reader", sa.String(length=128), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.drop_column("reader")
