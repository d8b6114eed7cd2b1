"""Landmarks say which structure they belong to.

A spine's 68 corners are 17 vertebrae of four; the model learns such a layout in
two stages (``engine/objects.py``). Which landmarks belong together is inferred
from their names (``T1_tl`` .. ``T1_br``), and where a names file says otherwise the
project keeps that answer here. Existing projects get NULL: inferred, as before.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 20:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("landmarks", sa.Column("object_name", sa.String(length=128), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("landmarks", schema=None) as batch_op:
        batch_op.drop_column("object_name")
