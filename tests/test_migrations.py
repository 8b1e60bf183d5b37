"""Migrations build every table on an empty database, and agree with the models."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, inspect
from sqlalchemy.ext.asyncio import create_async_engine

from ehospital.db import migrate_async
from ehospital.models import Base
from tests.conftest import drop_database, make_database


@pytest.mark.parametrize("backend_name", ["sqlite", "postgresql"])
async def test_empty_database_upgrades_to_head_and_matches_models(backend_name: str, tmp_path: Path) -> None:
    url, pg_name = await make_database(backend_name, tmp_path)
    engine = create_async_engine(url)
    try:
        await migrate_async(url)

        def check(conn: Connection) -> tuple[list[object], set[str]]:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            return compare_metadata(context, Base.metadata), set(inspect(conn).get_table_names())

        async with engine.connect() as conn:
            diffs, tables = await conn.run_sync(check)
        assert diffs == [], f"models and migrations disagree: {diffs}"
        assert set(Base.metadata.tables) <= tables
        assert "alembic_version" in tables
        # Running the migrations again is a no-op.
        await migrate_async(url)
    finally:
        await engine.dispose()
        if pg_name:
            await drop_database(pg_name)
