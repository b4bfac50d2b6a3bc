"""Seed 001 end to end: send_bulk.php → the operator link → submit_sm at the built-in
operator → the handset's inbox; the SMSC's receipts come back over SMPP and reach the
merchant's DLR script, per part and for the whole message."""

from __future__ import annotations

import asyncio

from tests.acceptance.bulk.conftest import World

from smsgate.simulator.receipts import DlrSettings

NUMBER = "359888100200"


async def send(world: World, text: str, msisdn: str = NUMBER) -> int:
    response = await world.gateway.get(
        "/users/send_bulk.php",
        params={
            "user_id": 1,
            "service_id": 201,
            "msisdn": msisdn,
            "text": text,
            "extended": "yes",
        },
    )
    assert response.status_code == 200
    assert response.text.startswith("MSG_OK:"), response.text
    return int(response.text.split(":")[1])


async def inbox_text(world: World, msisdn: str, count: int = 1) -> list[str]:
    async with asyncio.timeout(15):
        while True:
            inbox = (await world.gateway.get(f"/sim/inbox/{msisdn}")).json()
            if len(inbox) >= count:
                assert {m["from"] for m in inbox} == {"SHOP"}
                return [str(m["text"]) for m in inbox]
            await asyncio.sleep(0.02)


async def callbacks(world: World, mt_id: int, status: str, count: int) -> list[dict[str, str]]:
    """The callbacks for ``mt_id`` with ``status``, once ``count`` of them arrived (bounded)."""
    async with asyncio.timeout(20):
        while True:
            found = [
                c
                for c in world.receiver.received
                if c.get("id") == str(mt_id) and c.get("status") == status
            ]
            if len(found) >= count:
                return found
            await asyncio.sleep(0.05)


async def test_single_part_delivered(world: World) -> None:
    mt_id = await send(world, "Your invoice 42 is ready.")
    assert await inbox_text(world, NUMBER) == ["Your invoice 42 is ready."]
    [delivered] = await callbacks(world, mt_id, "delivered", 1)
    assert delivered["scope"] == "message"
    assert (delivered["msisdn"], delivered["parts"], delivered["part"]) == (NUMBER, "1", "1")
    assert delivered["operator_message_id"]
    assert delivered["submitted_at"] and delivered["done_at"]
    assert delivered["event_type"] == "message.dlr"


async def test_multipart_reported_per_part_and_as_a_whole(world: World) -> None:
    text = "Уважаеми клиенти, " * 8  # 144 UCS-2 units: 3 parts of 67
    mt_id = await send(world, text, "359888100201")
    assert await inbox_text(world, "359888100201") == [text]
    found = await callbacks(world, mt_id, "delivered", 4)
    parts = sorted(c["part"] for c in found if c["scope"] == "part")
    wholes = [c for c in found if c["scope"] == "message"]
    assert parts == ["1", "2", "3"]
    assert len(wholes) == 1
    assert wholes[0]["parts"] == "3"
    assert len({c["operator_message_id"] for c in found if c["scope"] == "part"}) == 3


async def test_undelivered_with_the_operators_error_code(world: World) -> None:
    world.simulator.set_dlr(DlrSettings(outcome="UNDELIV", error_code=5))
    mt_id = await send(world, "Payment reminder", "359888100202")
    [undelivered] = await callbacks(world, mt_id, "undelivered", 1)
    assert undelivered["error_code"] in {"5", "005"}
    response = await world.gateway.get(f"/api/v1/messages/{mt_id}", headers={"X-API-Key": "k-123"})
    body = response.json()
    assert body["status"] == "undelivered"
    assert [r["status"] for r in body["dlr_history"]] == ["undelivered"]
