"""``smsgate apply FILE.toml`` as a user runs it, against SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from smsgate.cli import app
from smsgate.store.db import make_engine, make_sessionmaker
from smsgate.store.models import AuditLog, Service

SAMPLE = Path(__file__).parents[2] / "data" / "design_sample.toml"


def invoke(database_url: str, *args: str) -> tuple[int, str, str]:
    runner = CliRunner()
    result = runner.invoke(app, list(args), env={"SMSGATE_DATABASE_URL": database_url})
    return result.exit_code, result.stdout, result.stderr


async def count(database_url: str, model: type[AuditLog] | type[Service]) -> int:
    engine = make_engine(database_url)
    try:
        async with make_sessionmaker(engine)() as session:
            return int(await session.scalar(select(func.count()).select_from(model)) or 0)
    finally:
        await engine.dispose()


def test_apply_then_apply_again(database_url: str) -> None:
    code, out, _ = invoke(database_url, "apply", str(SAMPLE))
    assert code == 0
    assert "services" in out
    assert "create services 102" in out
    assert asyncio.run(count(database_url, Service)) == 2
    audited = asyncio.run(count(database_url, AuditLog))
    assert audited == 5

    code, out, _ = invoke(database_url, "apply", str(SAMPLE))
    assert code == 0
    assert "create " not in out
    assert "update " not in out
    assert "│         2 │" in out  # services: 2 unchanged
    assert asyncio.run(count(database_url, AuditLog)) == audited


def test_apply_migrates_an_empty_database(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'new.db'}"
    code, _, err = invoke(url, "apply", str(SAMPLE))
    assert code == 0, err
    assert asyncio.run(count(url, Service)) == 2


def test_invalid_file_exits_2_with_file_entry_key(database_url: str, tmp_path: Path) -> None:
    bad = tmp_path / "shop.toml"
    text = SAMPLE.read_text().replace("limit_day = 1000", "limit_day = 0")
    assert text != SAMPLE.read_text()
    bad.write_text(text)
    code, _, err = invoke(database_url, "apply", str(bad))
    assert code == 2
    assert err.strip() == (
        f"{bad}: services[1] (id=201): limit_day: Input should be greater than or equal to 1"
    )
    assert asyncio.run(count(database_url, Service)) == 0


def test_reference_errors_also_exit_2(database_url: str, tmp_path: Path) -> None:
    bad = tmp_path / "refs.toml"
    bad.write_text(SAMPLE.read_text().replace('operator = "sim-bg"', 'operator = "sim-xx"'))
    code, _, err = invoke(database_url, "apply", str(bad))
    assert code == 2
    assert f"{bad}: short_numbers[0] (number=1851): operator: no operator with id 'sim-xx'" in err


@pytest.mark.parametrize("content", ["[[merchants]\n", b"\xff\xfe"])
def test_unreadable_files_exit_2(database_url: str, tmp_path: Path, content: str | bytes) -> None:
    bad = tmp_path / "broken.toml"
    if isinstance(content, bytes):
        bad.write_bytes(content)
    else:
        bad.write_text(content)
    code, _, err = invoke(database_url, "apply", str(bad))
    assert code == 2
    assert err.startswith(f"{bad}: (document): ")


def test_missing_file_exits_2(database_url: str, tmp_path: Path) -> None:
    code, _, err = invoke(database_url, "apply", str(tmp_path / "nope.toml"))
    assert code == 2
    assert "no such file" in err


def test_dry_run_changes_nothing(database_url: str, tmp_path: Path) -> None:
    copy = tmp_path / "sample.toml"
    shutil.copyfile(SAMPLE, copy)
    code, out, _ = invoke(database_url, "apply", "--dry-run", str(copy))
    assert code == 0
    assert "dry run" in out
    assert asyncio.run(count(database_url, Service)) == 0
