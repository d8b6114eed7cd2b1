"""On PostgreSQL, a reading is written in its reader's name only: by the reader's own role, or a reviewer's.

A team's name in the history was self-declared (``--user``), so anyone could write as
anyone. On PostgreSQL the reader is the role that connects (``current_user``): row-level
security lets a role insert, change or delete only readings whose reader is that role,
unless the role is a member of ``scn_reviewer`` (who adjudicates and may import a
reader's file in the reader's name); every reading records the role that wrote it
(``author = current_user``). Everyone may read all readings. The table's owner (who
created the project) and superusers are not bound by the policies, as PostgreSQL has
it; annotators connect as their own roles (README, "A team"). SQLite, one machine, has
no roles: nothing changes there.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05 02:10:00
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

#: Is the connecting role the reading's reader, or a reviewer? (NULL, so false, where no scn_reviewer role exists.)
OWN = (
    "(reader = current_user OR coalesce((SELECT pg_has_role(current_user, oid, 'MEMBER') "
    "FROM pg_roles WHERE rolname = 'scn_reviewer'), false))"
)


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        """
        DO $$ BEGIN
            IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'scn_reviewer') THEN
                CREATE ROLE scn_reviewer NOLOGIN;
            END IF;
        EXCEPTION
            WHEN duplicate_object THEN NULL;
            WHEN insufficient_privilege THEN RAISE NOTICE 'scn_reviewer not created (no CREATEROLE): no reviewers yet';
        END $$
        """
    )
    op.execute("ALTER TABLE readings ENABLE ROW LEVEL SECURITY")
    op.execute("CREATE POLICY readings_seen ON readings FOR SELECT USING (true)")
    op.execute(f"CREATE POLICY readings_added ON readings FOR INSERT WITH CHECK ({OWN} AND author = current_user)")
    check = f"{OWN} AND author = current_user"
    op.execute(f"CREATE POLICY readings_changed ON readings FOR UPDATE USING ({OWN}) WITH CHECK ({check})")
    op.execute(f"CREATE POLICY readings_removed ON readings FOR DELETE USING ({OWN})")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for policy in ("readings_seen", "readings_added", "readings_changed", "readings_removed"):
        op.execute(f"DROP POLICY IF EXISTS {policy} ON readings")
    op.execute("ALTER TABLE readings DISABLE ROW LEVEL SECURITY")
