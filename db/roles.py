"""Who is who on PostgreSQL: one database role per annotator, and the group roles that say what a role may do.

``scn_annotator`` may read and write the project's tables; ``scn_reviewer`` may in
addition write readings in another reader's name (adjudicate, import a reader's
file) and decide the consensus. Row-level security on ``readings`` (migration 0010)
holds every other role to its own name, whatever the app is told. On SQLite there
are no roles: the login is the name, and everyone may do everything.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import text
from sqlalchemy.orm import Session

from scn_annotator.errors import ScnError

if TYPE_CHECKING:
    from .store import Project

__all__ = ["ANNOTATOR", "REVIEWER", "can_adjudicate", "connected_role", "grant", "reader_name"]

ANNOTATOR = "scn_annotator"
REVIEWER = "scn_reviewer"


def _quoted(name: str) -> str:
    if not name or '"' in name or "\x00" in name:
        raise ScnError(f"{name!r} cannot be a role name")
    return '"' + name + '"'


def connected_role(project: Project, s: Session) -> str | None:
    """The PostgreSQL role this connection acts as (None on SQLite)."""
    return None if project.db.is_sqlite else s.scalar(text("SELECT current_user"))


def reader_name(project: Project, s: Session) -> str:
    """Whose reading this connection writes: the PostgreSQL role that connects, or on SQLite the user's name."""
    from .rows import user_name

    return connected_role(project, s) or user_name(project.user)


def can_adjudicate(project: Project) -> bool:
    """May this connection decide the consensus of several readers? A reviewer, the project's owner or a superuser."""
    if project.db.is_sqlite:
        return True
    with project.db.read() as s:
        return bool(
            s.scalar(
                text(
                    "SELECT r.rolsuper OR t.tableowner = current_user OR coalesce((SELECT pg_has_role(current_user, "
                    "oid, 'MEMBER') FROM pg_roles WHERE rolname = :reviewer), false) FROM pg_roles r, pg_tables t "
                    "WHERE r.rolname = current_user AND t.tablename = 'readings' AND t.schemaname = current_schema()"
                ),
                {"reviewer": REVIEWER},
            )
        )


def grant(project: Project, role: str, *, reviewer: bool = False, password: str | None = None) -> None:
    """Let ``role`` annotate this project (and review, with ``reviewer``); creates the role (and the group roles)
    where they do not exist. Run by the project's owner or an administrator."""
    if project.db.is_sqlite:
        raise ScnError("roles are PostgreSQL's: a SQLite project is one machine's, and its login is the name")
    statements = [
        f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{group}') THEN "
        f"CREATE ROLE {group} NOLOGIN; END IF; END $$"
        for group in (ANNOTATOR, REVIEWER)
    ]
    statements += [
        f"GRANT USAGE ON SCHEMA public TO {ANNOTATOR}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {ANNOTATOR}",
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {ANNOTATOR}",
        # and the tables of later migrations, which the owner's upgrade creates
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {ANNOTATOR}",
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO {ANNOTATOR}",
    ]
    name = _quoted(role)
    with project.db.write() as s:
        for statement in statements:
            s.execute(text(statement))
        if not s.scalar(text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role}):
            s.execute(text(f"CREATE ROLE {name} LOGIN"))
        if password is not None:
            s.execute(
                text(f"ALTER ROLE {name} PASSWORD " + s.scalar(text("SELECT quote_literal(:p)"), {"p": password}))
            )
        s.execute(text(f"GRANT {ANNOTATOR} TO {name}"))
        if reviewer:
            s.execute(text(f"GRANT {REVIEWER} TO {name}"))
