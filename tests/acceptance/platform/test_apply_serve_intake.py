"""Issue "core platform", done when: `smsgate apply` of the DESIGN.md sample, then `smsgate
serve`, then an MO pushed to the HTTP intake is stored once and routed to its service, even
when pushed twice."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx2
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select
from tests.acceptance.platform.conftest import Gateway, smsgate

from smsgate.store.db import make_engine, make_sessionmaker
from smsgate.store.models import MoMessage

SAMPLE = Path(__file__).parents[2] / "data" / "design_sample.toml"

# The sample's operator links over SMPP; an operator that also pushes over HTTP gets an intake
# secret, applied as a second, partial provisioning file.
INTAKE = """
[[operators]]
id = "sim-bg"
country = "BG"
kind = "smpp"
host = "127.0.0.1"
port = 2775
system_id = "smsgate"
password = "secret"
tps = 200
window = 10
intake_secret = "push-secret-0123456789"
"""


def test_apply_sample_serve_and_push_an_mo_twice(
    gateway: Gateway, gateway_env: dict[str, str], tmp_path: Path
) -> None:
    first = smsgate("apply", str(SAMPLE), env=gateway_env)
    assert first.returncode == 0, first.stdout + first.stderr
    again = smsgate("apply", str(SAMPLE), env=gateway_env)
    assert again.returncode == 0, again.stdout + again.stderr
    intake = tmp_path / "intake.toml"
    intake.write_text(INTAKE)
    assert smsgate("apply", str(intake), env=gateway_env).returncode == 0

    gateway.start()
    mo = {
        "message_id": "op-msg-1",
        "msisdn": "359888123456",
        "short_number": "1851",
        "text": "KOD please",
    }
    headers = {"Authorization": "Bearer push-secret-0123456789"}
    with httpx2.Client(base_url=gateway.url, timeout=10) as client:
        responses = [
            client.post("/operators/sim-bg/mo", json=mo, headers=headers) for _ in range(2)
        ]
        metrics = client.get("/metrics").text
    assert [r.status_code for r in responses] == [200, 200], [r.text for r in responses]
    assert [r.json()["duplicate"] for r in responses] == [False, True]
    assert responses[0].json()["routed"] is True
    assert responses[0].json()["id"] == responses[1].json()["id"]
    received = {
        sample.labels["outcome"]: sample.value
        for family in text_string_to_metric_families(metrics)
        for sample in family.samples
        if sample.name == "smsgate_mo_received_total"
    }
    assert received.pop("duplicate") == 1.0
    assert sum(received.values()) == 1.0
    stored = asyncio.run(_stored_mos(gateway_env["SMSGATE_DATABASE_URL"]))
    # Routed to the access-code service, which issued its code ("processed").
    assert stored == [("op-msg-1", "359888123456", 102, "processed")]
    output = gateway.stop()
    assert "push-secret-0123456789" not in output


async def _stored_mos(url: str) -> list[tuple[str, str, int | None, str]]:
    engine = make_engine(url)
    try:
        async with make_sessionmaker(engine)() as session:
            rows = (await session.execute(select(MoMessage))).scalars().all()
            return [(r.operator_message_id, r.msisdn, r.service_id, r.status) for r in rows]
    finally:
        await engine.dispose()
