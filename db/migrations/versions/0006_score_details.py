"""A score's details column says what it holds.

The column was called ``per_landmark`` but held a dictionary with the per-landmark
values, the unit and a strategy's extras under their own keys; it is ``details``
now, and :class:`~scn_annotator.db.records.ScoreRecord` reads it into typed fields.
The values are untouched.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 16:00:00
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("scores", schema=None) as batch_op:
        batch_op.alter_column("per_landmark", new_column_name="details")


def downgrade() -> None:
    with op.batch_alter_table("scores", schema=None) as batch_op:
        batch_op.alter_column("details", new_column_name="per_landmark")
