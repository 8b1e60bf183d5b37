"""Engine, sessions and migrations for SQLite (default) and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import ConnectionPoolEntry

from ehospital.config import Settings
from ehospital.kit.errors import DomainError

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def create_engine(settings: Settings) -> AsyncEngine:
    """An engine for the configured database, with SQLite tuned for a small server."""
    url = settings.resolved_database_url()
    if is_sqlite(url):
        ensure_sqlite_dir(url)
        # One connection: SQLite has one writer at a time, and queueing in the pool (FIFO, no
        # sleeping) gives far better tail latency than SQLite's busy handler backing off.
        engine = create_async_engine(
            url, connect_args={"timeout": 30}, pool_size=1, max_overflow=0, pool_timeout=60
        )
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        event.listen(engine.sync_engine, "begin", _sqlite_begin)
        return engine
    # No pre-ping: it costs a round trip per request; stale connections are recycled instead.
    # A fixed pool: overflow connections are closed as soon as they are returned, so under a
    # burst every extra transaction paid for a new backend (fork, TLS negotiation, auth) — the
    # largest item of a live-chat profile. Waiting for a pooled connection is far cheaper.
    return create_async_engine(
        url, pool_size=settings.db_pool_size, max_overflow=0, pool_timeout=30, pool_recycle=1800
    )


def ensure_sqlite_dir(url: str) -> None:
    """SQLite creates the file but not its folder."""
    database = make_url(url).database
    if is_sqlite(url) and database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)


def _sqlite_pragmas(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    # Take transaction control away from the driver (its implicit BEGIN comes only before
    # writes, which breaks SAVEPOINTs and read-then-write transactions); see _sqlite_begin.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    # IMMEDIATE takes the write lock up front: a transaction that reads and then writes can
    # never fail half-way with SQLITE_BUSY because another connection wrote in between; it
    # waits (busy_timeout) instead. SQLite has one writer at a time in any case.
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


@contextlib.asynccontextmanager
async def session_scope(factory: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """One transaction: commit when the block succeeds, roll back when it raises (but commit
    what a DomainError with keep_writes asks to keep, as the request boundary does)."""
    async with factory() as session:
        try:
            yield session
            await session.commit()
        except DomainError as exc:
            await (session.commit() if exc.keep_writes else session.rollback())
            raise
        except BaseException:
            await session.rollback()
            raise


def alembic_config(url: str) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def migrate(url: str, revision: str = "head") -> None:
    """Upgrade the database to `revision` (blocking; runs its own event loop)."""
    from alembic import command

    ensure_sqlite_dir(url)
    command.upgrade(alembic_config(url), revision)


async def migrate_async(url: str, revision: str = "head") -> None:
    await asyncio.to_thread(migrate, url, revision)
