"""Fixtures shared by every tier: databases on SQLite and PostgreSQL, each test its own."""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from smsgate.store.db import make_engine, make_sessionmaker
from smsgate.store.migrate import upgrade_sync

PG_HOST = os.environ.get("SMSGATE_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("SMSGATE_TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("SMSGATE_TEST_PG_USER", "postgres")
# Every database this run creates starts with this prefix, so the run drops all of them at
# the end and never touches another run's.
PG_PREFIX = f"smsgate_t{os.getpid()}_"


def pg_url(database: str) -> str:
    return f"postgresql+asyncpg://{PG_USER}@{PG_HOST}:{PG_PORT}/{database}"


async def _pg_admin(*statements: str) -> None:
    conn = await asyncpg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, database="postgres")
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


async def _pg_drop_run_databases() -> None:
    conn = await asyncpg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, database="postgres")
    try:
        rows = await conn.fetch(
            "SELECT datname FROM pg_database WHERE datname LIKE $1", PG_PREFIX + "%"
        )
        for row in rows:
            await conn.execute(f'DROP DATABASE IF EXISTS "{row["datname"]}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    """A migrated PostgreSQL database that each test clones (CREATE DATABASE ... TEMPLATE)."""
    name = PG_PREFIX + "template"
    asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
    upgrade_sync(pg_url(name))
    yield name
    asyncio.run(_pg_drop_run_databases())


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite") / "template.db"
    upgrade_sync(f"sqlite+aiosqlite:///{path}")
    return path


def fresh_database_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if backend == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        path = tmp_path / "smsgate.db"
        shutil.copyfile(template, path)
        return f"sqlite+aiosqlite:///{path}"
    template_name: str = request.getfixturevalue("pg_template")
    name = PG_PREFIX + uuid.uuid4().hex[:12]
    asyncio.run(_pg_admin(f'CREATE DATABASE "{name}" TEMPLATE "{template_name}"'))
    return pg_url(name)


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "postgres":
        request.applymarker(pytest.mark.postgres)
    return str(request.param)


@pytest.fixture
def database_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, migrated database on the parametrised backend."""
    return fresh_database_url(backend, request, tmp_path)


@pytest.fixture
def pg_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, migrated PostgreSQL database, for tests of real concurrency."""
    return fresh_database_url("postgres", request, tmp_path)


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(database_url)
    yield engine
    await engine.dispose()


@pytest.fixture
def sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return make_sessionmaker(engine)
