"""Embeddings of images, for ranking a pool by how typical each image is.

Active learning on a small budget asks first for typical images (``active/pool.py``):
that needs a vector per image, model-free right after the import and from each
model version later. Existing projects get an empty table; the vectors are computed
when a ranking first needs them.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04 23:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "embeddings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("image_id", sa.Integer(), nullable=False),
        sa.Column("model_version_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["image_id"], ["images.id"], name=op.f("fk_embeddings_image_id_images"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["model_version_id"],
            ["model_versions.id"],
            name=op.f("fk_embeddings_model_version_id_model_versions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_embeddings")),
    )
    op.create_index("ix_embeddings_lookup", "embeddings", ["kind", "model_version_id", "image_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_embeddings_lookup", table_name="embeddings")
    op.drop_table("embeddings")
