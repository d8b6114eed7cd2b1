"""The schema is versioned: migrations match the models, and old projects upgrade in place."""

from __future__ import annotations

import json

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text

from scn_annotator.db import migrate
from scn_annotator.db.models import Base
from scn_annotator.db.session import Database
from scn_annotator.db.store import Project


def _db(backend, tmp_path) -> Database:
    return Database(backend or tmp_path / "project.sqlite")


def test_migrations_build_exactly_the_models(backend, tmp_path):
    db = _db(backend, tmp_path)
    migrate.upgrade(db)
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    assert diff == []
    assert migrate.current_revision(db) == migrate.head_revision()
    db.dispose()


def test_a_project_from_the_first_schema_is_upgraded_on_open(backend, tmp_path):
    revisions = [r.revision for r in ScriptDirectory.from_config(migrate._config()).walk_revisions()][::-1]
    first = revisions[0]
    folder = tmp_path / "old"
    folder.mkdir()
    db = _db(backend, folder)
    migrate.upgrade(db, first)
    with db.engine.execution_options(scn_write=True).begin() as conn:  # what version 0.1 wrote
        conn.execute(
            text("INSERT INTO settings (key, value) VALUES ('data_dir', :d), ('name', '\"old\"')"),
            {"d": json.dumps(str(folder))},
        )
        conn.execute(
            text("INSERT INTO landmarks (id, \"index\", name, color, description) VALUES (1, 0, 'tip', '#ff0000', '')")
        )
        conn.execute(
            text(
                "INSERT INTO images (id, path, name, checksum, file_size, width, height, spacing_source, status, meta,"
                " created_at, updated_at) VALUES (1, 'a.png', 'a', 'abc', 10, 100, 80, 'unknown', 'in_progress', '{}',"
                " '2026-01-01 00:00:00', '2026-01-01 00:00:00')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO annotations (image_id, landmark_id, x, y, state, source, author, updated_at)"
                " VALUES (1, 1, 5.5, 6.5, 'placed', 'human', 'ann', '2026-01-01 00:00:00')"
            )
        )
    db.dispose()
    (folder / "project.json").write_text(json.dumps({"database": backend}))
    project = Project.open(backend or folder)
    assert migrate.current_revision(project.db) == revisions[-1]
    assert project.landmark_names == ["tip"]
    ann = project.annotations.of("a")[0]
    assert (ann.x, ann.y, ann.author) == (5.5, 6.5, "ann")
    project.annotations.set("a", "tip", 7.0, 8.0)  # and it works at the new schema
    assert project.annotations.history("a")[0].old_x == 5.5
    project.close()
