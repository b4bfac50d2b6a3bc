"""The set-wise receipt intake (services/dlr.receive_receipts): batches of receipts against
single and multipart messages, on SQLite and PostgreSQL, with the callbacks they queue."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from tests.factories import add_service
from tests.integration.bulk.bulk_env import (
    MERCHANT_ID,
    SERVICE_ID,
    T_START,
    add_bulk_service,
    provision,
)

from smsgate.services.dlr import (
    IncomingReceipt,
    apply_early_receipts,
    notify_submit_outcomes,
    receive_receipts,
)
from smsgate.services.webhooks import DELIVER_KIND
from smsgate.store.models import DeliveryReport, Job, MtMessage, MtPart, WebhookEvent

OP = "sim-bg"
QUIET_SERVICE = 202  # a bulk service without a DLR URL
GET_SERVICE = 203  # its DLR URL in its settings, called with GET
Sessions = async_sessionmaker[AsyncSession]


@pytest.fixture
async def sessions(sessionmaker: Sessions) -> Sessions:
    async with sessionmaker() as session, session.begin():
        await provision(session, operator_id=OP, dlr_url="https://shop.example/dlr", max_parts=3)
        await add_bulk_service(session, QUIET_SERVICE, dlr_url=None)
        await add_service(
            session,
            GET_SERVICE,
            type="bulk",
            keyword="",
            settings={"dlr_url": "https://shop.example/get-dlr"},
            callback_method="GET",
        )
    return sessionmaker


async def add_mt(
    sessions: Sessions,
    part_ids: list[str | None],
    *,
    status: str = "submitted",
    part_status: str = "submitted",
    parts: int | None = None,
    service_id: int = SERVICE_ID,
) -> int:
    """An MT with a row per entry of ``part_ids`` (None: a row without the SMSC's id yet)."""
    async with sessions() as session, session.begin():
        mt = MtMessage(
            merchant_id=MERCHANT_ID,
            service_id=service_id,
            operator_id=OP,
            msisdn="359881234567",
            sender="SHOP",
            text="hello",
            encoding="gsm7",
            parts=parts or len(part_ids),
            status=status,
            next_attempt_at=T_START,
            created_at=T_START,
            updated_at=T_START,
        )
        session.add(mt)
        await session.flush()
        for number, operator_message_id in enumerate(part_ids, start=1):
            session.add(
                MtPart(
                    mt_id=mt.id,
                    part_no=number,
                    operator_id=OP,
                    operator_message_id=operator_message_id,
                    status=part_status if operator_message_id else "queued",
                    submitted_at=T_START if operator_message_id else None,
                )
            )
        return mt.id


def receipt(message_id: str, state: str = "delivered", error: str = "") -> IncomingReceipt:
    return IncomingReceipt(OP, message_id, state, error, {"via": "test", "id": message_id})


async def receive(sessions: Sessions, *receipts: IncomingReceipt, minutes: int = 1) -> list[Any]:
    async with sessions() as session, session.begin():
        return await receive_receipts(
            session, list(receipts), now=T_START + timedelta(minutes=minutes)
        )


async def statuses(sessions: Sessions, mt_id: int) -> tuple[str, list[str]]:
    async with sessions() as session:
        mt = await session.get_one(MtMessage, mt_id, populate_existing=True)
        parts = await session.execute(
            select(MtPart.status).where(MtPart.mt_id == mt_id).order_by(MtPart.part_no)
        )
        return mt.status, list(parts.scalars())


async def callbacks(sessions: Sessions) -> list[tuple[int, str, str, str]]:
    """(message id, scope, part, status) of every callback, in the order they were queued."""
    async with sessions() as session:
        events = (await session.execute(select(WebhookEvent))).scalars().all()
        jobs = (await session.execute(select(Job).order_by(Job.id))).scalars().all()
    by_id = {event.id: event for event in events}
    # One delivery job per event, queued in the order of the changes.
    assert [job.kind for job in jobs] == [DELIVER_KIND] * len(events)
    ordered = [by_id[job.payload["event_id"]].payload for job in jobs]
    return [(int(p["id"]), p["scope"], p["part"], p["status"]) for p in ordered]


async def test_a_batch_of_single_and_multipart_messages(sessions: Sessions) -> None:
    one = await add_mt(sessions, ["a1"])
    two = await add_mt(sessions, ["b1"])
    multi = await add_mt(sessions, ["c1", "c2"])
    outcomes = await receive(
        sessions,
        receipt("a1"),
        receipt("c1"),
        receipt("b1", "undelivered", "0x0b"),
        receipt("c2"),
    )
    assert [(o.matched, o.mt_id) for o in outcomes] == [
        (True, one),
        (True, multi),
        (True, two),
        (True, multi),
    ]
    assert len({o.report_id for o in outcomes}) == 4
    assert await statuses(sessions, one) == ("delivered", ["delivered"])
    assert await statuses(sessions, two) == ("undelivered", ["undelivered"])
    assert await statuses(sessions, multi) == ("delivered", ["delivered", "delivered"])
    assert await callbacks(sessions) == [
        (one, "message", "1", "delivered"),
        (multi, "part", "1", "delivered"),
        (two, "message", "1", "undelivered"),
        (multi, "part", "2", "delivered"),
        (multi, "message", "", "delivered"),
    ]
    async with sessions() as session:
        events = (await session.execute(select(WebhookEvent))).scalars().all()
        undelivered = next(e for e in events if e.payload["id"] == str(two))
        reports = (await session.execute(select(DeliveryReport))).scalars().all()
    fields = undelivered.payload
    assert (fields["error_code"], fields["operator_message_id"]) == ("0x0b", "b1")
    assert fields["done_at"] == (T_START + timedelta(minutes=1)).isoformat()
    assert fields["submitted_at"] == T_START.isoformat()
    assert (undelivered.url, undelivered.method) == ("https://shop.example/dlr", "POST")
    assert all(report.mt_part_id is not None for report in reports)


async def test_repeated_and_out_of_order_receipts_never_move_a_part_back(
    sessions: Sessions,
) -> None:
    mt_id = await add_mt(sessions, ["r1"])
    await receive(sessions, receipt("r1", "enroute"), receipt("r1", "enroute"))
    await receive(sessions, receipt("r1"), receipt("r1", "enroute"), receipt("r1"), minutes=2)
    await receive(sessions, receipt("r1", "undelivered"), minutes=3)
    assert await statuses(sessions, mt_id) == ("delivered", ["delivered"])
    assert await callbacks(sessions) == [
        (mt_id, "message", "1", "enroute"),
        (mt_id, "message", "1", "delivered"),
    ]
    async with sessions() as session:
        reports = (await session.execute(select(DeliveryReport))).scalars().all()
    assert len(reports) == 6  # every receipt is kept


async def test_unknown_ids_are_stored_unmatched_beside_known_ones(sessions: Sessions) -> None:
    mt_id = await add_mt(sessions, ["k1"])
    outcomes = await receive(sessions, receipt("nobody"), receipt("k1"), receipt("nobody"))
    assert [o.matched for o in outcomes] == [False, True, False]
    assert [o.mt_id for o in outcomes] == [None, mt_id, None]
    async with sessions() as session:
        unmatched = (
            await session.execute(select(DeliveryReport).where(DeliveryReport.mt_part_id.is_(None)))
        ).scalars()
        assert [r.operator_message_id for r in unmatched] == ["nobody", "nobody"]
    assert await callbacks(sessions) == [(mt_id, "message", "1", "delivered")]


async def test_a_service_without_dlr_url_changes_state_without_callbacks(
    sessions: Sessions,
) -> None:
    quiet = await add_mt(sessions, ["q1"], service_id=QUIET_SERVICE)
    loud = await add_mt(sessions, ["l1"])
    await receive(sessions, receipt("q1"), receipt("l1"))
    assert await statuses(sessions, quiet) == ("delivered", ["delivered"])
    assert await callbacks(sessions) == [(loud, "message", "1", "delivered")]
    async with sessions() as session, session.begin():
        assert await notify_submit_outcomes(session, [quiet], now=T_START) == 0


async def test_receipts_before_their_submit_responses_are_applied_in_order(
    sessions: Sessions,
) -> None:
    outcomes = await receive(
        sessions, receipt("e1", "enroute"), receipt("e1"), receipt("e2", "enroute")
    )
    assert not any(o.matched for o in outcomes)
    # The link records the responses: the parts, then the early receipts, in one transaction.
    mt_id = await add_mt(sessions, ["e1", "e2"])
    async with sessions() as session, session.begin():
        now = T_START + timedelta(minutes=5)
        assert await notify_submit_outcomes(session, [mt_id], now=now) == 3
        assert await apply_early_receipts(session, OP, ["e1", "e2", "e3"], now=now) == 3
    assert await statuses(sessions, mt_id) == ("enroute", ["delivered", "enroute"])
    assert await callbacks(sessions) == [
        (mt_id, "part", "1", "accepted"),
        (mt_id, "part", "2", "accepted"),
        (mt_id, "message", "", "accepted"),
        (mt_id, "part", "1", "enroute"),
        (mt_id, "part", "1", "delivered"),
        (mt_id, "part", "2", "enroute"),
        (mt_id, "message", "", "enroute"),  # as far as its slowest part
    ]
    async with sessions() as session, session.begin():
        # Applied once: the reports now name their part.
        assert await apply_early_receipts(session, OP, ["e1", "e2"], now=T_START) == 0
    await receive(sessions, receipt("e2"), minutes=6)
    assert await statuses(sessions, mt_id) == ("delivered", ["delivered", "delivered"])


async def test_parts_that_never_left_keep_the_message_from_looking_delivered(
    sessions: Sessions,
) -> None:
    # Refused on a retry: only the part an earlier attempt sent has a row.
    refused = await add_mt(sessions, ["f1"], status="failed", parts=2)
    # The link's last owner stopped while sending part 2; the restart marked the MT unknown.
    interrupted = await add_mt(sessions, ["u1", None], status="unknown")
    async with sessions() as session, session.begin():
        await session.execute(
            MtPart.__table__.update()
            .where(MtPart.mt_id == interrupted, MtPart.part_no == 2)
            .values(status="submitting")
        )
    # Throttled: part 2 waits for the next attempt.
    waiting = await add_mt(sessions, ["w1", None], status="queued")
    await receive(sessions, receipt("f1"), receipt("u1"), receipt("w1"))
    assert await statuses(sessions, refused) == ("failed", ["delivered"])
    assert await statuses(sessions, interrupted) == ("unknown", ["delivered", "submitting"])
    assert await statuses(sessions, waiting) == ("queued", ["delivered", "queued"])
    # Each part is reported; none of the messages changed as a whole.
    assert [scope for _id, scope, _p, _s in await callbacks(sessions)] == ["part"] * 3


async def test_submit_outcomes_are_not_reported_again_once_a_receipt_moved_the_message(
    sessions: Sessions,
) -> None:
    moved = await add_mt(sessions, ["m1"])
    await receive(sessions, receipt("m1"))
    submitted = await add_mt(sessions, ["s1"])
    failed = await add_mt(sessions, [], status="failed")
    async with sessions() as session, session.begin():
        queued = await notify_submit_outcomes(session, [moved, submitted, failed], now=T_START)
    assert queued == 2
    assert await callbacks(sessions) == [
        (moved, "message", "1", "delivered"),
        (submitted, "message", "1", "accepted"),
        (failed, "message", "", "failed"),
    ]


async def test_the_url_and_method_come_from_each_message_s_service(sessions: Sessions) -> None:
    by_get = await add_mt(sessions, ["g1"], service_id=GET_SERVICE)
    by_post = await add_mt(sessions, ["p1"])
    async with sessions() as session, session.begin():
        assert await notify_submit_outcomes(session, [by_get, by_post], now=T_START) == 2
    await receive(sessions, receipt("g1"), receipt("p1"))
    async with sessions() as session:
        events = (await session.execute(select(WebhookEvent))).scalars().all()
    calls = sorted((int(e.payload["id"]), e.payload["status"], e.method, e.url) for e in events)
    assert calls == [
        (by_get, "accepted", "GET", "https://shop.example/get-dlr"),
        (by_get, "delivered", "GET", "https://shop.example/get-dlr"),
        (by_post, "accepted", "POST", "https://shop.example/dlr"),
        (by_post, "delivered", "POST", "https://shop.example/dlr"),
    ]
