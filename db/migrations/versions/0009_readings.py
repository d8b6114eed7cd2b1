"""Several readers per image: each reader's own points beside the consensus.

Inter-reader agreement needs every reader's points kept apart; the consensus the
model trains on stays in ``annotations``. Existing projects keep their annotations
as they are (their consensus) and start with no separate readings.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04 23:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    state = sa.Enum(
        "placed", "occluded", "absent", name="landmark_state", native_enum=False, create_constraint=True, length=16
    )
    op.create_table(
        "readings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("image_id", sa.Integer(), nullable=False),
        sa.Column("landmark_id", sa.Integer(), nullable=False),
        sa.Column("reader", sa.String(length=128), nullable=False),
        sa.Column("x", sa.Float(), nullable=True),
        sa.Column("y", sa.Float(), nullable=True),
        sa.Column("state", state, nullable=False),
        sa.Column("author", sa.String(length=128), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["image_id"], ["images.id"], name=op.f("fk_readings_image_id_images"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["landmark_id"], ["landmarks.id"], name=op.f("fk_readings_landmark_id_landmarks")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_readings")),
        sa.UniqueConstraint("image_id", "landmark_id", "reader", name=op.f("uq_readings_image_id_landmark_id_reader")),
    )
    op.create_index(op.f("ix_readings_reader"), "readings", ["reader"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_readings_reader"), table_name="readings")
    op.drop_table("readings")
