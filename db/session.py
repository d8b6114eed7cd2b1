"""Connections to a project database: SQLite for one machine, PostgreSQL for a team.

Two processes write to a project at once (the napari app saving corrections, the
worker writing predictions). On SQLite that works without "database is locked"
only with all of these: WAL mode (readers never block the writer), a busy timeout
(a writer waits for the other instead of failing), and write transactions that
take the write lock when they *begin* (``BEGIN IMMEDIATE``): a transaction that
starts reading and later upgrades to writing can fail at once, whatever the
timeout, when another process committed in between. Transactions are short.
``synchronous=FULL`` makes a commit durable when it returns, even on power loss.

On PostgreSQL, row locks and ``SELECT ... FOR UPDATE SKIP LOCKED`` do the same.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session, sessionmaker

from .models import utcnow

__all__ = ["Database", "normalise_url"]

BUSY_TIMEOUT_S = 30.0


def normalise_url(url: str | URL | Path) -> URL:
    """A SQLAlchemy URL; a path means SQLite, ``postgresql://`` means psycopg 3."""
    if isinstance(url, Path) or (isinstance(url, str) and "://" not in url):
        return URL.create("sqlite", database=str(Path(url).resolve()))
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def _sqlite_engine(url: URL) -> Engine:
    engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_S, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection, _record) -> None:  # noqa: ANN001
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves, below
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection) -> None:  # noqa: ANN001
        write = connection.get_execution_options().get("scn_write", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


class Database:
    """An engine and the two kinds of transaction the store uses."""

    def __init__(self, url: str | URL | Path) -> None:
        self.url = normalise_url(url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        if self.is_sqlite:
            self.engine = _sqlite_engine(self.url)
        else:
            self.engine = create_engine(self.url, pool_pre_ping=True)
        writer = self.engine.execution_options(scn_write=True)
        self._read = sessionmaker(bind=self.engine, expire_on_commit=False)
        self._write = sessionmaker(bind=writer, expire_on_commit=False)

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A write transaction: committed (durably) when the block ends, rolled back on error."""
        with self._write() as session, session.begin():
            yield session

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A read-only snapshot; never blocks, never blocked by a writer on SQLite (WAL)."""
        with self._read() as session, session.begin():
            yield session

    def now(self, s: Session) -> dt.datetime:
        """The time by the database's clock (naive UTC), for every time the queue compares.

        A team's machines share the database, not a clock: a GPU server a minute off
        would otherwise see an annotator's live job as stale, or have its own
        re-queued. SQLite lives on one machine, whose clock it is.
        """
        if self.is_sqlite:
            return utcnow()
        return s.scalar(text("SELECT timezone('UTC', clock_timestamp())"))

    def dispose(self) -> None:
        self.engine.dispose()

    def __repr__(self) -> str:
        return f"Database({self.url.render_as_string(hide_password=True)!r})"
