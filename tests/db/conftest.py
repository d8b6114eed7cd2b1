"""Store fixtures: every store test runs on SQLite and on a real PostgreSQL server.

PostgreSQL is found at ``SCN_TEST_POSTGRES`` (default: the local server that
``.ci/run`` installs, role ``scn``). Without a reachable server those tests skip,
saying so; with ``SCN_REQUIRE_POSTGRES=1`` (set by CI) they fail instead.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from scn_annotator.app.sample_project import LANDMARK_NAMES
from scn_annotator.db.store import Project

PG_ADMIN = os.environ.get("SCN_TEST_POSTGRES", "postgresql://scn:scn@localhost:5432/postgres")


def _admin():
    try:
        import psycopg

        return psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=3)
    except Exception as exc:
        message = f"PostgreSQL not reachable at {PG_ADMIN} ({type(exc).__name__}); set SCN_TEST_POSTGRES"
        if os.environ.get("SCN_REQUIRE_POSTGRES"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture
def postgres_url():
    """A fresh, empty PostgreSQL database, dropped afterwards."""
    admin = _admin()
    name = f"scn_test_{uuid.uuid4().hex[:12]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request) -> str | None:
    """None for SQLite in the project folder, or a PostgreSQL URL."""
    if request.param == "sqlite":
        return None
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def project(backend, tmp_path: Path) -> Project:
    """An empty project with the sample's 15 landmarks."""
    proj = Project.create(tmp_path / "project", LANDMARK_NAMES, database=backend, user="tester")
    yield proj
    proj.close()


@pytest.fixture
def loaded(project: Project, sample_dir: Path) -> Project:
    """The project with the 24 sample images imported (no labels)."""
    from scn_annotator.db.transfer import import_images

    report = import_images(project, sample_dir / "images")
    assert len(report.added) == 24
    return project
