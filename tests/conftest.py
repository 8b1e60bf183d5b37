"""Shared fixtures: a real database per backend (SQLite and PostgreSQL), a rollback per test,
the app wired to that transaction, and named personas for authorisation tests."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi import Request
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine

from ehospital.auth.passwords import use_fast_hashing
from ehospital.config import Settings
from ehospital.db import create_engine, migrate_async
from ehospital.deps import Runtime, get_session, record_denial
from ehospital.kit.errors import DomainError
from ehospital.kit.storage import LocalFileStore
from ehospital.main import create_app
from ehospital.pharmacy.payments import HmacProvider
from ehospital.prescriptions.signing import KeyStore
from tests.personas import World, build_world

use_fast_hashing()

PG_ADMIN_URL = os.environ.get("EHOSPITAL_TEST_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() == "true"
BACKENDS = ["sqlite", "postgresql"]


async def _pg_admin(sql: str) -> None:
    engine = create_async_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.exec_driver_sql(sql)
    finally:
        await engine.dispose()


async def make_database(backend: str, tmp: Path) -> tuple[str, str | None]:
    """A fresh, empty database; returns its URL and, for PostgreSQL, its name (to drop)."""
    if backend == "sqlite":
        return f"sqlite+aiosqlite:///{tmp / 'test.sqlite3'}", None
    name = f"ehospital_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    try:
        await _pg_admin(f'CREATE DATABASE "{name}"')
    except Exception as exc:  # the service is not running here
        if IN_CI:
            raise
        pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN_URL}: {exc}")
    url = make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    return url, name


async def drop_database(name: str) -> None:
    await _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    return value


@dataclass
class Database:
    backend: str
    url: str
    engine: AsyncEngine
    settings: Settings


@pytest.fixture(scope="session")
async def database(backend: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Database]:
    """One migrated database per backend for the whole run, dropped afterwards."""
    async for db in fresh_database(backend, tmp_path_factory):
        yield db


async def fresh_database(backend: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Database]:
    """A new migrated database, dropped when the generator closes."""
    tmp = tmp_path_factory.mktemp(backend)
    url, pg_name = await make_database(backend, tmp)
    try:
        await migrate_async(url)
        settings = Settings(data_dir=tmp, database_url=url, cookie_secure=False)
        engine = create_engine(settings)
        try:
            yield Database(backend, url, engine, settings)
        finally:
            await engine.dispose()
    finally:
        if pg_name:
            await drop_database(pg_name)


@pytest.fixture
async def session(database: Database) -> AsyncIterator[AsyncSession]:
    """A session inside a transaction that is rolled back after the test."""
    async with database.engine.connect() as conn:
        outer = await conn.begin()
        db_session = AsyncSession(
            bind=conn, expire_on_commit=False, autoflush=False, join_transaction_mode="create_savepoint"
        )
        try:
            yield db_session
        finally:
            await db_session.close()
            if outer.is_active:
                await outer.rollback()


@pytest.fixture
def settings(database: Database) -> Settings:
    return database.settings


@pytest.fixture
async def client(
    database: Database, session: AsyncSession, tmp_path: Path
) -> AsyncIterator[httpx.AsyncClient]:
    """An API client whose requests run inside the test's transaction."""
    app = create_app(database.settings, background=False)
    app.state.runtime = Runtime(
        settings=database.settings,
        engine=database.engine,
        sessionmaker=None,  # type: ignore[arg-type]  # every request uses the test session
        files=LocalFileStore(tmp_path / "uploads"),
        keys=KeyStore(tmp_path / "keys"),
        payments={"local": HmacProvider("local", b"test-secret")},
    )

    async def test_session(request: Request) -> AsyncIterator[AsyncSession]:
        # deps.get_session on the test's connection, with a savepoint standing in for the transaction.
        nested = await session.begin_nested()
        try:
            yield session
        except DomainError as exc:
            if exc.keep_writes:
                await nested.commit()
            else:
                await nested.rollback()
                if record_denial(session, request, exc):
                    await session.flush()
            raise
        except BaseException:
            await nested.rollback()
            raise
        else:
            await nested.commit()

    app.dependency_overrides[get_session] = test_session
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as http:
        yield http


@pytest.fixture
async def world(session: AsyncSession, settings: Settings) -> World:
    """A small hospital with named personas (see tests/personas.py), committed to the test's
    outer transaction so a request that rolls back its own work leaves it in place."""
    built = await build_world(session, settings)
    await session.commit()
    return built
