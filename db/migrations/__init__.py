"""Alembic migrations of the project schema; run by :func:`scn_annotator.db.migrate.upgrade`."""
