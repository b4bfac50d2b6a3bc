"""A gateway killed with SIGKILL in the middle of a 5,000-message campaign: restarted, and the
campaign run again, every message reaches the operator (the simulator's handsets) exactly once,
except those the gateway honestly marks ``unknown`` (in flight at the kill: sent or not, never
sent twice)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx2
import pytest

from smsgate.domain.provisioning import parse_toml
from smsgate.services.provisioning import apply
from smsgate.store.db import make_engine, make_sessionmaker
from smsgate.store.migrate import upgrade

pytestmark = pytest.mark.slow

ROWS = 5000
HANDSETS = 50
OPERATOR = """
[[operators]]
id = "sim-bg"
country = "BG"
kind = "smpp"
host = "127.0.0.1"
port = {smpp_port}
system_id = "smsgate"
password = "secret"
tps = 2000
window = 50
"""
REST = """
[[merchants]]
id = 1
login = "shop"
password = "change-me-please"
currency = "BGN"
credit = "1000.00"

[[services]]
id = 201
merchant = 1
type = "bulk"
sender = "SHOP"
price_per_part = "0.01"
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def smsgate(*args: str) -> list[str]:
    return [sys.executable, "-m", "smsgate", *args]


@contextmanager
def running(args: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """The process runs with its standard error in ``log`` (shown when the test fails)."""
    with log.open("ab") as stderr:
        process = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def wait_until(check: Callable[[], bool], seconds: float, what: str, logs: Path) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except httpx2.TransportError:
            pass
        time.sleep(0.2)
    shown = "".join(
        f"--- {path.name}\n{path.read_text(errors='replace')[-3000:]}\n"
        for path in sorted(logs.glob("*.log"))
    )
    raise AssertionError(f"timed out waiting for {what}\n{shown}")


def _query(db: Path, sql: str) -> list[tuple[object, ...]]:
    """A plain read: in WAL mode it never waits for the writers (the gateway, the campaign)."""
    connection = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return list(connection.execute(sql))
    finally:
        connection.close()


def _states(db: Path) -> dict[str, int]:
    rows = _query(db, "SELECT status, count(*) FROM mt_messages GROUP BY status")
    return {str(status): int(str(count)) for status, count in rows}


def _unknown_texts(db: Path) -> set[str]:
    return {
        str(text) for (text,) in _query(db, "SELECT text FROM mt_messages WHERE status = 'unknown'")
    }


def _campaign_rows(db: Path) -> int:
    return int(str(_query(db, "SELECT count(*) FROM campaign_rows")[0][0]))


async def _provision(url: str, smpp_port: int) -> None:
    await upgrade(url)
    engine = make_engine(url)
    try:
        document = parse_toml(OPERATOR.format(smpp_port=smpp_port) + REST)
        await apply(make_sessionmaker(engine), document, actor="test", now=datetime.now(UTC))
    finally:
        await engine.dispose()


def test_sigkill_mid_campaign_sends_each_message_once(tmp_path: Path) -> None:
    db = tmp_path / "gateway.db"
    url = f"sqlite+aiosqlite:///{db}"
    smpp_port, sim_http, http_port = free_port(), free_port(), free_port()
    config = tmp_path / "operator.toml"
    config.write_text(OPERATOR.format(smpp_port=smpp_port))
    asyncio.run(_provision(url, smpp_port))
    csv = tmp_path / "campaign.csv"
    csv.write_text(
        "msisdn,text\n" + "".join(f"35988{1000000 + i % HANDSETS},Row {i}\n" for i in range(ROWS)),
        encoding="utf-8",
    )
    env = {
        **os.environ,
        "SMSGATE_DATABASE_URL": url,
        "SMSGATE_HTTP_PORT": str(http_port),
        "SMSGATE_LOG_LEVEL": "WARNING",
    }
    simulator_args = smsgate(
        "simulator", "--config", str(config), "--smpp-port", str(smpp_port),
        "--http-port", str(sim_http), "--inbox-limit", str(ROWS), "--log-level", "WARNING",
    )  # fmt: skip
    sim = f"http://127.0.0.1:{sim_http}/sim"
    # A transaction a row: the campaign must still be queueing when the gateway is killed, and
    # in batches it can queue all 5,000 rows between two polls.
    campaign = smsgate("send-csv", str(csv), "--service", "201", "--batch", "1")

    def submits() -> int:
        return int(httpx2.get(f"{sim}/stats", timeout=5).json()["submits"])

    def bound() -> bool:
        return int(httpx2.get(f"{sim}/stats", timeout=5).json()["binds"]) > 0

    logs = tmp_path / "logs"
    logs.mkdir()
    with running(simulator_args, env, logs / "simulator.log"):
        wait_until(
            lambda: httpx2.get(f"{sim}/stats", timeout=2).status_code == 200, 60, "sim", logs
        )
        with running(smsgate("serve"), env, logs / "gateway-1.log") as gateway:
            wait_until(bound, 120, "the gateway's link to bind", logs)
            sender = subprocess.Popen(
                campaign, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            # Both halves busy: the campaign still queueing, the link already submitting.
            wait_until(
                lambda: _campaign_rows(db) >= ROWS // 5 and submits() > 0,
                600,
                "the campaign under way",
                logs,
            )
            gateway.send_signal(signal.SIGKILL)
            sender.send_signal(signal.SIGKILL)
            gateway.wait(timeout=30)
            sender.wait(timeout=30)
        killed_at = submits()
        queued_at_kill = _campaign_rows(db)
        assert queued_at_kill < ROWS, "the campaign was queued whole before the kill"

        with running(smsgate("serve"), env, logs / "gateway-2.log"):
            resumed = subprocess.run(campaign, env=env, capture_output=True, text=True, timeout=900)
            assert resumed.returncode == 0, resumed.stderr
            assert "Resuming campaign" in resumed.stdout

            def settled() -> bool:
                states = _states(db)
                return sum(states.values()) == ROWS and not (
                    states.keys() & {"queued", "submitting"}
                )

            wait_until(settled, 900, "every message to leave the gateway", logs)

        states = _states(db)
        unknown = _unknown_texts(db)
        assert _campaign_rows(db) == ROWS
        received: Counter[str] = Counter()
        for handset in range(HANDSETS):
            inbox = httpx2.get(f"{sim}/inbox/35988{1000000 + handset}", timeout=10).json()
            received.update(message["text"] for message in inbox)

    assert max(received.values()) == 1, [t for t, n in received.items() if n > 1][:10]
    expected = {f"Row {i}" for i in range(ROWS)}
    assert set(received) <= expected
    missing = expected - set(received)
    assert missing <= unknown, sorted(missing - unknown)[:10]
    assert states.get("unknown", 0) == len(unknown)
    assert set(states) <= {"submitted", "delivered", "unknown", "accepted", "enroute"}
    print(
        f"killed with {queued_at_kill} rows queued and {killed_at} submitted; states {states}; "
        f"{len(missing)} unknown and not received"
    )
