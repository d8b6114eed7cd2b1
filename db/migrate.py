"""Schema versions: create a new project at the newest schema, upgrade an older one in place.

Every schema change is an Alembic revision in ``db/migrations/versions``. Opening a
project runs the missing revisions in one write transaction, so two processes
opening an old project at once upgrade it once, and a failed upgrade changes
nothing.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from .session import Database

__all__ = ["current_revision", "head_revision", "upgrade"]

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def _config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def head_revision() -> str:
    return ScriptDirectory.from_config(_config()).get_current_head()


def current_revision(db: Database) -> str | None:
    with db.engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(db: Database, revision: str = "head") -> None:
    """Bring the schema to ``revision`` (the newest by default).

    On SQLite, foreign key enforcement is off while the revisions run (set outside
    the transaction, the only place SQLite honours it): a revision that rebuilds a
    table drops the old copy, and with enforcement on that drop would cascade to
    every row that refers to it. Before the commit, ``foreign_key_check`` must find
    nothing, or the whole upgrade is rolled back.
    """
    cfg = _config()
    with db.engine.connect() as conn:
        if db.is_sqlite:
            conn.connection.driver_connection.execute("PRAGMA foreign_keys=OFF")
        try:
            with conn.execution_options(scn_write=True).begin():
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, revision)
                if db.is_sqlite:
                    broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    if broken:
                        raise RuntimeError(f"the schema upgrade would break {len(broken)} references: {broken[:3]}")
        finally:
            if db.is_sqlite:
                conn.connection.driver_connection.execute("PRAGMA foreign_keys=ON")
