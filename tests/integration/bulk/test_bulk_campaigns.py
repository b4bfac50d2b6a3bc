"""Campaigns on both databases: every CSV row committed with its MT, resumable after an
interruption without sending any row twice, refusals recorded once."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select
from tests.integration.bulk.bulk_env import SERVICE_ID, provision

from smsgate.runtime import Runtime
from smsgate.services import campaigns
from smsgate.store.models import Campaign, CampaignRow, MtMessage


class Interrupted(Exception):
    pass


def write_csv(tmp_path: Path, rows: int, *, bad_every: int = 0) -> Path:
    lines = ["msisdn;name"]
    for i in range(1, rows + 1):
        number = "0881" if bad_every and i % bad_every == 0 else f"35988{1000000 + i}"
        lines.append(f"{number};Client {i}")
    path = tmp_path / "clients.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


async def counts(runtime: Runtime) -> tuple[int, int, int]:
    async with runtime.sessions() as session:
        mts = await session.scalar(select(func.count()).select_from(MtMessage))
        keys = await session.scalar(select(func.count(func.distinct(MtMessage.idempotency_key))))
        rows = await session.scalar(select(func.count()).select_from(CampaignRow))
    return int(mts or 0), int(keys or 0), int(rows or 0)


async def test_interrupted_campaign_resumes_without_duplicates(
    runtime: Runtime, tmp_path: Path
) -> None:
    async with runtime.sessions() as session, session.begin():
        await provision(session, price="0.01")
    source = campaigns.read_csv(write_csv(tmp_path, 95), template="Dear {name}, pay by Friday.")
    first = await campaigns.open_campaign(
        runtime.sessions, source, service_id=SERVICE_ID, now=runtime.clock.now()
    )
    assert not first.resumed
    batches = 0

    def stop_after_three(_summary: campaigns.RunSummary, _rows: int) -> None:
        nonlocal batches
        batches += 1
        if batches == 3:
            raise Interrupted

    with pytest.raises(Interrupted):
        await campaigns.send_rows(
            runtime.sessions,
            first,
            source,
            service_id=SERVICE_ID,
            clock=runtime.clock.now,
            batch_size=10,
            on_batch=stop_after_three,
        )
    assert await counts(runtime) == (30, 30, 30)

    again = await campaigns.open_campaign(
        runtime.sessions, source, service_id=SERVICE_ID, now=runtime.clock.now()
    )
    assert (again.campaign_id, again.resumed, len(again.done_rows)) == (first.campaign_id, True, 30)
    summary = await campaigns.send_rows(
        runtime.sessions,
        again,
        source,
        service_id=SERVICE_ID,
        clock=runtime.clock.now,
        batch_size=10,
    )
    assert (summary.sent_before, summary.sent, summary.parts) == (30, 65, 65)
    assert (summary.cost_minor, summary.currency) == (65, "BGN")
    assert await counts(runtime) == (95, 95, 95)
    async with runtime.sessions() as session:
        campaign = await session.get_one(Campaign, first.campaign_id)
        texts = set((await session.execute(select(MtMessage.text))).scalars())
        linked = await session.scalar(
            select(func.count()).select_from(CampaignRow).where(CampaignRow.mt_id.is_not(None))
        )
    assert campaign.status == "done"
    assert "Dear Client 7, pay by Friday." in texts
    assert linked == 95

    # The file again: the campaign is done; only --new sends it a second time.
    with pytest.raises(campaigns.CampaignError, match="already sent"):
        await campaigns.open_campaign(
            runtime.sessions, source, service_id=SERVICE_ID, now=runtime.clock.now()
        )
    third = await campaigns.open_campaign(
        runtime.sessions, source, service_id=SERVICE_ID, now=runtime.clock.now(), new=True
    )
    assert (third.resumed, third.campaign_id != first.campaign_id) == (False, True)


async def test_refused_rows_are_recorded_and_not_retried(runtime: Runtime, tmp_path: Path) -> None:
    async with runtime.sessions() as session, session.begin():
        await provision(session, limit_day=15)
    source = campaigns.read_csv(write_csv(tmp_path, 20, bad_every=5), template="Hi {name}")
    run = await campaigns.open_campaign(
        runtime.sessions, source, service_id=SERVICE_ID, now=runtime.clock.now()
    )
    summary = await campaigns.send_rows(
        runtime.sessions, run, source, service_id=SERVICE_ID, clock=runtime.clock.now
    )
    # Rows 5, 10, 15, 20 have national numbers; 16 valid rows meet a daily limit of 15.
    assert summary.sent == 15
    assert dict(summary.refused) == {"invalid-msisdn": 4, "limit-day": 1}
    assert await campaigns.row_outcomes(runtime.sessions, run.campaign_id) == {
        "sent": 15,
        "invalid-msisdn": 4,
        "limit-day": 1,
    }
    assert await counts(runtime) == (15, 15, 20)
