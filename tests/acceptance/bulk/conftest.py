"""A whole gateway (API, worker, operator links) with the built-in operator over real SMPP on
loopback, a bulk service, and the merchant's DLR script on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
import string
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx2
import pytest
from tests.integration.bulk.callback_receiver import CallbackReceiver

from smsgate.app import STOP_GRACE_SECONDS, build_runtime, make_components, run_components
from smsgate.config import Settings
from smsgate.domain.clock import FakeClock
from smsgate.domain.provisioning import ProvisioningDocument, parse_toml
from smsgate.runtime import Runtime
from smsgate.services.provisioning import apply
from smsgate.simulator import Simulator, SimulatorOptions
from smsgate.simulator.config import config_from_document

OPERATOR = "sim-bg"

PROVISIONING = string.Template("""
[[operators]]
id = "sim-bg"
country = "BG"
kind = "smpp"
host = "127.0.0.1"
port = $smpp_port
system_id = "smsgate"
password = "secret"
tps = 1000
window = 100

[[short_numbers]]
number = "1851"
operator = "sim-bg"
price = "2.40"
currency = "BGN"

[[merchants]]
id = 1
login = "shop"
password = "change-me-please"
api_key = "k-123"
currency = "BGN"
credit = "100.00"

[[services]]
id = 201
merchant = 1
type = "bulk"
sender = "SHOP"
short_numbers = ["1851"]
dlr_url = "$dlr_url"
price_per_part = "0.05"
max_parts = 4
""")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def document(smpp_port: int, dlr_url: str) -> ProvisioningDocument:
    text = PROVISIONING.substitute(smpp_port=smpp_port, dlr_url=dlr_url)
    return parse_toml(text, source="bulk-acceptance.toml")


@dataclass
class World:
    runtime: Runtime
    clock: FakeClock
    simulator: Simulator
    gateway: httpx2.AsyncClient
    receiver: CallbackReceiver


@pytest.fixture
async def world(database_url: str) -> AsyncIterator[World]:
    clock = FakeClock(datetime.now(UTC))
    receiver = await CallbackReceiver.start()
    simulator = Simulator(config_from_document(document(1, receiver.url), SimulatorOptions()))
    smpp_port = await simulator.start("127.0.0.1", 0)
    port = free_port()
    settings = Settings(
        database_url=database_url,
        http_host="127.0.0.1",
        http_port=port,
        webhook_allow_private=True,
    )
    runtime = build_runtime(settings, clock=clock)
    await apply(runtime.sessions, document(smpp_port, receiver.url), actor="test", now=clock.now())
    components = make_components(runtime, routers=[simulator.http_router()])
    running = asyncio.create_task(run_components(components))
    client = httpx2.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10)
    try:
        async with asyncio.timeout(20):
            await simulator.wait_for_receiver(OPERATOR)
            while True:
                try:
                    if (await client.get("/readyz")).status_code == 200:
                        break
                except httpx2.TransportError:
                    pass
                await asyncio.sleep(0.05)
        yield World(runtime, clock, simulator, client, receiver)
    finally:
        await client.aclose()
        for component in components:
            stopped = component.stop()
            if stopped is not None:
                await stopped
        # Past the gateway's own grace, so that a part that hangs is named in the log.
        await asyncio.wait_for(running, STOP_GRACE_SECONDS + 10)
        await simulator.stop()
        await receiver.close()
        await runtime.engine.dispose()
