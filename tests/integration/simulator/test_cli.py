"""``smsgate simulator --config FILE --smpp-port N --http-port M`` as a user runs it."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx2
import pytest
from tests.integration.simulator.sim_env import HANDSET, bound_esme

SAMPLE = Path(__file__).parents[2] / "data" / "design_sample.toml"
COMMAND = (sys.executable, "-m", "smsgate", "simulator")
STARTUP = 20.0  # seconds: a cold interpreter imports FastAPI, pydantic, SQLAlchemy...


@asynccontextmanager
async def running_simulator(
    config: Path, *extra: str
) -> AsyncIterator[tuple[asyncio.subprocess.Process, int, str]]:
    process = await asyncio.create_subprocess_exec(
        *COMMAND,
        "--config",
        str(config),
        "--smpp-port",
        "0",
        "--http-port",
        "0",
        *extra,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    try:
        async with asyncio.timeout(STARTUP):
            smpp_line = (await process.stdout.readline()).decode()
            http_line = (await process.stdout.readline()).decode()
        smpp = re.search(r"SMPP listening on 127\.0\.0\.1:(\d+)", smpp_line)
        http = re.search(r"(http://127\.0\.0\.1:\d+)/sim", http_line)
        assert smpp and http, (smpp_line, http_line)
        yield process, int(smpp.group(1)), http.group(1)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def _stop(process: asyncio.subprocess.Process, signum: int) -> tuple[int, str]:
    process.send_signal(signum)
    async with asyncio.timeout(15):
        _, stderr = await process.communicate()
    assert process.returncode is not None
    return process.returncode, stderr.decode()


@pytest.mark.slow
async def test_the_command_serves_smpp_and_its_control_api() -> None:
    async with running_simulator(SAMPLE) as (process, smpp_port, base_url):
        async with (
            bound_esme(smpp_port) as esme,
            httpx2.AsyncClient(base_url=base_url, timeout=5) as http,
        ):
            body = {"msisdn": HANDSET, "short_number": "1851", "text": "KOD", "operator": "sim-bg"}
            mo = await http.post("/sim/mo", json=body)
            assert mo.status_code == 200, mo.text
            delivered = await esme.next_delivery()
            assert (delivered.source_addr, delivered.short_message) == (HANDSET, b"KOD")

            reply = await esme.submit(b"Your code: 7KX9", source_addr="1851")
            assert reply.command_status == 0
            receipt = await esme.next_delivery()
            assert receipt.tlvs.receipted_message_id == reply.message_id

            inbox = (await http.get(f"/sim/inbox/{HANDSET}")).json()
            assert [(m["text"], m["from"]) for m in inbox] == [("Your code: 7KX9", "1851")]
        code, stderr = await _stop(process, signal.SIGTERM)
    assert code == 0, stderr
    assert "SMPP on 127.0.0.1:" in stderr and "stopped" in stderr


@pytest.mark.slow
async def test_sigint_stops_it_cleanly_with_a_session_bound() -> None:
    async with running_simulator(SAMPLE) as (process, smpp_port, _base_url):  # noqa: SIM117
        async with bound_esme(smpp_port):  # the port comes from the first context
            code, stderr = await _stop(process, signal.SIGINT)
    assert code == 0, stderr
    assert "Traceback" not in stderr


async def test_an_invalid_file_is_reported(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[[short_numbers]]\nnumber = "1851"\noperator = "nobody"\n')
    process = await asyncio.create_subprocess_exec(
        *COMMAND, "--config", str(config), stderr=asyncio.subprocess.PIPE
    )
    async with asyncio.timeout(STARTUP):
        _, stderr = await process.communicate()
    assert process.returncode == 2
    text = stderr.decode()
    assert "short_numbers[0]" in text and "price" in text


DOCS = Path(__file__).parents[3] / "docs" / "simulator.md"


def _documented_options() -> dict[str, str]:
    """The option table of docs/simulator.md: option name -> its Default column."""
    rows = re.findall(r"^\| `(--[a-z-]+)[^`]*` \| ([^|]+) \|", DOCS.read_text(), re.MULTILINE)
    return {name: default.strip() for name, default in rows}


def test_the_documented_options_are_the_commands() -> None:
    from typer.core import TyperGroup
    from typer.main import get_command

    from smsgate.cli import app

    group = get_command(app)
    assert isinstance(group, TyperGroup)
    command = group.commands["simulator"]
    options = {param.opts[0]: param for param in command.params}
    documented = _documented_options()
    assert set(documented) == set(options)
    for name, param in options.items():
        if param.required:
            assert documented[name] == "(required)", name
        elif param.is_flag:
            assert (documented[name], param.default) == ("off", False), name
        elif param.default is not None:
            assert documented[name] == str(param.default), name


@pytest.mark.parametrize(
    "command", [COMMAND, (sys.executable, "-m", "smsgate.simulator")], ids=["cli", "module"]
)
async def test_help_lists_the_documented_options(command: tuple[str, ...]) -> None:
    process = await asyncio.create_subprocess_exec(
        *command,
        "--help",
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "COLUMNS": "200"},
    )
    async with asyncio.timeout(STARTUP):
        stdout, _ = await process.communicate()
    assert process.returncode == 0
    listed = set(re.findall(r"(--[a-z][a-z-]+)", stdout.decode())) - {"--help"}
    assert listed == set(_documented_options())
