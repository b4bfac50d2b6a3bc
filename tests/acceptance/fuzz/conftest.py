"""Fixtures of the fuzz tests: the provisioned gateway on each database backend.

Provisioning hashes merchant passwords with argon2 (slow on purpose), so the document is
applied once per backend into a template that each test clones: every test still starts from
the same fresh database, in milliseconds.
"""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tests.acceptance.fuzz.fuzz_env import Gateway, open_gateway, provision
from tests.conftest import PG_PREFIX, _pg_admin, pg_url


@pytest.fixture(scope="session")
def provisioned_sqlite(sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("fuzz") / "provisioned.db"
    shutil.copyfile(sqlite_template, path)
    asyncio.run(provision(f"sqlite+aiosqlite:///{path}"))
    # Everything into the main file (WAL mode), so that a plain copy is the whole database.
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path


@pytest.fixture(scope="session")
def provisioned_pg(pg_template: str) -> str:
    name = PG_PREFIX + "fuzz_template"
    asyncio.run(_pg_admin(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"'))
    asyncio.run(provision(pg_url(name)))
    return name


@pytest.fixture
def fuzz_database_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh copy of the provisioned database on the parametrised backend."""
    if backend == "sqlite":
        template: Path = request.getfixturevalue("provisioned_sqlite")
        path = tmp_path / "smsgate.db"
        shutil.copyfile(template, path)
        return f"sqlite+aiosqlite:///{path}"
    template_name: str = request.getfixturevalue("provisioned_pg")
    name = PG_PREFIX + uuid.uuid4().hex[:12]
    asyncio.run(_pg_admin(f'CREATE DATABASE "{name}" TEMPLATE "{template_name}"'))
    return pg_url(name)


@pytest.fixture
async def gateway(fuzz_database_url: str) -> AsyncIterator[Gateway]:
    async with open_gateway(fuzz_database_url) as gateway:
        yield gateway
