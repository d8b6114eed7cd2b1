"""Prediction runs are kept when a model predicts an image again, marked superseded.

Before, a second run of the same model version on the same image deleted the
first, so corrections lost the prediction they started from (their
``prediction_id`` was set to NULL) and an open view's prediction ids dangled.
The unique (model_version_id, image_id) becomes a partial unique index over the
runs that are not superseded. Existing rows are all the latest of their kind.

On SQLite the table is rebuilt (batch mode); ``migrate.upgrade`` turns foreign key
enforcement off around it, as SQLite's procedure for table rebuilds requires, so
that dropping the old copy does not cascade to predictions and scores.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 01:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("image_predictions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("superseded", sa.Boolean(), server_default=sa.text("false"), nullable=False))
        batch_op.drop_constraint("uq_image_predictions_model_version_id_image_id", type_="unique")
    with op.batch_alter_table("image_predictions", schema=None) as batch_op:
        batch_op.create_index(
            "uq_image_predictions_latest",
            ["model_version_id", "image_id"],
            unique=True,
            sqlite_where=sa.text("NOT superseded"),
            postgresql_where=sa.text("NOT superseded"),
        )


def downgrade() -> None:
    op.execute("DELETE FROM image_predictions WHERE superseded")
    with op.batch_alter_table("image_predictions", schema=None) as batch_op:
        batch_op.drop_index("uq_image_predictions_latest")
        batch_op.create_unique_constraint(
            "uq_image_predictions_model_version_id_image_id", ["model_version_id", "image_id"]
        )
        batch_op.drop_column("superseded")
