"""Double reading and review: which reader reads which image, and each image's review verdicts.

An assignment asks a named reader for an image (blind to the others' points until
they finish it); a review row records a reviewer's verdict (reviewed / needs changes,
with a note), the latest being the image's status. Existing projects start with none.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05 02:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "assignments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("image_id", sa.Integer(), nullable=False),
        sa.Column("reader", sa.String(length=128), nullable=False),
        sa.Column("assigned_by", sa.String(length=128), nullable=False),
        sa.Column("assigned_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["image_id"], ["images.id"], name=op.f("fk_assignments_image_id_images"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_assignments")),
        sa.UniqueConstraint("image_id", "reader", name=op.f("uq_assignments_image_id_reader")),
    )
    op.create_index(op.f("ix_assignments_reader"), "assignments", ["reader"], unique=False)
    status = sa.Enum(
        "reviewed", "needs_changes", name="review_status", native_enum=False, create_constraint=True, length=16
    )
    op.create_table(
        "reviews",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("image_id", sa.Integer(), nullable=False),
        sa.Column("status", status, nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("reviewer", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["image_id"], ["images.id"], name=op.f("fk_reviews_image_id_images"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reviews")),
    )
    op.create_index(op.f("ix_reviews_image_id"), "reviews", ["image_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_reviews_image_id"), table_name="reviews")
    op.drop_table("reviews")
    op.drop_index(op.f("ix_assignments_reader"), table_name="assignments")
    op.drop_table("assignments")
