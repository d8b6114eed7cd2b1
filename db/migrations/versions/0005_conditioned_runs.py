"""Prediction runs conditioned on an annotator's confirmed landmarks.

When the app re-places the proposals after each correction, the proposals on
screen are a prediction of their own; a correction of one must say so. Such a run
is stored like any other, born superseded (so it never replaces the model's own
run, its heatmaps or its scores), with ``hints`` naming the landmarks it was
conditioned on.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 05:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("image_predictions", sa.Column("hints", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("image_predictions", schema=None) as batch_op:
        batch_op.drop_column("hints")
