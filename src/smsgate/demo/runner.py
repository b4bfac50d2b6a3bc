"""``smsgate demo``: gateway, built-in operator over real SMPP on loopback, sample merchant and
services, all on SQLite in one process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import string
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from rich.console import Console
from sqlalchemy import select

from smsgate.app import build_runtime, make_components, run_components
from smsgate.config import Settings
from smsgate.demo.merchant import SampleMerchant
from smsgate.domain.provisioning import ProvisioningDocument, parse_toml
from smsgate.services.provisioning import apply
from smsgate.simulator import Simulator, SimulatorOptions
from smsgate.simulator.config import config_from_document
from smsgate.store.migrate import upgrade
from smsgate.store.models import Service

log = logging.getLogger("smsgate.demo")

OPERATOR = "sim-bg"
ADMIN_TOKEN = "demo-admin"  # noqa: S105 (the demo's published credential)
BIND_WAIT_SECONDS = 15.0


@dataclass(frozen=True)
class DemoOptions:
    host: str = "127.0.0.1"
    port: int = 8080
    database: Path = Path("smsgate-demo.db")


def demo_document(smpp_port: int, gateway_url: str) -> ProvisioningDocument:
    template = resources.files("smsgate.demo").joinpath("demo.toml").read_text("utf-8")
    text = string.Template(template).substitute(smpp_port=smpp_port, gateway=gateway_url)
    return parse_toml(text, source="demo.toml")


def demo_settings(options: DemoOptions) -> Settings:
    return Settings(
        database_url=f"sqlite+aiosqlite:///{options.database.absolute()}",
        http_host=options.host,
        http_port=options.port,
        webhook_allow_private=True,
        admin_token=ADMIN_TOKEN,
    )


async def run_demo(options: DemoOptions) -> None:
    gateway_url = f"http://{options.host}:{options.port}"
    settings = demo_settings(options)
    await upgrade(settings.database_url)
    # The operator's port is known once the simulator listens: the simulator reads the
    # operators and tariffs first, then the gateway is provisioned with the real port.
    simulator = Simulator(
        config_from_document(
            demo_document(1, gateway_url), SimulatorOptions(gateway_url=gateway_url)
        )
    )
    smpp_port = await simulator.start(options.host, 0)
    runtime = build_runtime(settings)
    try:
        document = demo_document(smpp_port, gateway_url)
        await apply(runtime.sessions, document, actor="demo", now=runtime.clock.now())
        async with runtime.sessions() as session:
            services = (await session.execute(select(Service))).scalars().all()
        merchant = SampleMerchant({s.id: s.signing_secret for s in services})
        components = make_components(runtime, routers=[simulator.http_router(), merchant.router()])
        banner = asyncio.create_task(_announce(simulator, gateway_url, smpp_port))
        try:
            await run_components(components)
        finally:
            banner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await banner
    finally:
        await simulator.stop()
        await runtime.engine.dispose()


async def _announce(simulator: Simulator, url: str, smpp_port: int) -> None:
    console = Console()
    try:
        await asyncio.wait_for(simulator.wait_for_receiver(OPERATOR), BIND_WAIT_SECONDS)
        bound = "bound"
    except TimeoutError:
        bound = "NOT bound yet (see the log)"
    phone = "359888000001"
    bulk = (
        f"{url}/users/send_bulk.php?user_id=1&service_id=201&msisdn={phone}&text=Hello&extended=yes"
    )
    console.print(
        f"""
[bold green]smsgate demo is running[/]  (Ctrl+C stops it)

  gateway        {url}            API docs: {url}/docs
  operator       built-in simulator, SMPP on 127.0.0.1:{smpp_port}, link {OPERATOR}: {bound}
  merchant       user_id 1, login shop / demo-shop, API key demo-key-1
  sample site    {url}/merchant/   (callbacks it received, signatures checked)
  admin API      {url}/admin/v1    (Authorization: Bearer {ADMIN_TOKEN})
  metrics        {url}/metrics

[bold]1. A subscriber sends KOD to 1851 (a paid SMS):[/]
  curl -s -X POST {url}/sim/mo -H 'content-type: application/json' \\
       -d '{{"msisdn": "{phone}", "short_number": "1851", "text": "KOD", "operator": "{OPERATOR}"}}'
[bold]2. The phone got its access code:[/]
  curl -s {url}/sim/inbox/{phone}
[bold]3. The merchant's site checks the code (seed 000):[/]
  curl -s '{url}/users/check_code.php?user_id=1&service_id=102&code=PASTE_CODE'
[bold]4. The merchant sends a notification SMS (seed 001):[/]
  curl -s '{bulk}'
[bold]5. Its delivery report reached the merchant:[/]
  curl -s {url}/merchant/events
""",
        highlight=False,
        soft_wrap=True,
    )
